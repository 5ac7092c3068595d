// The cluster's vhosts, kept in etcd (docs/cluster.md, "Vhosts"): one key per vhost,
// /warren/<cluster>/vhosts/<name>. A vhost created or deleted through the management API (or a
// definitions import) is written there; every node mirrors the prefix and creates or deletes the
// vhost locally through the same functions the management API calls. A node joining keeps its own
// vhosts and adds them to etcd (the union): deleting data because etcd does not list it would be
// worse than a vhost coming back. Lives on the cluster thread, except publish(), any thread.
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cluster/prefix_mirror.hpp"

namespace warren::app {

class cluster_vhosts : public std::enable_shared_from_this<cluster_vhosts> {
 public:
  struct local_ops {
    std::function<std::vector<std::string>()> names;  // the node's vhosts
    // The management API's own functions, without publishing again (errors are logged).
    std::function<std::string(const std::string& name)> create;
    std::function<void(const std::string& name, std::function<void(std::string)> done)> remove;
  };
  cluster_vhosts(std::shared_ptr<cluster::etcd_client> client, std::string cluster, local_ops ops);
  void start();  // cluster thread
  void stop();   // cluster thread
  // Any thread: a vhost was created (or deleted) here.
  void publish(const std::string& name, bool exists);

 private:
  void on_change(const cluster::prefix_mirror::items_map& items);

  std::shared_ptr<cluster::etcd_client> client_;
  std::string prefix_;
  local_ops ops_;
  std::shared_ptr<cluster::prefix_mirror> mirror_;
  bool seeded_ = false;
  std::set<std::string> known_;  // names in etcd as last applied
};

}  // namespace warren::app
