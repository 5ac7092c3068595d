// A count of things in use (connections of a vhost, channels of a user) with an optional limit,
// shared by every worker: taken and given back at open and close, never per frame or message.
// The limit is kept as it was set, RabbitMQ's way: unset, a negative value (no limit), 0 (none
// allowed) or a maximum.
#pragma once

#include <atomic>
#include <cstdint>
#include <limits>
#include <optional>

namespace warren::common {

class limited_count {
 public:
  static constexpr int64_t unset = std::numeric_limits<int64_t>::min();

  // Any thread. Takes one unless that would go past the limit; then the limit is returned and
  // nothing is taken. Exact under contention: a compare-and-swap, so two workers racing for the
  // last place cannot both get it, and a refusal never counts even for a moment.
  std::optional<int64_t> try_acquire() {
    int64_t limit = limit_.load(std::memory_order_relaxed);
    int64_t n = count_.load(std::memory_order_relaxed);
    do {
      if (limit >= 0 && n >= limit) return limit;
    } while (!count_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
    return std::nullopt;
  }
  // Any thread. Gives one back.
  void release() { count_.fetch_sub(1, std::memory_order_relaxed); }

  // Any thread. A limit applies to what is taken from then on: lowering it below the count
  // takes nothing back (as in RabbitMQ, open connections stay open).
  void set_limit(int64_t v) { limit_.store(v, std::memory_order_relaxed); }
  int64_t limit() const { return limit_.load(std::memory_order_relaxed); }
  int64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> limit_{unset};
  std::atomic<int64_t> count_{0};
};

// One place taken from a limited_count, given back when destroyed or reset. Movable.
class limit_slot {
 public:
  limit_slot() = default;
  explicit limit_slot(limited_count* from) : from_(from) {}
  limit_slot(limit_slot&& o) noexcept : from_(o.from_) { o.from_ = nullptr; }
  limit_slot& operator=(limit_slot&& o) noexcept {
    if (this != &o) {
      reset();
      from_ = o.from_;
      o.from_ = nullptr;
    }
    return *this;
  }
  limit_slot(const limit_slot&) = delete;
  limit_slot& operator=(const limit_slot&) = delete;
  ~limit_slot() { reset(); }

  void reset() {
    if (from_) from_->release();
    from_ = nullptr;
  }
  bool held() const { return from_ != nullptr; }

 private:
  limited_count* from_ = nullptr;
};

}  // namespace warren::common
