// What every AMQP connection reads and no connection writes: limits, the user store, the vhost
// registry and the server-properties table. Built once at start-up; shared read-only by workers.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <variant>

#include "amqp/client/connection.hpp"
#include "amqp/protocol/field_table.hpp"
#include "amqp/protocol/methods.hpp"
#include "auth/user_store.hpp"
#include "broker/vhost.hpp"
#include "common/limited_count.hpp"
#include "common/node_fence.hpp"
#include "net/worker.hpp"

namespace warren::amqp::server {

class alarm_board;

struct server_settings {
  uint16_t channel_max = 2047;  // offered in connection.tune
  uint32_t frame_max = 131072;  // offered in connection.tune
  uint16_t heartbeat = 60;      // seconds, offered in connection.tune
  std::chrono::milliseconds handshake_timeout{10000};
  uint64_t max_message_size = 128ull * 1024 * 1024;  // RabbitMQ's default
  std::string cluster_name = "warren";
};

struct server_context {
  server_settings settings;
  const auth::user_store* users = nullptr;
  const broker::vhost_registry* vhosts = nullptr;  // each vhost is used on its home worker only
  net::worker_pool* pool = nullptr;
  protocol::field_table server_properties;
  // The resource alarms each worker knows of (the one exception to "read-only": see
  // alarm_board). Null: no alarms (tests).
  const alarm_board* alarms = nullptr;
  // The node's open AMQP connections (AMQP and AMQPS) and --max-connections, counted at
  // connection.open and close on every worker: the other exception to "read-only" (atomics).
  // Null: no node limit (tests).
  common::limited_count* node_connections = nullptr;
  // In a cluster: fenced (no lease in etcd), the node refuses connection.open. Null: a single
  // node.
  const common::node_fence* fence = nullptr;
  // In a cluster (app/node_links.hpp): runs a queue method (queue.declare, purge or delete) on
  // the node the queue lives on, over a connection of `on`'s io_context; `done` runs there with
  // the -ok, the other node's error, or why the node could not be reached (a string). Null: a
  // single node. Set before the listeners accept.
  using remote_result = std::variant<protocol::method, broker::error, std::string>;
  std::function<void(net::worker& on, const std::string& vhost, const std::string& node,
                     protocol::method m, std::function<void(remote_result)> done)>
      remote_queue_call;
  // In a cluster (app/node_links.hpp): a connection of its own to `node`'s AMQP listener for
  // `vhost`, logged in as this node, on `on`'s io_context, started; its events run there. Null
  // when the node is not running or not reachable yet. For consumers and basic.get on another
  // node's queue (channel_remote_consume.cpp). Unset: a single node.
  std::function<std::shared_ptr<client::connection>(net::worker& on, const std::string& vhost,
                                                    const std::string& node, std::string name,
                                                    client::events ev)>
      node_connection;
  // In a cluster: x-queue-leader-locator "balanced" (any thread). `node_for` gives the running
  // node with the fewest queues in `vhost`, given this node's count (this node on a tie; empty:
  // this node). `declared` records at once a queue another node declared for a client of this
  // one, so that the client's next method finds it (etcd's echo comes later).
  std::function<std::string(const std::string& vhost, size_t here)> balanced_node;
  std::function<void(const std::string& vhost, const std::string& queue, const std::string& node,
                     bool durable, bool auto_delete, const protocol::field_table& args)>
      remote_queue_declared;
};

// product, version, platform, copyright, information, cluster_name and the capabilities table.
protocol::field_table make_server_properties(const server_settings& s);

}  // namespace warren::amqp::server
