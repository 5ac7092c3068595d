// The node's part in a cluster (docs/cluster.md), when --etcd-endpoints is given: a thread of its
// own, `cluster`, runs one io_context with the etcd client and the node's membership (lease,
// registration, the mirrored list of nodes). It runs apart from the workers so that a worker
// busy with a flood cannot delay the lease's renewals, whose timing is what fencing rests on.
// When the node loses its lease it fences itself: the fence flag refuses new AMQP and gateway
// connections, and each worker closes its clients (posted to its urgent mailbox); when it
// registers again, it serves again.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "app/cluster_definitions.hpp"
#include "app/cluster_gateway.hpp"
#include "app/cluster_users.hpp"
#include "app/cluster_vhosts.hpp"
#include "cluster/membership.hpp"
#include "common/node_fence.hpp"
#include "mgmt/api.hpp"
#include "net/worker.hpp"

namespace warren::app {

class cluster_node {
 public:
  struct settings {
    std::string cluster;
    std::string node;
    std::string endpoints;  // --etcd-endpoints
    std::chrono::seconds lease_ttl{10};
    nlohmann::json info = nlohmann::json::object();  // addresses, version, pid
    int64_t started_at_ms = 0;
  };
  // Throws std::runtime_error for bad endpoints. The fence is raised at once ("joining").
  // `file`: where `users` are saved (null: nowhere).
  cluster_node(settings s, common::node_fence& fence, net::worker_pool& pool,
               auth::user_store& users, mgmt::users_file* file, broker::vhost_registry& vhosts);
  ~cluster_node();

  // Starts the `cluster` thread and waits for the first attempt to register. Throws
  // std::runtime_error when another live node has this name. If etcd cannot be reached, returns
  // with the node fenced; it keeps trying and serves once registered.
  void join();
  // Leaves the cluster (revokes the lease, so the others see this node stop at once) and stops
  // the thread. Called at shutdown; waits at most a request time-out.
  void leave();

  mgmt::cluster_status status() const;  // any thread
  // Any thread: the users changed here; send them to etcd.
  void publish_users() { users_->publish(); }
  // Before join(): how vhosts are listed, created and deleted here (the management API's own
  // functions); then any thread: a vhost was created or deleted here.
  void set_vhost_ops(cluster_vhosts::local_ops ops);
  void publish_vhost(const std::string& name, bool exists);
  // Any thread: the queues of other nodes and the bindings to them (cluster_definitions.hpp).
  std::shared_ptr<remote_directory> remote() const { return definitions_->directory(); }
  // Before join(): keep the web gateway's shard map in `table` (app/cluster_gateway.hpp);
  // `on_map` runs on the cluster thread after each change.
  void keep_gateway_map(std::shared_ptr<web::shard_table> table, std::function<void()> on_map);
  // Any thread: whether a node holds its lease, as this node last read (the function outlives
  // this object safely).
  std::function<bool(const std::string&)> running_check() const {
    return
        [locate = locate_](const std::string& node) { return locate && locate(node).has_value(); };
  }
  // For the AMQP channels (amqp::server::server_context::remote_queue_call).
  decltype(amqp::server::server_context::remote_queue_call) remote_queue_call() const;
  decltype(amqp::server::server_context::node_connection) node_connection() const;
  decltype(amqp::server::server_context::balanced_node) balanced_node() const;
  decltype(amqp::server::server_context::remote_queue_declared) remote_queue_declared() const;

 private:
  void on_state(cluster::node_state s, const std::string& why);
  // The cluster's secret for links between nodes: created once in etcd (create-if-absent),
  // read by every node, given to the user store (cluster thread; tried again until it works).
  void fetch_secret();

  // What links between nodes ask of the cluster, from their workers (under the mutex).
  struct link_info {
    std::mutex mutex;
    std::string secret;
    // Weak: the membership (its timers on the cluster thread) must not outlive cluster_node.
    std::weak_ptr<cluster::membership> membership;  // set by join()
  };
  std::shared_ptr<link_info> link_info_ = std::make_shared<link_info>();
  auth::user_store* users_store_ = nullptr;

  settings s_;
  common::node_fence& fence_;
  net::worker_pool& pool_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::shared_ptr<cluster::etcd_client> client_;
  std::shared_ptr<cluster::membership> membership_;
  std::shared_ptr<cluster_users> users_;
  std::shared_ptr<cluster_vhosts> vhosts_;
  std::shared_ptr<cluster_definitions> definitions_;
  std::shared_ptr<web::shard_table> gateway_table_;
  std::function<void()> gateway_on_map_;
  std::shared_ptr<cluster_gateway> gateway_;
  std::thread thread_;
  // After io_: destroyed before it.
  std::unique_ptr<boost::asio::steady_timer> secret_timer_;
  std::function<std::optional<node_address>(const std::string&)> locate_;
  std::function<std::string()> secret_;
};

}  // namespace warren::app
