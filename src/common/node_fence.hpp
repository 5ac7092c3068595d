// Whether this node may serve clients: in a cluster, only while it holds its lease in etcd
// (docs/cluster.md, "Fencing"). Written by the cluster thread, read by every worker when a
// client connects; a single node is never fenced. Shared between threads (an atomic flag, the
// reason under a mutex, read only when fenced).
//
// Also the lease's deadline (steady clock), moved forward by each renewal: the workers compare it
// with the time they read input at (a clock read they make anyway), so a node that wakes from a
// pause past its lease handles no client's input before the cluster thread has fenced it. A
// single node has none (never lapsed).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
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

  using clock = std::chrono::steady_clock;
  // The lease's deadline and what a client is told when input arrives after it.
  void serve_until(clock::time_point deadline) {
    until_.store(deadline.time_since_epoch().count(), std::memory_order_release);
  }
  void set_lapse_reason(std::string reason) {
    std::lock_guard lock(mutex_);
    lapse_reason_ = std::move(reason);
  }
  bool lapsed(clock::time_point now) const {
    return now.time_since_epoch().count() >= until_.load(std::memory_order_acquire);
  }
  // Fenced, or past the deadline though the cluster thread has not noticed yet.
  bool refuses(clock::time_point now) const { return fenced() || lapsed(now); }
  std::string refusal() const {
    std::lock_guard lock(mutex_);
    return fenced_.load(std::memory_order_acquire) || lapse_reason_.empty() ? reason_
                                                                            : lapse_reason_;
  }

 private:
  std::atomic<bool> fenced_{false};
  std::atomic<clock::rep> until_{std::numeric_limits<clock::rep>::max()};
  std::string lapse_reason_;
  mutable std::mutex mutex_;
  std::string reason_;
};

}  // namespace warren::common
