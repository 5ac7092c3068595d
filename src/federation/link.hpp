// One federation link: a federated exchange of a local vhost and one upstream (RabbitMQ's
// rabbit_federation_exchange_link, behaviour only). On the supervisor's worker.
//
// On the upstream, over amqp/client, in RabbitMQ's names and arguments:
//   1. exchange.declare X (the upstream exchange, as the local one is declared)
//   2. queue.declare "federation: X -> <cluster>[:<vhost>:<local X>]", durable, with x-expires,
//      x-message-ttl (as the upstream parameter says) and x-internal-purpose = federation
//   3. exchange.declare "<that queue's name> A", type x-federation-upstream, durable, internal,
//      auto-delete, with x-max-hops, x-downstream-name (our cluster name), x-downstream-vhost,
//      x-internal-purpose; queue.bind the queue to it
//   4. exchange.bind it to X for each local binding of the federated exchange (routing key and
//      arguments, plus x-bound-from), as bindings appear and disappear (read every second)
//   5. basic.qos prefetch-count, basic.consume (no-ack with ack-mode no-ack)
// Each delivery not already past this cluster and within max-hops is republished to the local
// exchange with an x-received-from entry {uri, exchange, redelivered, cluster-name, vhost}
// prepended; it is acked upstream once stored (on-confirm), once routed (on-publish), or never
// (no-ack). A message loop-breaking refuses is acked and dropped.
#pragma once

#include <boost/asio/steady_timer.hpp>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "amqp/client/connection.hpp"
#include "broker/exchange.hpp"
#include "federation/supervisor.hpp"

namespace warren::federation {

struct upstream_settings {
  std::string name;  // the federation-upstream parameter's
  std::vector<std::string> uris;
  std::string exchange;  // on the upstream; default: the local exchange's name
  std::string queue;     // the same for a federated queue
  uint32_t prefetch = 1000;
  double reconnect_delay = 5;  // seconds
  std::string ack_mode = "on-confirm";
  bool trust_user_id = false;
  int64_t max_hops = 1;
  std::optional<int64_t> expires;
  std::optional<int64_t> message_ttl;
  bool cleanup = true;  // resource-cleanup-mode default (not "never")
};

// The upstream parameter's value (with set entries' overrides) read into settings.
// `local_name`: the federated exchange's or queue's.
upstream_settings read_upstream(const std::string& name, const json& value,
                                const std::string& local_exchange);

// A federated queue's link (RabbitMQ's rabbit_federation_queue_link) is the same object with
// `is_queue`: on the upstream it declares the queue as the local one is (name: the upstream's
// `queue`, default the local name) and consumes it with x-priority -1, only while the local queue
// is empty and has consumers (read every 250 ms on the home worker), cancelling otherwise; each
// delivery is republished to the local queue through the default exchange, with
// x-received-from {uri, queue, redelivered, cluster-name, vhost, visit-count} and, the first time,
// x-original-exchange and x-original-routing-key. `local` then describes the queue (type unused).
class link : public std::enable_shared_from_this<link> {
 public:
  link(supervisor& sup, std::string key, std::string vhost, broker::exchange_settings local,
       upstream_settings up, bool is_queue = false);
  void start();
  // `cleanup`: the link is no longer wanted; delete its queue and exchange upstream first.
  void stop(bool cleanup = false);
  const link_status& status() const { return status_; }

 private:
  void connect();
  void on_ready();
  void on_closed(const std::string& error);
  void on_delivery(amqp::client::delivery&& d);
  void poll_bindings();
  void poll_queue();  // a federated queue: consume upstream or not
  // Bindings by (routing key, the arguments' wire encoding), which orders them.
  using binding_set = std::map<std::pair<std::string, std::string>, common::field_table>;
  void sync_bindings(binding_set want);
  void set_state(const std::string& state, const std::string& error = {});
  void retry_later();

  supervisor& sup_;
  std::string key_;
  std::string vhost_;
  broker::exchange_settings local_;
  upstream_settings up_;
  std::shared_ptr<amqp::client::connection> conn_;
  std::optional<amqp::client::uri> uri_;
  boost::asio::steady_timer timer_;
  link_status status_;
  bool stopped_ = false;
  bool running_ = false;
  int attempts_ = 0;
  std::string queue_;
  std::string internal_exchange_;
  std::string upstream_cluster_;
  // Bindings made upstream: (routing key, the local binding's arguments).
  binding_set bound_;
  uint64_t generation_ = 0;  // bumps at each connection, so that stale callbacks are ignored
  bool is_queue_ = false;
  bool consuming_ = false;  // a federated queue's consumer is on upstream
};

}  // namespace warren::federation
