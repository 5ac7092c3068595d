// A node's membership of a cluster, kept in etcd (docs/cluster.md):
//   /warren/<cluster>/nodes/<node>    bound to the node's lease: the node is alive and serving
//   /warren/<cluster>/members/<node>  no lease: every node that ever joined (shown as not running)
// The node registers under a fresh lease (a txn that creates the key only if absent, so a live
// node of the same name is refused; at start, a name held by a lease that then expires within its
// TTL, the node's own previous process killed a moment ago, is waited for rather than refused),
// renews the lease every TTL/3, and fences itself when it cannot be sure it still holds the lease:
// when no renewal has succeeded for TTL minus a margin (counted from when the last successful
// renewal was *sent*, on the monotonic clock), or at once when etcd says the lease is gone. Fenced,
// it retries registering every half second.
//
// Runs on the etcd client's thread (in warren: the `cluster` thread). view() may be called from
// any thread.
#pragma once

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cluster/etcd_client.hpp"
#include "cluster/prefix_mirror.hpp"

namespace warren::cluster {

enum class node_state { joining, serving, fenced };
const char* to_string(node_state s);

// The outcome of the first attempt to register.
enum class join_result { registered, duplicate, unreachable };

struct membership_settings {
  std::string cluster;
  std::string node;
  std::chrono::seconds lease_ttl{10};
  // What the node says about itself in its keys (addresses, version, pid); "name",
  // "started_at" (ms) and "lease" are added.
  json info = json::object();
  int64_t started_at_ms = 0;
};

struct node_entry {
  std::string name;
  bool running = false;  // holds a lease (its nodes/ key exists)
  json info;             // from its nodes/ key when running, else its members/ key
};

// The cluster as this node last read it from etcd.
struct cluster_view {
  std::string cluster;
  std::string self;
  node_state state = node_state::joining;
  std::string state_reason;
  bool synced = false;            // both mirrors have read etcd and watch it
  std::vector<node_entry> nodes;  // sorted by name; this node included once it has registered
  size_t running() const;
};

std::string nodes_prefix(std::string_view cluster);
std::string members_prefix(std::string_view cluster);

class membership : public std::enable_shared_from_this<membership> {
 public:
  struct events {
    // The node started or stopped serving (fenced); on the client's thread.
    std::function<void(node_state, const std::string& why)> on_state;
    // Once, after the first attempt to register (`detail`: the error text).
    std::function<void(join_result, const std::string& detail)> on_first;
    // The time until which the node may serve moved (registered, or a lease renewed): before
    // on_state(serving) when registering. On the client's thread.
    std::function<void(std::chrono::steady_clock::time_point)> on_deadline;
  };

  membership(std::shared_ptr<etcd_client> client, membership_settings s, events e);
  void start();
  // Leaves: revokes the lease (the nodes/ key goes at once) and stops; `done` when etcd has
  // answered (error empty) or failed to.
  void leave(std::function<void(const std::string& error)> done);

  std::shared_ptr<const cluster_view> view() const;  // any thread
  node_state state() const { return state_; }
  int64_t lease() const { return lease_; }
  std::chrono::seconds ttl() const { return ttl_; }

 private:
  using clock = std::chrono::steady_clock;
  void try_register();
  void registered(int64_t lease, int64_t ttl, clock::time_point sent);
  // At start, the name is held by lease `holder`: true once it has lived past its granted TTL
  // (plus a second) since first seen, so it was renewed: another live node holds the name.
  bool holder_outlived_ttl(int64_t holder);
  void set_state(node_state s, const std::string& why);
  void schedule_keepalive(std::chrono::milliseconds delay);
  std::chrono::milliseconds keepalive_interval() const;
  void keepalive();
  void check_deadline();
  void retry_register_later();
  void publish_view();
  std::string node_value(int64_t lease) const;
  std::string member_value() const;

  std::shared_ptr<etcd_client> client_;
  membership_settings settings_;
  events events_;
  std::string node_key_, member_key_;
  std::shared_ptr<prefix_mirror> nodes_, members_;
  boost::asio::steady_timer keepalive_timer_, deadline_timer_, retry_timer_;
  node_state state_ = node_state::joining;
  std::string reason_;
  int64_t lease_ = 0;  // the lease the node holds (or held, when fenced)
  std::chrono::seconds ttl_{0};
  clock::time_point deadline_{};  // fence when reached without a renewal
  bool first_reported_ = false;
  bool registering_ = false;
  bool keepalive_pending_ = false;
  int64_t holder_ = 0;  // the lease seen holding this node's name at start
  clock::time_point holder_deadline_{};
  bool stopped_ = false;
  size_t failures_logged_ = 0;

  mutable std::mutex view_mutex_;
  std::shared_ptr<const cluster_view> view_;
};

}  // namespace warren::cluster
