// A map from user id to a value, built for a million users who are away: the values sit in
// chunks of 4096 (their addresses never change, as with a node-based map), the ids in one arena
// of bytes, and the index is an open-addressing table of 32-bit slot numbers. Per entry: the value,
// 8 bytes of bookkeeping, the id's bytes and 4 to 8 bytes of index, where std::unordered_map
// would add about 56 bytes of node, string and bucket. Single-threaded (the hub's worker).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace warren::web {

template <typename V>
class user_table {
 public:
  size_t size() const { return size_; }

  V* find(std::string_view key) {
    if (index_.empty()) return nullptr;
    size_t mask = index_.size() - 1;
    for (size_t i = hash(key) & mask;; i = (i + 1) & mask) {
      uint32_t s = index_[i];
      if (s == empty) return nullptr;
      if (s != tombstone && key_of(s - 1) == key) return &at(s - 1).value;
    }
  }
  const V* find(std::string_view key) const { return const_cast<user_table*>(this)->find(key); }

  // The value for `key`, made (value-initialised) if new; true if new.
  std::pair<V*, bool> try_emplace(std::string_view key) {
    if (V* v = find(key)) return {v, false};
    if ((used_ + 1) * 4 > index_.size() * 3) rehash(std::max<size_t>(64, size_ * 4));
    uint32_t slot = take_slot();
    entry& e = at(slot);
    e.key_at = uint32_t(arena_.size());
    e.key_len = uint32_t(key.size());
    arena_.append(key);
    e.value = V{};
    size_t mask = index_.size() - 1;
    for (size_t i = hash(key) & mask;; i = (i + 1) & mask) {
      if (index_[i] == empty || index_[i] == tombstone) {
        if (index_[i] == empty) ++used_;
        index_[i] = slot + 1;
        break;
      }
    }
    ++size_;
    return {&e.value, true};
  }

  bool erase(std::string_view key) {
    if (index_.empty()) return false;
    size_t mask = index_.size() - 1;
    for (size_t i = hash(key) & mask;; i = (i + 1) & mask) {
      uint32_t s = index_[i];
      if (s == empty) return false;
      if (s != tombstone && key_of(s - 1) == key) {
        index_[i] = tombstone;
        entry& e = at(s - 1);
        garbage_ += e.key_len;
        e.key_len = dead;
        e.value = V{};
        free_.push_back(s - 1);
        --size_;
        if (garbage_ > 4096 && garbage_ * 2 > arena_.size()) compact_arena();
        return true;
      }
    }
  }

  // Calls fn(key, value) for up to `n` slots from `cursor` on (wrapping), so that a sweep over a
  // million entries can be spread over many calls. fn must not add or erase.
  template <typename F>
  void visit_some(size_t& cursor, size_t n, F&& fn) {
    size_t total = chunks_.size() * chunk;
    if (total == 0) return;
    for (size_t k = 0; k < n && k < total; ++k) {
      size_t s = cursor++ % total;
      entry& e = at(uint32_t(s));
      if (s < next_ && e.key_len != dead) fn(key_of(uint32_t(s)), e.value);
    }
    cursor %= total;
  }

  template <typename F>
  void for_each(F&& fn) {
    for (uint32_t s = 0; s < next_; ++s)
      if (at(s).key_len != dead) fn(key_of(s), at(s).value);
  }

  // Bytes held, for the statistics and the benchmark's accounting.
  size_t memory() const {
    return chunks_.size() * chunk * sizeof(entry) + index_.capacity() * 4 + arena_.capacity() +
           free_.capacity() * 4;
  }

 private:
  static constexpr size_t chunk = 4096;
  static constexpr uint32_t empty = 0, tombstone = 0xffffffff, dead = 0xffffffff;
  struct entry {
    V value;
    uint32_t key_at = 0;
    uint32_t key_len = dead;
  };

  static size_t hash(std::string_view k) { return std::hash<std::string_view>()(k); }
  entry& at(uint32_t s) { return chunks_[s / chunk][s % chunk]; }
  std::string_view key_of(uint32_t s) {
    const entry& e = at(s);
    return std::string_view(arena_).substr(e.key_at, e.key_len);
  }
  uint32_t take_slot() {
    if (!free_.empty()) {
      uint32_t s = free_.back();
      free_.pop_back();
      return s;
    }
    if (next_ == chunks_.size() * chunk) chunks_.push_back(std::make_unique<entry[]>(chunk));
    return next_++;
  }
  void rehash(size_t want) {
    size_t n = 64;
    while (n < want) n *= 2;
    std::vector<uint32_t> fresh(n, empty);
    size_t mask = n - 1;
    for (uint32_t s = 0; s < next_; ++s) {
      if (at(s).key_len == dead) continue;
      for (size_t i = hash(key_of(s)) & mask;; i = (i + 1) & mask)
        if (fresh[i] == empty) {
          fresh[i] = s + 1;
          break;
        }
    }
    index_ = std::move(fresh);
    used_ = size_;
  }
  void compact_arena() {
    std::string a;
    a.reserve(arena_.size() - garbage_);
    for (uint32_t s = 0; s < next_; ++s) {
      entry& e = at(s);
      if (e.key_len == dead) continue;
      std::string_view k = std::string_view(arena_).substr(e.key_at, e.key_len);
      e.key_at = uint32_t(a.size());
      a.append(k);
    }
    arena_ = std::move(a);
    garbage_ = 0;
  }

  std::vector<std::unique_ptr<entry[]>> chunks_;
  uint32_t next_ = 0;            // slots ever used
  std::vector<uint32_t> free_;   // erased slots, reused first
  std::vector<uint32_t> index_;  // open addressing: slot + 1, 0 empty, ~0 erased
  std::string arena_;            // the keys' bytes
  size_t size_ = 0;
  size_t used_ = 0;  // index positions not empty (live or erased)
  size_t garbage_ = 0;
};

}  // namespace warren::web
