// Whether this node may serve clients: in a cluster, only while it holds its lease in etcd
// (docs/cluster.md, "Fencing"). Written by the cluster thread, read by every worker when a
// client connects; a single node is never fenced. Shared between threads (an atomic flag, the
// reason under a mutex, read only when fenced).
#pragma once

#include <atomic>
#include <mutex>
#include <string>

namespace warren::common {

class node_fence {
 public:
  bool fenced() const { return fenced_.load(std::memory_order_acquire); }
  std::string reason() const {
    std::lock_guard lock(mutex_);
    return reason_;
  }
  void set(bool fenced, std::string reason) {
    {
      std::lock_guard lock(mutex_);
      reason_ = std::move(reason);
    }
    fenced_.store(fenced, std::memory_order_release);
  }

 private:
  std::atomic<bool> fenced_{false};
  mutable std::mutex mutex_;
  std::string reason_;
};

}  // namespace warren::common
