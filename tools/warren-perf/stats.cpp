// Latency histogram arithmetic and medians for warren-perf.
#include "stats.hpp"

#include <algorithm>
#include <bit>

namespace warren::perf {

// Values below 128 have their own bucket; above, a bucket is the top 7 significant bits
// (64 sub-buckets per power of two): index = e * 64 + (v >> e), where e = msb(v) - 6.
size_t latency_histogram::index(uint64_t v) {
  if (v < 128) return size_t(v);
  int e = 63 - std::countl_zero(v) - sub_bits;
  return size_t(e) * 64 + size_t(v >> e);
}

uint64_t latency_histogram::lowest(size_t idx) {
  if (idx < 128) return idx;
  size_t e = idx / 64 - 1;
  return uint64_t(idx - e * 64) << e;
}

uint64_t latency_histogram::highest(size_t idx) {
  if (idx < 128) return idx;
  size_t e = idx / 64 - 1;
  return (uint64_t(idx - e * 64 + 1) << e) - 1;
}

void latency_histogram::merge(const latency_histogram& o) {
  for (size_t i = 0; i < bucket_count; ++i) buckets_[i] += o.buckets_[i];
  count_ += o.count_;
  max_ = std::max(max_, o.max_);
}

uint64_t latency_histogram::quantile(double q) const {
  if (count_ == 0) return 0;
  // The rank of the sample at quantile q, 1-based (nearest-rank definition).
  auto rank = uint64_t(q * double(count_));
  if (rank < 1) rank = 1;
  if (rank > count_) rank = count_;
  uint64_t seen = 0;
  for (size_t i = 0; i < bucket_count; ++i) {
    seen += buckets_[i];
    if (seen >= rank) return std::min(max_, lowest(i) + (highest(i) - lowest(i)) / 2);
  }
  return max_;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace warren::perf
