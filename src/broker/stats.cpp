// The broker-wide counters' per-thread blocks.
#include "broker/stats.hpp"

#include <chrono>
#include <mutex>

namespace warren::broker {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {

// Blocks are never freed: a thread's counts stay in the totals after it ends.
struct registry {
  std::mutex mutex;
  std::vector<std::unique_ptr<global_counters>> blocks;
};

registry& blocks() {
  static registry r;
  return r;
}

}  // namespace

global_counters& global_counters::local() {
  thread_local global_counters* mine = [] {
    auto& r = blocks();
    std::lock_guard lock(r.mutex);
    return r.blocks.emplace_back(std::make_unique<global_counters>()).get();
  }();
  return *mine;
}

std::array<uint64_t, global_counters::count_> global_counters::total() {
  std::array<uint64_t, count_> sum{};
  auto& r = blocks();
  std::lock_guard lock(r.mutex);
  for (const auto& b : r.blocks)
    for (size_t i = 0; i < count_; ++i) sum[i] += b->v[i].load(std::memory_order_relaxed);
  return sum;
}

void global_counters::observe_size(uint64_t bytes) {
  static constexpr uint64_t bounds[] = {100,     1000,     10000,    100000,
                                        1000000, 10000000, 50000000, 100000000};
  size_t i = 0;
  while (i < std::size(bounds) && bytes > bounds[i]) ++i;
  add(id(size_le_100 + i));
  add(size_sum, bytes);
}

}  // namespace warren::broker
