// The metrics Warren serves to Prometheus, named as RabbitMQ's rabbitmq_prometheus plugin names
// them so that its Grafana dashboards work unchanged: which endpoint asks for what
// (metrics_request), the plain copy of the broker's state a scrape gathers (metrics_snapshot),
// and the text rendered from the two (render_metrics), which is pure and knows no worker.
//
// | endpoint               | rabbitmq_endpoint | what | | ---------------------- |
// ----------------- | ------------------------------------------------- | | /metrics | aggregated
// | every family, one sum per node, no object labels  | | /metrics/per-object    | per-object | the
// same, one sample per queue, exchange, channel | |                        |                   | or
// connection                                     | | /metrics/detailed?...  | detailed          |
// only the families named by `family=`, per object, | |                        | | prefixed
// rabbitmq_detailed_ (rabbitmq_cluster_ for | |                        |                   |
// vhost_status, exchange_names, exchange_bindings);  | |                        | | `vhost=` and
// `queue=` (a regex) filter queues     |
//
// Families RabbitMQ has and Warren cannot fill truthfully (Erlang's reductions, processes and
// memory breakdown, quorum queues and Raft, per-exchange channel counts, the persister's I/O)
// are left out; docs/compatibility.md lists them.
#pragma once

#include <array>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "broker/stats.hpp"
#include "broker/views.hpp"
#include "mgmt/api.hpp"
#include "mgmt/bounded_regex.hpp"
#include "web/gateway_stats.hpp"

namespace warren::mgmt {

enum class metrics_endpoint { aggregated, per_object, detailed };

struct metrics_request {
  metrics_endpoint endpoint = metrics_endpoint::aggregated;
  // detailed only: the families asked for that Warren knows (others are ignored, as RabbitMQ
  // ignores them); the vhosts to keep (unset: all; a vhost that does not exist keeps nothing);
  // the queues to keep, by a regular expression searched in the name.
  std::set<std::string, std::less<>> families;
  std::optional<std::set<std::string, std::less<>>> vhosts;
  std::optional<bounded_regex> queue;

  // Whether the family is rendered (always, outside detailed).
  bool wants(std::string_view family) const;
  // What the gathering must copy for this request.
  bool needs_queues() const;
  bool needs_exchanges() const;
  bool needs_channels() const;  // each vhost's channel bookkeeping
  bool needs_bindings() const;
  bool keeps_vhost(std::string_view vhost) const;
};

// A refused request: 404 for an unknown path or registry, 400 for a bad `queue` regex.
struct metrics_refusal {
  int status;
  std::string text;
};

// The endpoint and parameters of a request target ("/metrics/detailed?family=..."), or why not.
std::variant<metrics_request, metrics_refusal> parse_metrics_target(std::string_view target);

// The detailed families Warren serves (RabbitMQ's names).
const std::vector<std::string_view>& detailed_families();

// What a scrape copies from the broker, joined on the worker answering it.
struct metrics_snapshot {
  std::string node_name;
  std::string cluster_name;
  std::string version;  // Warren's
  std::array<uint64_t, broker::global_counters::count_> global{};
  node_status node;
  double uptime_seconds = 0;
  double start_time_seconds = 0;  // since the epoch
  double cpu_seconds = 0;         // user and system
  uint64_t open_sockets = 0;      // client connections of every listener
  struct vhost_part {
    std::string name;
    broker::vhost_totals totals;
    std::vector<broker::queue_view> queues;        // when needs_queues
    std::vector<broker::exchange_view> exchanges;  // when needs_exchanges
    std::vector<broker::channel_usage> channels;   // when needs_channels
    std::map<std::string, uint64_t> bindings;      // per source exchange, when needs_bindings
  };
  std::vector<vhost_part> vhosts;
  std::vector<broker::connection_view> connections;
  std::optional<web::gateway_stats> gateway;  // when the node has a web gateway
  struct cluster_part {
    uint64_t nodes = 0;    // every member that ever joined
    uint64_t running = 0;  // members holding their lease in etcd
    bool fenced = false;   // this node has stopped serving clients
  };
  std::optional<cluster_part> cluster;  // when the node is in a cluster
  // Federation links and shovels (federation/supervisor.hpp).
  struct federation_part {
    uint64_t forwarded = 0;
    uint64_t shovelled = 0;
    uint64_t links_running = 0;
    uint64_t shovels_running = 0;
  };
  std::optional<federation_part> federation;
};

// The exposition text (prometheus_text.hpp) for the request.
std::string render_metrics(const metrics_snapshot& s, const metrics_request& r);

// The exact `le` strings of rabbitmq_message_size_bytes, as RabbitMQ writes them: the RabbitMQ
// dashboard selects buckets by these strings.
inline constexpr std::array<std::string_view, 9> message_size_le{
    "100.0", "1000.0", "10000.0", "100000.0", "1e+06", "1e+07", "5e+07", "1e+08", "+Inf"};

}  // namespace warren::mgmt
