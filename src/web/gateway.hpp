// The web gateway (docs/web-api.md): browsers over WebSocket, SSE, long-poll and chunked
// streaming on --web-port, and the backend HTTP API, sharing the broker's workers. Connections
// live on the worker that accepted them (gateway_handler); the shared state (inboxes, rooms,
// presence, follows) is the hub, an actor on the gateway vhost's home worker, which the
// exchanges warren.users, warren.rooms and warren.feed feed.
#pragma once

#include <boost/asio/ip/address.hpp>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/node_fence.hpp"
#include "web/follow_graph.hpp"
#include "web/gateway_counters.hpp"
#include "web/gateway_settings.hpp"
#include "web/gateway_stats.hpp"
#include "web/hub.hpp"
#include "web/jwt.hpp"
#include "web/ws_deflate.hpp"

namespace warren::net {
class connection;
class worker;
class worker_pool;
}  // namespace warren::net
namespace warren::auth {
class user_store;
}
namespace warren::broker {
class vhost;
}
namespace warren::amqp::server {
class alarm_board;
}

namespace warren::web {

// A static file of web/ compiled into the binary (web_assets.cpp, generated).
struct asset {
  std::string_view path;  // "/warren.js"
  std::string_view content_type;
  std::string_view body;
};
const asset* find_asset(std::string_view path);

class gateway {
 public:
  struct deps {
    auth::user_store* users = nullptr;
    broker::vhost* vhost = nullptr;
    net::worker_pool* pool = nullptr;
    const amqp::server::alarm_board* alarms = nullptr;  // null: no alarms
    // The vhost's store, which keeps inboxes and room history; null: memory only (tests).
    store::message_store* store = nullptr;
    // In a cluster: while fenced, new connections get 503 (docs/cluster.md). Null: never.
    const common::node_fence* fence = nullptr;
  };
  // `jwt` empty: no token is valid (anonymous rooms only). `follows_log` empty: follows are not
  // persisted. Throws std::invalid_argument for a bad JWT configuration.
  gateway(gateway_settings settings, std::optional<jwt_config> jwt, deps d,
          std::filesystem::path follows_log);
  ~gateway();

  // The exchanges warren.users, warren.rooms and warren.feed, as built-ins of the vhost. Call
  // before the vhost's store recovers it (durable bindings to them come back then). Throws
  // std::runtime_error if the vhost has an exchange of such a name and another type.
  static void declare_exchanges(broker::vhost& v);
  // On the main thread, before the workers start: declares the exchanges (if not yet), attaches
  // the hub to them, loads the follow graph and recovers the inboxes from the store. Throws
  // std::runtime_error as declare_exchanges, or if the follows log cannot be read.
  void prepare();
  // In a cluster, after prepare() and before the workers start: declares the internal exchange
  // warren.nodes (hub_cluster.cpp) and hands the hub its hooks.
  void join_cluster(hub::cluster_hooks h);
  // The listener's callback (on the accepting worker).
  void accept(std::shared_ptr<net::connection> c);
  // The gateway's statistics: each worker's counters and the hub's figures, gathered by posting
  // to every worker; `done` runs once, on whichever worker answers last. Any thread; the workers
  // must be running.
  void gather_stats(std::function<void(gateway_stats)> done);

  // --- for the connection handlers ---
  const gateway_settings& settings() const { return settings_; }
  const common::node_fence* fence() const { return deps_.fence; }
  const jwt_verifier* verifier() const { return verifier_.get(); }
  hub& the_hub() { return hub_; }
  net::worker& home();
  broker::vhost& vhost() { return *deps_.vhost; }
  store::message_store* store() { return deps_.store; }
  auth::user_store& users() { return *deps_.users; }
  // A resource alarm is on, as worker `w` last heard.
  bool alarm_on(size_t w) const;
  // The worker's permessage-deflate compressor (on that worker only).
  ws_deflate& deflater(size_t w) { return *deflaters_[w]; }
  // The worker's statistics (on that worker only).
  worker_counters& counters(size_t w) { return counters_[w]; }
  // Connections from one address (any worker).
  bool acquire_ip(const boost::asio::ip::address& a);
  void release_ip(const boost::asio::ip::address& a);
  uint64_t next_anonymous() { return ++anonymous_; }

 private:
  gateway_settings settings_;
  std::unique_ptr<jwt_verifier> verifier_;
  deps deps_;
  follow_graph follows_;
  std::vector<worker_counters> counters_;  // one per worker, each touched only on its worker
  hub hub_;
  std::vector<std::unique_ptr<ws_deflate>> deflaters_;
  std::mutex ip_mutex_;  // taken on connect and disconnect only
  std::map<boost::asio::ip::address, uint32_t> per_ip_;
  std::atomic<uint64_t> anonymous_{0};
};

}  // namespace warren::web
