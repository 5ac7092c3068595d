// What the management API's resources share: the broker they manage, JSON responses in
// RabbitMQ's shape ({"error": ..., "reason": ...}), and HTTP basic authentication against the
// user store.
#pragma once

#include <functional>
#include <map>
#include <mutex>

#include <boost/asio/ip/address.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "auth/user_store.hpp"
#include "broker/stats.hpp"
#include "broker/vhost.hpp"
#include "broker/views.hpp"
#include "http/http_handler.hpp"
#include "mgmt/definitions_json.hpp"
#include "net/worker.hpp"
#include "web/gateway_stats.hpp"

namespace warren::federation {
class runtime_store;
class supervisor;
}  // namespace warren::federation

namespace warren::mgmt {

class users_file;
class vhost_limits_file;

// Resources of the node as the operator watches them.
struct node_status {
  uint64_t mem_used = 0;
  uint64_t mem_limit = 0;  // 0: no memory alarm
  bool mem_alarm = false;
  uint64_t disk_free = 0;
  uint64_t disk_free_limit = 0;
  bool disk_free_alarm = false;
  uint64_t fd_used = 0;
  uint64_t fd_total = 0;
  uint64_t sockets_used = 0;  // open sockets: listeners and client connections
  uint64_t threads = 0;
};

struct listener_info {
  std::string protocol;  // amqp, http, web, prometheus
  std::string ip_address;
  uint16_t port = 0;
};

// A broker-wide history sampled on one worker (main's stats timer) and read by requests on any;
// a mutex guards it (taken every 5 s and once per request that shows it).
template <typename History>
class history_sampler {
 public:
  void record(int64_t wall, const typename History::values& v) {
    std::lock_guard lock(mutex_);
    history_.record(wall, v);
  }
  void copy_to(History& out) const {
    std::lock_guard lock(mutex_);
    out.copy_from(history_);
  }

 private:
  mutable std::mutex mutex_;
  History history_;
};

// The overview's history: sums over every vhost and thread.
using overview_sampler = history_sampler<broker::overview_history>;

// The web gateway's history (for GET /api/warren/gateway's rates): events delivered, 120
// samples (10 min) like the overview's.
enum gateway_series : size_t { gs_delivered, gs_count_ };
using gateway_history = broker::sample_history<gs_count_, 120>;
using gateway_sampler = history_sampler<gateway_history>;

// The cluster as this node last read it from etcd (docs/cluster.md).
struct cluster_member {
  std::string name;
  bool running = false;  // holds its lease in etcd
  json info;             // what the node published: addresses, started_at (ms), pid, version
};
struct cluster_status {
  std::string cluster;
  std::string self;
  std::string state;    // joining | serving | fenced
  std::string reason;   // why fenced
  bool synced = false;  // the view follows etcd (false: etcd unreachable, the last one read)
  std::vector<cluster_member> members;  // sorted by name, this node included
  // The web gateway's shard map (docs/cluster.md): slots per node, and the map's version in etcd
  // (0: none read yet).
  std::map<std::string, size_t> gateway_slots;
  int64_t gateway_map_version = 0;
};

// Built by main before the listeners start; read-only afterwards (the user store it points to
// is itself safe for concurrent use).
struct api_context {
  auth::user_store* users = nullptr;
  broker::vhost_registry* vhosts = nullptr;
  net::worker_pool* pool = nullptr;
  users_file* user_file = nullptr;  // null: imported users last until the process exits
  std::string version;              // Warren's
  // Creates a vhost (durably; the acting user gets full permissions on it). Any thread. Returns
  // an error sentence, empty on success or if it exists. Unset: vhosts cannot be created.
  std::function<std::string(const std::string& name, const std::string& acting_user)> create_vhost;
  // Deletes a vhost: closes its connections, deletes its queues, removes its data. Any thread;
  // calls `done` (any thread) with an error sentence, empty on success. Unset: not possible.
  std::function<void(const std::string& name, std::function<void(std::string)> done)> delete_vhost;

  // Clients, from the protocol layer (amqp/server), which this module does not know. Each runs
  // on the worker it is given (the caller posts there).
  std::function<void(net::worker&, std::vector<broker::connection_view>&)> list_connections;
  std::function<bool(net::worker&, uint64_t id, const std::string& reason)> close_connection;

  // The node, for /api/nodes and /api/overview. Called on the requesting worker.
  std::string node_name = "warren@localhost";
  std::string cluster_name = "warren@localhost";
  int64_t started_at = 0;  // wall ms
  std::function<node_status()> node;
  std::vector<listener_info> listeners;
  // The cluster, any thread. Unset: a single node (no etcd).
  std::function<cluster_status()> cluster;
  // In a cluster, any thread: the queues that live on other nodes (with their `node`), and the
  // bindings to them, of one vhost or of all (null), as etcd has them (app/cluster_definitions).
  // Listed with this node's queues and exported with its definitions. Unset: a single node.
  std::function<std::vector<queue_def>(const std::string* vhost)> remote_queues;
  std::function<std::vector<binding_def>(const std::string* vhost)> remote_bindings;
  // The broker-wide history the overview charts (sampled every 5 s by main's stats timer).
  overview_sampler* overview = nullptr;

  // The web gateway's statistics, gathered from the workers that hold them; `done` is called
  // once, on any thread. Unset: there is no gateway (the routes answer 404).
  std::function<void(std::function<void(web::gateway_stats)> done)> gateway_stats;
  // Its history, sampled every 5 s by main's stats timer. Null: rates are 0, no samples.
  gateway_sampler* gateway_history = nullptr;
  // Changes the memory high watermark at run time: a fraction of total memory or an absolute
  // number of bytes. Any thread. The limit in bytes now in force, or nullopt when a fraction
  // cannot be resolved (total memory unknown). Unset: not possible.
  std::function<std::optional<uint64_t>(std::variant<double, uint64_t> limit)>
      set_memory_high_watermark;
  // Where vhost limits are kept (mgmt/limits.hpp). Null: they last until the process exits.
  vhost_limits_file* limits_file = nullptr;
  // Runtime parameters and policies (federation/parameters.hpp). Null: the API answers 404.
  federation::runtime_store* runtime = nullptr;
  // The federation links and shovels, for their status. Null: none.
  federation::supervisor* federation = nullptr;
};

http::response json_response(const http::request_header& req, boost::beast::http::status status,
                             const json& body);
// RabbitMQ's error body: {"error": "bad_request", "reason": "..."}.
http::response json_error(const http::request_header& req, boost::beast::http::status status,
                          std::string_view error, std::string_view reason);

// Checks the request's basic-auth credentials, RabbitMQ's loopback rule and, with
// `admin_only`, the administrator tag. The user, or the response refusing the request:
//   no or malformed Authorization, unknown user, wrong password  401 + WWW-Authenticate
//   loopback-only user from elsewhere, not an administrator      401 (as RabbitMQ)
std::variant<auth::user_ptr, http::response> authenticate(const http::request_header& req,
                                                          const boost::asio::ip::address& peer,
                                                          const auth::user_store& users,
                                                          bool admin_only);

// What a request needs of the user's tags, as RabbitMQ's management: any management tag
// (management, policymaker, monitoring, administrator); monitoring (or administrator);
// policymaker (or administrator: parameters and policies); administrator.
enum class access { management, monitoring, policymaker, administrator };
bool has_access(const auth::user& u, access level);
// Monitoring users and administrators see every vhost; others those they have permissions on.
bool sees_all_vhosts(const auth::user& u);
// As above, refusing with 401 "Not management user" (and so on) below `level`.
std::variant<auth::user_ptr, http::response> authenticate(const http::request_header& req,
                                                          const boost::asio::ip::address& peer,
                                                          const auth::user_store& users,
                                                          access level);

// The name of the administrator a request on the control socket acts as. It is not in the user
// store: nobody can log in as it with a password, over AMQP or HTTP.
inline constexpr std::string_view local_admin_name = "warrenctl";

// As above for a management request; one that came over the control socket
// (request_context::local_socket) is the administrator local_admin_name, without credentials:
// the socket file's mode (0600) restricts it to the broker's own system user. Routes call this
// one.
std::variant<auth::user_ptr, http::response> authenticate(const http::request_header& req,
                                                          const http::request_context& ctx,
                                                          const auth::user_store& users,
                                                          bool admin_only);

// The same with an access level, for the API's routes.
std::variant<auth::user_ptr, http::response> authenticate(const http::request_header& req,
                                                          const http::request_context& ctx,
                                                          const auth::user_store& users,
                                                          access level);

}  // namespace warren::mgmt
