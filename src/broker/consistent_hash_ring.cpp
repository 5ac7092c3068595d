// Weighted jump-consistent-hash ring for the x-consistent-hash exchange.
#include "broker/consistent_hash_ring.hpp"

#include <algorithm>
#include <iterator>
#include <limits>

namespace warren::broker {

std::optional<uint32_t> parse_weight(std::string_view binding_key) {
  bool negative = false;
  if (!binding_key.empty() && (binding_key.front() == '+' || binding_key.front() == '-')) {
    negative = binding_key.front() == '-';
    binding_key.remove_prefix(1);
  }
  if (binding_key.empty()) return std::nullopt;
  uint64_t value = 0;
  for (char c : binding_key) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint64_t>(c - '0');
    if (value > std::numeric_limits<uint32_t>::max()) return std::nullopt;
  }
  if (negative || value == 0) return std::nullopt;  // RabbitMQ: "must be greater than 0"
  return static_cast<uint32_t>(value);
}

uint64_t ring_hash(std::string_view key) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a 64 offset basis
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;  // FNV-1a 64 prime
  }
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;  // SplitMix64 finaliser
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

// From the paper: a 64-bit LCG drives jumps forward; the last bucket jumped to below `buckets`
// is the answer. Computed in double so that huge totals cannot overflow an integer.
uint64_t jump_consistent_hash(uint64_t key, uint64_t buckets) {
  uint64_t b = 0;
  double j = 0;
  const double limit = static_cast<double>(buckets);
  while (j < limit) {
    b = static_cast<uint64_t>(j);
    key = key * 2862933555777941757ull + 1;
    j = (static_cast<double>(b) + 1) * (2147483648.0 / static_cast<double>((key >> 33) + 1));
  }
  return b;
}

bool consistent_hash_ring::add(dest_id d, uint32_t weight) {
  if (weight == 0) return false;
  for (const auto& e : entries_)
    if (e.dest == d) return false;  // RabbitMQ keeps the first binding's weight, too
  entries_.push_back(entry{d, weight, total_weight() + weight});
  return true;
}

bool consistent_hash_ring::remove(dest_id d) {
  auto it =
      std::find_if(entries_.begin(), entries_.end(), [&](const entry& e) { return e.dest == d; });
  if (it == entries_.end()) return false;
  uint64_t end = it == entries_.begin() ? 0 : std::prev(it)->end;
  it = entries_.erase(it);
  for (; it != entries_.end(); ++it) it->end = end += it->weight;
  return true;
}

std::optional<dest_id> consistent_hash_ring::pick_hash(uint64_t hash) const {
  if (entries_.empty()) return std::nullopt;
  const uint64_t bucket = jump_consistent_hash(hash, total_weight());
  auto it = std::upper_bound(entries_.begin(), entries_.end(), bucket,
                             [](uint64_t b, const entry& e) { return b < e.end; });
  return it->dest;  // bucket < total_weight(), so some entry ends after it
}

std::optional<dest_id> consistent_hash_ring::pick(std::string_view hash_key) const {
  return pick_hash(ring_hash(hash_key));
}

}  // namespace warren::broker
