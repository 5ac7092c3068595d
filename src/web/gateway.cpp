// The gateway's wiring: exchanges, the hub's sinks, the follow graph, per-address counts, and
// the statistics gathered from the workers.
#include "web/gateway.hpp"

#include <atomic>

#include <spdlog/spdlog.h>

#include "amqp/server/alarm_board.hpp"
#include "broker/vhost.hpp"
#include "net/connection.hpp"
#include "net/worker.hpp"
#include "web/gateway_handler.hpp"

namespace warren::web {

gateway::gateway(gateway_settings settings, std::optional<jwt_config> jwt, deps d,
                 std::filesystem::path follows_log)
    : settings_(std::move(settings)),
      deps_(d),
      follows_(std::move(follows_log)),
      counters_(d.pool->size()),
      hub_(settings_, *d.vhost, *d.pool, follows_, counters_, d.store) {
  if (jwt) verifier_ = std::make_unique<jwt_verifier>(*jwt);
  for (size_t i = 0; i < d.pool->size(); ++i) deflaters_.push_back(std::make_unique<ws_deflate>());
}

gateway::~gateway() = default;

net::worker& gateway::home() {
  return deps_.pool->at(deps_.vhost->home_worker());
}

namespace {
struct kind {
  const char* name;
  const char* type;
  bool (hub::*sink)(const broker::message&);
};
constexpr kind kinds[] = {{"warren.users", "x-warren-inbox", &hub::on_user_message},
                          {"warren.rooms", "x-warren-room", &hub::on_room_message},
                          {"warren.feed", "x-warren-feed", &hub::on_feed_message}};
}  // namespace

void gateway::declare_exchanges(broker::vhost& v) {
  for (const auto& k : kinds) {
    broker::exchange_settings s;
    s.name = k.name;
    s.type = k.type;
    s.durable = true;
    if (auto err = v.declare_builtin_exchange(s))
      throw std::runtime_error(
          fmt::format("web gateway: cannot declare exchange '{}' in vhost '{}': {}", k.name,
                      v.name(), err->text));
  }
}

void gateway::prepare() {
  broker::vhost& v = *deps_.vhost;
  declare_exchanges(v);
  for (const auto& k : kinds) {
    auto sink = k.sink;
    if (!v.attach_sink(k.name, [this, sink](const broker::message& m) { return (hub_.*sink)(m); }))
      throw std::runtime_error(
          fmt::format("web gateway: exchange '{}' is not of type {}", k.name, k.type));
  }
  size_t edges = follows_.load();
  spdlog::info("web gateway: vhost '{}', {} follow edges loaded", v.name(), edges);
  hub_.recover();
  hub_.start(home());
}

void gateway::join_cluster(hub::cluster_hooks h) {
  broker::vhost& v = *deps_.vhost;
  broker::exchange_settings s;
  s.name = std::string(node_exchange);
  s.type = "x-warren-inbox";  // a sink exchange; only its sink is ever called (vhost_remote.cpp)
  s.durable = false;
  s.internal = true;  // no client publishes to it: nodes reach it by forwarding
  if (auto err = v.declare_builtin_exchange(s))
    throw std::runtime_error(
        fmt::format("web gateway: cannot declare exchange '{}' in vhost '{}': {}", s.name, v.name(),
                    err->text));
  if (!v.attach_sink(s.name, [this](const broker::message& m) { return hub_.on_node_message(m); }))
    throw std::runtime_error(fmt::format("web gateway: exchange '{}' is not a sink", s.name));
  h.owner_op = [this](const std::string& user, const std::string& op, const std::string& room,
                      const std::string& data, std::function<void(std::string)> reply) {
    owner_op(*this, user, op, room, data, std::move(reply));
  };
  hub_.set_cluster(std::move(h));
}

bool gateway::alarm_on(size_t w) const {
  return deps_.alarms && deps_.alarms->on(w).any();
}

bool gateway::acquire_ip(const boost::asio::ip::address& a) {
  std::lock_guard lock(ip_mutex_);
  uint32_t& n = per_ip_[a];
  if (settings_.max_connections_per_ip && n >= settings_.max_connections_per_ip) {
    if (n == 0) per_ip_.erase(a);
    return false;
  }
  ++n;
  return true;
}

void gateway::release_ip(const boost::asio::ip::address& a) {
  std::lock_guard lock(ip_mutex_);
  auto it = per_ip_.find(a);
  if (it != per_ip_.end() && --it->second == 0) per_ip_.erase(it);
}

void gateway::gather_stats(std::function<void(gateway_stats)> done) {
  // Each worker copies its own counters into its slot; the last to finish adds them up (the
  // acquire-release count orders every slot's write before that read).
  struct job {
    std::vector<worker_counters> parts;
    gateway_stats hub_part;
    std::atomic<size_t> left;
    std::function<void(gateway_stats)> done;
  };
  net::worker_pool& pool = *deps_.pool;
  auto j = std::make_shared<job>();
  j->parts.resize(pool.size());
  j->left = pool.size();
  j->done = std::move(done);
  size_t home_index = deps_.vhost->home_worker();
  for (size_t i = 0; i < pool.size(); ++i) {
    pool.at(i).post([this, j, i, home_index] {
      j->parts[i] = counters_[i];
      if (i == home_index) hub_.add_stats(j->hub_part);
      if (j->left.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
      gateway_stats s = j->hub_part;
      for (const auto& p : j->parts) p.add_to(s);
      j->done(s);
    });
  }
}

void gateway::accept(std::shared_ptr<net::connection> c) {
  bool ok = acquire_ip(c->peer_address());
  auto h = std::make_unique<gateway_handler>(*this, ok);
  auto* raw = h.get();
  c->start(std::move(h));
  if (!ok)
    raw->refuse_over_limit();
  else if (deps_.fence && deps_.fence->refuses(std::chrono::steady_clock::now()))
    raw->refuse_fenced("node is fenced: " + deps_.fence->refusal());
}

}  // namespace warren::web
