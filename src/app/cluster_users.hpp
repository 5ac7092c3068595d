// The cluster's users and their permissions, kept in etcd (docs/cluster.md, "Users"): one key per
// user, /warren/<cluster>/users/<name>, holding the user, its tags, permissions, topic permissions
// and limits. A node publishes its user store after each saved change (one txn with every key
// that differs from etcd's); every node mirrors the prefix and applies what changed to its own
// store (and users.json), so a user created on one node can log in on every node. Lives on the
// cluster thread, except publish(), which any thread may call.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "auth/user_store.hpp"
#include "cluster/prefix_mirror.hpp"
#include "mgmt/users_file.hpp"

namespace warren::app {

// A user as its etcd value (canonical: equal users give equal text).
std::string user_to_text(const auth::user& u);
// nullopt when the text is not a user.
std::optional<auth::user> user_from_text(std::string_view text);

class cluster_users : public std::enable_shared_from_this<cluster_users> {
 public:
  cluster_users(std::shared_ptr<cluster::etcd_client> client, std::string cluster,
                auth::user_store& users, mgmt::users_file* file);
  void start();  // cluster thread
  void stop();   // cluster thread
  // Any thread: sends the store's users to etcd (on the cluster thread), if the node has read
  // etcd's users once already (before that, etcd's win).
  void publish();

 private:
  void on_change(const cluster::prefix_mirror::items_map& items);
  void publish_now();

  std::shared_ptr<cluster::etcd_client> client_;
  std::string prefix_;
  auth::user_store& users_;
  mgmt::users_file* file_;
  std::shared_ptr<cluster::prefix_mirror> mirror_;
  bool seeded_ = false;  // etcd's users read once (and applied, or seeded from this node)
  std::map<std::string, std::string> applied_;  // key -> value last applied from etcd
  // Values this node wrote and has not yet seen come back through the watch. Their echo is not
  // applied: the store may have changed again meanwhile, and the echo would undo that change.
  std::map<std::string, std::multiset<std::string>> in_flight_;
  uint64_t reads_seen_ = 0;  // the mirror's reads() when in_flight_ was last valid
};

}  // namespace warren::app
