// Links between the nodes of a cluster (docs/cluster.md, "Queues across nodes"): for one vhost,
// one outgoing AMQP connection to each other node that holds queues this node routes to. A
// publish routed here to queues of node A is sent on A's link once, to A's reserved exchange
// `amq.warren.forward` with the queues' names (broker/forward.hpp), in confirm mode; A's confirm
// answers the publishing channel's counted answer (broker::shard_answer), as a shard does. The
// link logs in as "warren-node:<this node>" with the cluster's secret (auth::user_store).
//
// Owned by the vhost's remote sender, on the vhost's home worker: every call and event runs on
// that worker's thread. A link that is down answers "not stored" (a nack) at once, and tries to
// connect again at the next publish after a second. A link whose peer stays silent for the
// settings' `liveness` (heartbeats) closes and nacks what was not confirmed.
#pragma once

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "amqp/client/connection.hpp"
#include "amqp/server/server_context.hpp"
#include "broker/message.hpp"
#include "broker/vhost.hpp"

namespace warren::app {

struct node_address {
  std::string host;
  uint16_t port = 0;
};

class node_links : public std::enable_shared_from_this<node_links> {
 public:
  struct settings {
    std::string self;   // this node's name
    std::string vhost;  // the vhost the links open
    // Any thread: where a running node's AMQP listener is (nullopt: not running, or unknown).
    std::function<std::optional<node_address>(const std::string& node)> locate;
    // Any thread: the cluster's secret (empty: not known yet).
    std::function<std::string()> secret;
    // How long a node may stay silent before its connection is given up (0: the client's
    // defaults): the heartbeat interval is half of it, and connecting (TCP and handshake) must
    // take less than it or 5 s, whichever is longer. The lease's TTL, so that a node cut from this
    // one while both still reach etcd (no fence on either side) is found out as fast as etcd finds
    // a dead node: publishes sent to it are nacked, consumers of its queues cancelled
    // (docs/cluster.md, "Partitions between nodes"), instead of waiting for TCP to give up, which
    // takes minutes.
    std::chrono::seconds liveness{0};
  };
  node_links(boost::asio::io_context& io, settings s);
  ~node_links();

  // The vhost's remote sender (broker::vhost::set_remote_sender).
  void send(const std::string& node, const broker::message& m, std::vector<std::string> queues,
            const broker::shard_answer* answer);
  void close();

 private:
  struct link;
  void start(link& l);
  void reject(broker::shard_answer a);

  boost::asio::io_context& io_;
  settings s_;
  std::map<std::string, std::shared_ptr<link>> links_;  // by node
};

// A queue method (queue.declare, purge, delete) run on `node` for a client of this node: a
// connection of its own on `io`, opened for the one call and closed after its answer (these
// methods are rare; a channel's errors close only this connection). `done` runs on `io`'s thread.
void call_on_node(boost::asio::io_context& io, const node_links::settings& s,
                  const std::string& node, amqp::protocol::method m,
                  std::function<void(amqp::server::server_context::remote_result)> done);

// A connection of its own to `node` (logged in as this node), on `io`, started: for a client's
// consumer or basic.get on that node's queue (amqp/server/channel_remote_consume.cpp). Null when
// the node is not running or the cluster's secret is not known yet.
std::shared_ptr<amqp::client::connection> connect_to_node(boost::asio::io_context& io,
                                                          const node_links::settings& s,
                                                          const std::string& node, std::string name,
                                                          amqp::client::events ev);

}  // namespace warren::app
