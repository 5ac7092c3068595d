// Resource alarms as the AMQP connections see them. The resource monitor (its own thread)
// calls broadcast() on a change; each worker then records the new set in its own slot and
// blocks or unblocks its AMQP connections. A connection that opens later on that worker reads
// the slot (amqp_connection::handle_open), so connections accepted during an alarm start blocked.
#pragma once

#include <string>
#include <vector>

#include "alarm/monitor.hpp"
#include "net/worker.hpp"

namespace warren::amqp::server {

// RabbitMQ's connection.blocked reason: "low on memory", "low on disk", "low on memory & disk";
// empty when no alarm is on.
std::string blocked_reason(alarm::alarm_set s);

// Built by the application before the workers start; lives until they have stopped.
class alarm_board {
 public:
  alarm_board(size_t workers, alarm::alarm_set initial);

  // Any thread: every worker of `pool` applies `s`, through its urgent mailbox (ahead of a
  // backlog of publishes, which is when an alarm matters). Sets are applied in the order sent.
  void broadcast(net::worker_pool& pool, alarm::alarm_set s);
  // On worker `worker`'s thread: the set it last applied.
  alarm::alarm_set on(size_t worker) const { return on_[worker]; }

 private:
  void apply(net::worker& w, alarm::alarm_set s);

  // Slot i is written and read only on worker i (the initial value is written before the
  // workers start), so it needs no lock.
  std::vector<alarm::alarm_set> on_;
};

}  // namespace warren::amqp::server
