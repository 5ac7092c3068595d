// Message deduplication (seed 003's "idempotency barrier"), as RabbitMQ's community plugin
// rabbitmq-message-deduplication and LavinMQ name it: an exchange of type
// x-message-deduplication, or any exchange or queue declared with x-message-deduplication = true,
// drops a message whose deduplication key it has seen within its window (x-cache-size entries,
// x-cache-ttl milliseconds). Owned by its exchange or queue, on the vhost's worker; not
// thread-safe. docs/compatibility.md, "Message deduplication".
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "broker/error.hpp"
#include "broker/message.hpp"
#include "common/field_table.hpp"

namespace warren::broker {

// A remembered key: 128 bits of the SHA-256 of the key's type and bytes, so that an entry costs
// the same whatever the length of the id (a UUID is 36 bytes), and telling two different ids
// apart fails with odds of about n / 2^128 per message, far below any hardware fault rate.
struct dedup_key {
  uint64_t lo = 0, hi = 0;
  bool operator==(const dedup_key&) const = default;
};

// The window: at most `capacity` keys, the oldest (by first insertion) evicted to make room,
// each forgotten once its deadline passes. Storage grows with the keys actually remembered, not
// with the capacity (a declare may ask for millions).
//
// Hand-written rather than std::unordered_map + std::list (two nodes, about 100 bytes a key) or
// Boost 1.81's unordered_flat_map beside an order ring (the map's buckets would hold the 16-byte
// key again, about 50 bytes a key in all): here a key costs one 24-byte slot in a ring
// (insertion order) and 8 to 16 bytes of an open-addressing index of 4-byte slot positions
// (linear probing, backward-shift deletion). docs/benchmarks.md has the measured figure.
class dedup_cache {
 public:
  explicit dedup_cache(size_t capacity) : capacity_(capacity) {}

  // Whether `k` is remembered and its deadline (a now_ms() value; 0: none) has not passed.
  bool contains(const dedup_key& k, int64_t now) const;
  // Remembers `k` until `deadline` (0: until evicted). A key already there keeps its place in
  // the eviction order and takes the new deadline. Evicts the oldest key when full, and drops
  // expired keys at the old end on the way.
  void insert(const dedup_key& k, int64_t deadline, int64_t now);
  // Forgets `k` (a publish it let through was refused after all). No-op if absent.
  void erase(const dedup_key& k);
  void clear();

  size_t size() const { return live_; }
  size_t capacity() const { return capacity_; }
  // Bytes held by the ring and the index (for the management view and the benchmark).
  size_t memory_bytes() const {
    return slots_.capacity() * sizeof(slot) + index_.capacity() * sizeof(uint32_t);
  }

 private:
  struct slot {
    dedup_key key;
    int64_t deadline = 0;  // 0: never; -1: erased (a hole, skipped when it reaches the old end)
  };
  static constexpr uint32_t empty_ = UINT32_MAX;
  static constexpr int64_t erased_ = -1;

  size_t find(const dedup_key& k) const;  // index_ position holding k, or SIZE_MAX
  void index_remove(size_t pos);          // backward-shift deletion at index_[pos]
  void pop_oldest();
  void grow();
  void rebuild_index();
  size_t home(const dedup_key& k) const { return size_t(k.lo) & (index_.size() - 1); }

  std::vector<slot> slots_;      // a ring: slots_[head_] is the oldest of count_ slots
  std::vector<uint32_t> index_;  // power-of-two size, at least twice slots_.size()
  size_t head_ = 0;
  size_t count_ = 0;  // slots in use, holes included
  size_t live_ = 0;   // keys remembered
  size_t capacity_;
};

// What an exchange's or queue's arguments ask for.
struct dedup_settings {
  size_t cache_size = 128;              // LavinMQ's default; the plugin's exchange type requires it
  std::optional<int64_t> cache_ttl_ms;  // none: keys stay until evicted
  std::string header = "x-deduplication-header";  // LavinMQ's x-deduplication-header argument
  // Warren's x-deduplication-property = "message_id": a message without the header is
  // deduplicated on its message_id property.
  bool fall_back_to_message_id = false;
};

inline constexpr std::string_view dedup_exchange_type = "x-message-deduplication";

// Validates the deduplication arguments of a declare, with the plugin's 406 texts, and says
// whether deduplication is on: for the exchange type x-message-deduplication (x-cache-size
// required), or for any exchange or queue with x-message-deduplication = true. nullopt settings
// and no error: deduplication is off. `exchange_type` is empty for a queue.
maybe_error parse_dedup_arguments(const common::field_table& args, std::string_view exchange_type,
                                  std::optional<dedup_settings>& out);

// The filter an exchange or queue owns: the key of a message, the window, and its counts.
class dedup_filter {
 public:
  explicit dedup_filter(dedup_settings s) : settings_(std::move(s)), cache_(settings_.cache_size) {}

  // The message's key: the configured header (a string, byte array, integer, boolean, float or
  // timestamp; other types and a missing header: none), else message_id if so configured. A
  // message without a key is never a duplicate and is not remembered.
  std::optional<dedup_key> key_of(const message& m) const;
  bool seen(const dedup_key& k, int64_t now) const { return cache_.contains(k, now); }
  // Remembers k for the message's x-cache-ttl header (a positive integer, in ms) or else the
  // declared x-cache-ttl.
  void remember(const dedup_key& k, const message& m, int64_t now);
  void forget(const dedup_key& k) { cache_.erase(k); }

  // True (and counted) if m is a duplicate; otherwise remembers it. For exchanges, which take
  // the message whatever happens after routing.
  bool check_and_remember(const message& m, int64_t now);

  const dedup_settings& settings() const { return settings_; }
  const dedup_cache& cache() const { return cache_; }
  uint64_t dropped = 0;  // duplicates dropped

 private:
  dedup_settings settings_;
  dedup_cache cache_;
};

// The key of raw bytes tagged with their type (exposed for the tests and the benchmark).
dedup_key make_dedup_key(char type, const void* data, size_t n);

}  // namespace warren::broker
