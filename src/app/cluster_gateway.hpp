// The web gateway's shard map in etcd (docs/cluster.md, "The web gateway across nodes"): one key,
// /warren/<cluster>/gateway/shards, holding the 256 slots' owners (web/shard_map.hpp). Every node
// mirrors it into a web::shard_table that the hub reads; when the set of running nodes differs
// from the map's, a serving node computes the rebalanced map (the same rule on every node: few
// slots move) and writes it with a txn guarded by the key's version as read, so one write wins
// and the others see it through their watch and find nothing left to change. On the cluster
// thread.
#pragma once

#include <boost/asio/steady_timer.hpp>

#include <functional>
#include <memory>
#include <string>

#include "cluster/etcd_client.hpp"
#include "cluster/membership.hpp"
#include "cluster/prefix_mirror.hpp"
#include "web/shard_map.hpp"

namespace warren::app {

class cluster_gateway : public std::enable_shared_from_this<cluster_gateway> {
 public:
  cluster_gateway(std::shared_ptr<cluster::etcd_client> client, std::string cluster,
                  std::shared_ptr<cluster::membership> membership,
                  std::shared_ptr<web::shard_table> table, std::function<void()> on_map);
  void start();
  void stop();
  std::string key() const { return key_; }

 private:
  void on_change(const cluster::prefix_mirror::items_map& items);
  void check();
  void arm();

  std::shared_ptr<cluster::etcd_client> client_;
  std::string key_;
  std::weak_ptr<cluster::membership> membership_;
  std::shared_ptr<web::shard_table> table_;
  std::function<void()> on_map_;
  std::shared_ptr<cluster::prefix_mirror> mirror_;
  boost::asio::steady_timer timer_;
  web::slot_list current_;
  int64_t version_ = 0;  // the key's version as read (0: absent)
  bool writing_ = false;
  bool stopped_ = false;
};

}  // namespace warren::app
