// Measurement for warren-perf: per-connection counters read by the reporter thread, a log-linear
// latency histogram per I/O thread, and the end-of-run summary.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace warren::perf {

// One writer (the connection's I/O thread), one reader (the reporter): a relaxed load + store is
// enough and avoids a locked instruction per message.
inline void bump(std::atomic<uint64_t>& a, uint64_t n = 1) {
  a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

struct counters {
  std::atomic<uint64_t> published{0};
  std::atomic<uint64_t> confirmed{0};  // publisher confirms: acks
  std::atomic<uint64_t> nacked{0};
  std::atomic<uint64_t> returned{0};  // basic.return
  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> latency_sum_ns{0};  // for the per-second mean only
  std::atomic<uint64_t> latency_count{0};
  std::atomic<uint64_t> blocked{0};  // connection.blocked notifications
};

// Latencies in nanoseconds with about 1.5% relative error: 128 exact buckets, then 64 buckets per
// power of two (the HdrHistogram layout, hand-written because it is 40 lines and we need no
// library for it). Owned by one I/O thread; merged after the threads are joined.
class latency_histogram {
 public:
  void record(uint64_t ns) {
    ++buckets_[index(ns)];
    ++count_;
    if (ns > max_) max_ = ns;
  }
  void merge(const latency_histogram& o);
  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }
  // Value at quantile q (0..1), the midpoint of its bucket, capped at max().
  uint64_t quantile(double q) const;
  // f(midpoint, count) for every non-empty bucket, lowest first: enough for another process to
  // merge histograms (warren-flood's JSON output).
  template <typename F>
  void for_each_bucket(F&& f) const {
    for (size_t i = 0; i < bucket_count; ++i)
      if (buckets_[i] != 0)
        f(std::min(max_, lowest(i) + (highest(i) - lowest(i)) / 2), buckets_[i]);
  }

 private:
  static constexpr int sub_bits = 6;
  static constexpr size_t bucket_count = (64 - sub_bits) * (size_t(1) << sub_bits) + 128;
  static size_t index(uint64_t v);
  static uint64_t lowest(size_t idx);
  static uint64_t highest(size_t idx);

  std::array<uint64_t, bucket_count> buckets_{};
  uint64_t count_ = 0;
  uint64_t max_ = 0;
};

double median(std::vector<double> v);

}  // namespace warren::perf
