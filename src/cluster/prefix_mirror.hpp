// A local copy of every key under a prefix in etcd, kept current by a watch: range, then watch
// from the range's revision + 1; when the watch ends (etcd unreachable, compaction) range again
// after a pause. Lives on the etcd client's thread. The base on which every node keeps its copy
// of the cluster's state (members today, definitions next: docs/cluster.md).
#pragma once

#include <boost/asio/steady_timer.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cluster/etcd_client.hpp"

namespace warren::cluster {

class prefix_mirror : public std::enable_shared_from_this<prefix_mirror> {
 public:
  using items_map = std::map<std::string, key_value>;
  // Called on the client's thread after the first range and after every change that follows.
  using on_change_fn = std::function<void(const items_map&)>;

  prefix_mirror(std::shared_ptr<etcd_client> client, std::string prefix, on_change_fn on_change,
                std::chrono::milliseconds retry = std::chrono::milliseconds(500));
  void start();
  void stop();

  const items_map& items() const { return items_; }
  bool synced() const { return synced_; }  // a range has been read and the watch is running
  int64_t revision() const { return revision_; }
  // How many times the prefix was read whole (the first read, then one per lost watch): events
  // between two reads may have been folded into the second.
  uint64_t reads() const { return reads_; }
  // During on_change: the keys the change is about (put or deleted), or, after a whole read,
  // every key (`changed_all()`: keys gone while the watch was lost are not listed).
  const std::vector<std::string>& changed() const { return changed_; }
  bool changed_all() const { return changed_all_; }

 private:
  void resync();
  void retry_later();
  void apply(const watch_message& m);

  std::shared_ptr<etcd_client> client_;
  std::string prefix_;
  on_change_fn on_change_;
  std::chrono::milliseconds retry_;
  boost::asio::steady_timer timer_;
  std::shared_ptr<etcd_watch> watch_;
  items_map items_;
  int64_t revision_ = 0;
  bool synced_ = false;
  uint64_t reads_ = 0;
  std::vector<std::string> changed_;
  bool changed_all_ = false;
  bool stopped_ = false;
};

}  // namespace warren::cluster
