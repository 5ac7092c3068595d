// A shard's cache of the message records its paging queues read back from the store, so that a
// fanout message paged by many queues is read (and decoded) once, not once per queue. Owned by a
// vhost shard and used only on its worker, like the queues it serves; nothing here is shared
// with another thread except the messages themselves (immutable, held by shared_ptr).
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "broker/journal.hpp"
#include "broker/message.hpp"

namespace warren::broker {

// Keyed by the record's location (segment, offset). A location names one record for the life of
// the store: records are appended and never rewritten in place, segments are numbered upward and
// a deleted segment's number is not used again while the process runs (docs/storage.md). A hit
// is also checked against the record's length, so a stale entry can only be missed, not served.
//
// Two tiers:
// - *held*: the most recently read messages, held alive, at most max_bytes of bodies (plus a
//   fixed cost per entry). This is real memory and shows in the RSS that the memory watermark
//   watches; `trim` drops it (the vhost calls it when memory pressure starts).
// - *seen*: a weak reference to a record read earlier and since pushed out of the held tier (or
//   never held: larger than the bound). It costs no body bytes: it is a hit while any queue,
//   unacked delivery or connection output still holds the message. At most max_seen entries.
class read_cache {
 public:
  static constexpr size_t default_max_bytes = 16u << 20;
  static constexpr size_t default_max_seen = 8192;
  static constexpr size_t entry_cost = 128;  // bookkeeping counted per held entry

  explicit read_cache(size_t max_bytes = default_max_bytes, size_t max_seen = default_max_seen)
      : max_bytes_(max_bytes), max_seen_(max_seen) {}
  ~read_cache();  // logs what it saved, if it served any paging read
  read_cache(const read_cache&) = delete;
  read_cache& operator=(const read_cache&) = delete;

  // out[i] for where[i], as journal::read_many: from the cache where it can, the rest from `j`
  // in one read_many (in the given order, so neighbouring records still go in one pread).
  void read_many(journal& j, std::span<const journal::location> where,
                 std::vector<message_ptr>& out);

  // Drops the held tier (the seen tier holds nothing alive).
  void trim();
  void set_max_bytes(size_t n);

  struct counters {
    uint64_t hits = 0;       // served from the held tier
    uint64_t seen_hits = 0;  // served from a message still alive elsewhere
    uint64_t misses = 0;     // read from the store
  };
  const counters& stats() const { return stats_; }
  size_t held_bytes() const { return held_bytes_; }
  size_t held_entries() const { return held_.size(); }
  size_t seen_entries() const { return seen_.size(); }

 private:
  static uint64_t key(uint32_t segment, uint32_t offset) {
    return uint64_t(segment) << 32 | offset;
  }
  struct entry {
    std::weak_ptr<const message> weak;
    message_ptr held;                   // null in the seen tier
    std::list<uint64_t>::iterator pos;  // in held_ or seen_
  };
  message_ptr lookup(const journal::location& l);
  void insert(const journal::location& l, const message_ptr& m);
  void to_seen(std::unordered_map<uint64_t, entry>::iterator it);
  void bound();
  static size_t cost(const message& m) { return m.body.size() + entry_cost; }

  size_t max_bytes_;
  size_t max_seen_;
  size_t held_bytes_ = 0;
  std::unordered_map<uint64_t, entry> map_;
  std::list<uint64_t> held_;  // most recent first
  std::list<uint64_t> seen_;  // most recent first
  counters stats_;
  // Scratch for read_many, kept to avoid allocating per refill.
  std::vector<journal::location> miss_where_;
  std::vector<size_t> miss_index_;
  std::vector<message_ptr> miss_got_;
};

}  // namespace warren::broker
