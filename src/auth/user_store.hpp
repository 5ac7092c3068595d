// Users, their password hashes, tags, per-vhost permissions and topic permissions, and the
// loopback-only rule. Shared by every worker: AMQP connections read it at login, the management
// API reads it and replaces users at run time (definitions import). Users are immutable values
// held by shared_ptr; a change swaps the pointer under a writer lock, so a reader keeps the
// version it looked up for as long as it holds it (a connection keeps its user for its lifetime).
//
// Permissions are compiled (permissions.hpp) under the same writer lock, for the users a change
// replaced, and then the store's generation is bumped. A connection keeps the compiled access of
// its vhost and compares the generation (one atomic load) before each operation, so a change
// applies to open channels from their next operation on.
// The loopback settings are set before the workers start and read-only afterwards.
#pragma once

#include <boost/asio/ip/address.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "auth/ip_network.hpp"
#include "auth/permissions.hpp"
#include "auth/sasl.hpp"
#include "common/limited_count.hpp"

namespace warren::auth {

struct permission {
  std::string configure = ".*";
  std::string write = ".*";
  std::string read = ".*";
  bool operator==(const permission&) const = default;
};

// RabbitMQ's topic permission: which routing keys a user may publish with (write) and bind with
// (read) on one topic exchange.
struct topic_permission {
  std::string write = ".*";
  std::string read = ".*";
  bool operator==(const topic_permission&) const = default;
};
using topic_permissions_by_exchange = std::map<std::string, topic_permission, std::less<>>;

struct user {
  std::string name;
  std::string password_hash;  // see password.hpp
  std::vector<std::string> tags;
  std::map<std::string, permission, std::less<>> permissions;                           // by vhost
  std::map<std::string, topic_permissions_by_exchange, std::less<>> topic_permissions;  // by vhost
  // RabbitMQ's user limits as set: "max-connections", "max-channels" (a negative value: no limit).
  std::map<std::string, int64_t, std::less<>> limits;
  // Another node of this cluster, logged in over a link between nodes (user_store::
  // set_cluster_secret): every vhost, every permission. Never read from or written to a file.
  bool cluster_node = false;
  bool operator==(const user&) const = default;
};

// The user names nodes of a cluster log in with over their links ("warren-node:<node>"); no
// ordinary user can log in under one.
inline constexpr std::string_view cluster_node_user_prefix = "warren-node:";
bool is_cluster_node_name(std::string_view name);

// The names of RabbitMQ's user limits.
inline constexpr std::string_view user_max_connections = "max-connections";
inline constexpr std::string_view user_max_channels = "max-channels";

// What a user has open across every worker, each count with the user's limit on it. Kept apart
// from the user value, which a change replaces: counts go on across changes, and a changed limit
// applies to the next connection.open or channel.open.
struct user_counts {
  common::limited_count connections;
  common::limited_count channels;
};

using user_ptr = std::shared_ptr<const user>;
using user_map = std::map<std::string, user_ptr, std::less<>>;

enum class login_result { ok, invalid_credentials, loopback_only };

class user_store {
 public:
  // Any thread. Adds the user, or replaces the one with the same name.
  void add_user(user u);
  // Any thread. Runs `change` on the user map under the writer lock: several users change
  // together, and a read-modify-write (keep a user's permissions, add one) is not interleaved
  // with another writer. `change` must not call back into the store.
  void update(const std::function<void(user_map&)>& change);
  // Any thread.
  user_ptr find(std::string_view name) const;
  std::vector<user_ptr> all() const;  // by name

  // Any thread. What `user` may do in `vhost`, compiled when the user last changed; null if the
  // user does not exist or has no permission there (then nothing is allowed).
  std::shared_ptr<const vhost_access> access(std::string_view user, std::string_view vhost) const;
  // Any thread. Grows with every change, after the change's compiled access is in place: access()
  // called after reading generation g answers as of g or later.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  // Users that may log in only from a loopback peer (RabbitMQ's loopback_users, default guest),
  // and the networks that count as loopback. Set before the workers start.
  void set_loopback_users(std::vector<std::string> names) { loopback_users_ = std::move(names); }
  void set_loopback_networks(std::vector<ip_network> nets) { loopback_networks_ = std::move(nets); }

  // Checks the password and the loopback rule. `who` is set on success. Any thread.
  login_result login(const credentials& c, const boost::asio::ip::address& peer,
                     user_ptr* who) const;
  // The peer proved who it is otherwise (SASL EXTERNAL: a verified client certificate): the user
  // must exist, the loopback rule applies, there is no password. Any thread.
  login_result login_without_password(std::string_view username,
                                      const boost::asio::ip::address& peer, user_ptr* who) const;
  // Any thread. The counts of `name` (made on first use; they outlive the user, whose deletion
  // lifts its limits). Looked up once per AMQP connection.open.
  std::shared_ptr<user_counts> counts(std::string_view name) const;

  // Any thread. The cluster's shared secret (app/cluster_node.cpp keeps it in etcd): from now on
  // "warren-node:<node>" logs in with it as password, as a user with every permission on every
  // vhost. Unset (a single node), such names are refused.
  void set_cluster_secret(std::string secret);

  static bool may_access_vhost(const user& u, std::string_view vhost);
  static bool has_tag(const user& u, std::string_view tag);

 private:
  // Compiles the access of every user whose pointer changed since the last time; drops removed
  // users. Under the writer lock.
  void recompile_locked();

  struct compiled {
    user_ptr from;  // the version compiled
    std::map<std::string, std::shared_ptr<const vhost_access>, std::less<>> by_vhost;
  };

  mutable std::shared_mutex mutex_;  // guards users_ and compiled_ (the maps, not their values)
  user_map users_;
  std::map<std::string, compiled, std::less<>> compiled_;
  // By user name, never shrinking (a name's counts outlive its deletion and recreation). Under
  // mutex_; their limits follow the users' in recompile_locked.
  mutable std::map<std::string, std::shared_ptr<user_counts>, std::less<>> counts_;
  // Read before every channel operation on every worker: kept off the cache line of the lock,
  // which every reader writes.
  alignas(64) std::atomic<uint64_t> generation_{1};
  std::vector<std::string> loopback_users_{"guest"};
  std::string cluster_secret_;  // under mutex_
  // The access of the cluster's node identity, by vhost (made on first use, under mutex_).
  mutable std::map<std::string, std::shared_ptr<const vhost_access>, std::less<>> node_access_;
  std::vector<ip_network> loopback_networks_;
};

}  // namespace warren::auth
