// Fan-out of alarm changes to the workers and their AMQP connections.
#include "amqp/server/alarm_board.hpp"

#include "amqp/server/connection.hpp"
#include "net/connection.hpp"

namespace warren::amqp::server {

std::string blocked_reason(alarm::alarm_set s) {
  if (s.memory && s.disk) return "low on memory & disk";
  if (s.memory) return "low on memory";
  if (s.disk) return "low on disk";
  return {};
}

alarm_board::alarm_board(size_t workers, alarm::alarm_set initial) : on_(workers, initial) {}

void alarm_board::broadcast(net::worker_pool& pool, alarm::alarm_set s) {
  for (size_t i = 0; i < pool.size(); ++i) {
    net::worker& w = pool.at(i);
    w.post_urgent([this, &w, s] { apply(w, s); });
  }
}

void alarm_board::apply(net::worker& w, alarm::alarm_set s) {
  on_[w.index()] = s;
  std::string reason = blocked_reason(s);
  w.for_each_connection([&](net::connection& c) {
    if (c.closing()) return;
    // Only AMQP connections publish; others (HTTP) are left alone.
    if (auto* a = dynamic_cast<amqp_connection*>(c.handler())) a->set_blocked(s.any(), reason);
  });
}

}  // namespace warren::amqp::server
