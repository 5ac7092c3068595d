// The x-consistent-hash exchange's choice of one destination per message: weighted buckets
// chosen by jump consistent hashing, after RabbitMQ 3.10's plugin. Owned by its exchange;
// pick is const and safe to call from several threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "broker/dest_id.hpp"

namespace warren::broker {

// The weight a binding key asks for: a decimal integer >= 1, with an optional leading '+' or
// '-' and leading zeros, as Erlang's list_to_integer reads it ("+5" and "007" are accepted; "0",
// "-1", "", " 5", "5.0", "1e3" are not). RabbitMQ accepts any positive integer; we also refuse
// one above UINT32_MAX. The caller answers nullopt with 406 PRECONDITION_FAILED.
std::optional<uint32_t> parse_weight(std::string_view binding_key);

// The hash of a routing key (or of the header/property the exchange hashes on), fixed forever:
// FNV-1a over the bytes, then the SplitMix64 finaliser. Hand-written because it must give the
// same value on every build, library version and machine (routing must not change across an
// upgrade), and FNV alone mixes its last bytes poorly into the high bits jump hashing consumes.
uint64_t ring_hash(std::string_view key);

// Destinations own contiguous ranges of buckets, as many as their weight, in the order they
// were added; a key's bucket is jump_consistent_hash(ring_hash(key), total weight) (Lamping and
// Veach, 2014), which spreads keys evenly over buckets, so each destination receives its weight's
// share. The mapping is a function of the ordered list of live (destination, weight) pairs: the
// same list (for instance replayed after a restart) routes every key the same way.
//
// Adding a destination appends buckets; jump hashing then moves only the keys that now fall in
// the new buckets, i.e. about weight / new total of them, all to the new destination. Removing
// the most recently added destination is the exact reverse. Removing an older one shifts the
// later ranges down (as RabbitMQ does), so keys of the destinations added after it move too.
class consistent_hash_ring {
 public:
  // False (and no change) if d is already on the ring, whatever its weight; weight must be >= 1.
  bool add(dest_id d, uint32_t weight);
  bool remove(dest_id d);
  std::optional<dest_id> pick(std::string_view hash_key) const;
  std::optional<dest_id> pick_hash(uint64_t hash) const;

  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  uint64_t total_weight() const { return entries_.empty() ? 0 : entries_.back().end; }

 private:
  struct entry {
    dest_id dest;
    uint32_t weight;
    uint64_t end;  // one past this destination's last bucket
  };
  std::vector<entry> entries_;  // in the order added
};

// Jump consistent hash: the bucket in [0, buckets) for a key; buckets must be >= 1.
uint64_t jump_consistent_hash(uint64_t key, uint64_t buckets);

}  // namespace warren::broker
