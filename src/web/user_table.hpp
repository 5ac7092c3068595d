// A map from user id to a value, built for a million users who are away: the values sit in
// chunks of 4096 (their addresses never change, as with a node-based map), the ids in an arena of
// 64 KiB blocks, each after its length, and the index is an open-addressing table of 32-bit slot
// numbers (with spare high bits holding a few bits of the key's hash) that doubles at three
// quarters full. Per entry: the value, 4 bytes for where its id is,
// the id's bytes and one of length, and 5.3 to 10.7 bytes of index (8 at a million), where
// std::unordered_map would add about 56 bytes of node, string and bucket. Hand-written because
// the flat maps we could take (boost::unordered_flat_map is not in Debian 12's Boost 1.74) keep a
// std::string of 32 bytes per key. Single-threaded (the hub's worker).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace warren::web {

// Where the bytes of a user_table go (the gateway's statistics and the benchmark's breakdown).
struct user_table_memory {
  size_t entries = 0;  // chunks of values with their key positions
  size_t index = 0;    // the open-addressing index
  size_t keys = 0;     // the arena's blocks (ids and their lengths, erased ones until compacted)
  size_t other = 0;    // free-slot list, block pointers
  size_t total() const { return entries + index + keys + other; }
};

template <typename V>
class user_table {
 public:
  size_t size() const { return size_; }

  V* find(std::string_view key) {
    if (index_.empty()) return nullptr;
    size_t h = hash(key);
    uint32_t tag = tag_of(h);
    size_t mask = index_.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      uint32_t s = index_[i];
      if (s == empty) return nullptr;
      if (s != tombstone && (uint64_t(s) >> slot_bits_) == tag && key_of(slot_of(s)) == key)
        return &at(slot_of(s)).value;
    }
  }
  const V* find(std::string_view key) const { return const_cast<user_table*>(this)->find(key); }

  // The value for `key`, made (value-initialised) if new; true if new.
  std::pair<V*, bool> try_emplace(std::string_view key) {
    if (V* v = find(key)) return {v, false};
    if ((used_ + 1) * 4 > index_.size() * 3)
      rehash(std::max<size_t>(64, (size_ + 1) * 2));
    else if (free_.empty() && uint64_t(next_) + 2 >= uint64_t(1) << slot_bits_)
      rehash(index_.size());  // a new slot number needs more bits than the index gives them
    uint32_t slot = take_slot();
    entry& e = at(slot);
    e.key_at = store_key(key);
    e.value = V{};
    size_t h = hash(key);
    size_t mask = index_.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      if (index_[i] == empty || index_[i] == tombstone) {
        if (index_[i] == empty) ++used_;
        index_[i] = position(slot, h);
        break;
      }
    }
    ++size_;
    return {&e.value, true};
  }

  bool erase(std::string_view key) {
    if (index_.empty()) return false;
    size_t h = hash(key);
    uint32_t tag = tag_of(h);
    size_t mask = index_.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      uint32_t s = index_[i];
      if (s == empty) return false;
      if (s != tombstone && (uint64_t(s) >> slot_bits_) == tag && key_of(slot_of(s)) == key) {
        index_[i] = tombstone;
        uint32_t slot = slot_of(s);
        entry& e = at(slot);
        garbage_ += prefix_len(key.size()) + key.size();
        e.key_at = dead;
        e.value = V{};
        free_.push_back(slot);
        --size_;
        if (garbage_ > block && garbage_ * 2 > arena_bytes()) compact_arena();
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
      if (s < next_ && e.key_at != dead) fn(key_of(uint32_t(s)), e.value);
    }
    cursor %= total;
  }

  template <typename F>
  void for_each(F&& fn) {
    for (uint32_t s = 0; s < next_; ++s)
      if (at(s).key_at != dead) fn(key_of(s), at(s).value);
  }

  user_table_memory memory() const {
    user_table_memory m;
    m.entries = chunks_.size() * chunk * sizeof(entry);
    m.index = index_.capacity() * 4;
    for (const auto& b : blocks_)
      if (b.data) m.keys += b.size;
    m.other = free_.capacity() * 4 + blocks_.capacity() * sizeof(arena_block) +
              chunks_.capacity() * sizeof(chunks_[0]);
    return m;
  }
  static constexpr size_t entry_size() { return sizeof(entry); }

 private:
  static constexpr size_t chunk = 4096;
  // Arena blocks: a key never straddles two. A key longer than a block gets a block of its own
  // that takes as many block numbers as it spans, so that positions stay block * 64 KiB + offset.
  static constexpr size_t block = 64 * 1024;
  static constexpr uint32_t empty = 0, tombstone = 0xffffffff, dead = 0xffffffff;
  struct entry {
    V value;
    uint32_t key_at = dead;  // the key's length in the arena, then its bytes; dead: erased slot
  };
  struct arena_block {
    std::unique_ptr<char[]> data;  // null for the numbers an oversized key's block spans
    size_t size = 0;
  };

  static size_t hash(std::string_view k) { return std::hash<std::string_view>()(k); }
  // An index position holds slot + 1 in its low slot_bits_ and, above them, that many of the
  // key's hash's top bits (its tag), so that a probe passing other keys rarely reads their entry
  // and id (two cache misses each): 0 is empty, all ones erased.
  uint32_t tag_of(size_t h) const {
    unsigned tag_bits = 32 - slot_bits_;
    return tag_bits == 0 ? 0 : uint32_t(uint64_t(h) >> (64 - tag_bits));
  }
  uint32_t position(uint32_t slot, size_t h) const {
    return uint32_t((uint64_t(tag_of(h)) << slot_bits_) | (uint64_t(slot) + 1));
  }
  uint32_t slot_of(uint32_t s) const {
    return uint32_t((uint64_t(s) & ((uint64_t(1) << slot_bits_) - 1)) - 1);
  }
  static size_t prefix_len(size_t n) {
    size_t p = 1;
    for (; n >= 0x80; n >>= 7) ++p;
    return p;
  }
  entry& at(uint32_t s) { return chunks_[s / chunk][s % chunk]; }
  const char* arena_at(uint32_t pos) const { return blocks_[pos / block].data.get() + pos % block; }
  std::string_view key_of(uint32_t s) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(arena_at(at(s).key_at));
    size_t n = 0;
    for (int shift = 0;; shift += 7) {
      n |= size_t(*p & 0x7f) << shift;
      if (!(*p++ & 0x80)) break;
    }
    return {reinterpret_cast<const char*>(p), n};
  }
  size_t arena_bytes() const { return blocks_.size() * block; }
  // Appends the key (its length, then its bytes) to the arena; returns its position.
  uint32_t store_key(std::string_view key) {
    size_t need = prefix_len(key.size()) + key.size();
    if (need > block) {
      size_t spans = (need + block - 1) / block;
      blocks_.push_back({std::make_unique<char[]>(need), need});
      for (size_t i = 1; i < spans; ++i) blocks_.push_back({});
      fill_ = block;  // the next key starts a new block
      return write_key(uint32_t((blocks_.size() - spans) * block), key);
    }
    if (blocks_.empty() || fill_ + need > block) {
      blocks_.push_back({std::make_unique<char[]>(block), block});
      fill_ = 0;
    }
    uint32_t pos = uint32_t((blocks_.size() - 1) * block + fill_);
    fill_ += need;
    return write_key(pos, key);
  }
  uint32_t write_key(uint32_t pos, std::string_view key) {
    char* p = const_cast<char*>(arena_at(pos));
    size_t n = key.size();
    for (; n >= 0x80; n >>= 7) *p++ = char(0x80 | (n & 0x7f));
    *p++ = char(n);
    if (!key.empty()) std::memcpy(p, key.data(), key.size());
    return pos;
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
    // Room for slot numbers up to twice those used so far (and the one about to be taken); the
    // tag gets the rest of the 32 bits. slot + 1 stays below all ones (erased) even at 32 bits.
    unsigned bits = 1;
    while (bits < 32 && (uint64_t(1) << bits) < 2 * (uint64_t(next_) + 3)) ++bits;
    slot_bits_ = bits;
    std::vector<uint32_t> fresh(n, empty);
    size_t mask = n - 1;
    for (uint32_t s = 0; s < next_; ++s) {
      if (at(s).key_at == dead) continue;
      size_t h = hash(key_of(s));
      for (size_t i = h & mask;; i = (i + 1) & mask)
        if (fresh[i] == empty) {
          fresh[i] = position(s, h);
          break;
        }
    }
    index_ = std::move(fresh);
    used_ = size_;
  }
  void compact_arena() {
    std::vector<arena_block> old = std::move(blocks_);
    blocks_.clear();
    fill_ = 0;
    for (uint32_t s = 0; s < next_; ++s) {
      entry& e = at(s);
      if (e.key_at == dead) continue;
      const unsigned char* p = reinterpret_cast<const unsigned char*>(
          old[e.key_at / block].data.get() + e.key_at % block);
      size_t n = 0;
      for (int shift = 0;; shift += 7) {
        n |= size_t(*p & 0x7f) << shift;
        if (!(*p++ & 0x80)) break;
      }
      e.key_at = store_key(std::string_view(reinterpret_cast<const char*>(p), n));
    }
    blocks_.shrink_to_fit();
    garbage_ = 0;
  }

  std::vector<std::unique_ptr<entry[]>> chunks_;
  uint32_t next_ = 0;            // slots ever used
  std::vector<uint32_t> free_;   // erased slots, reused first
  std::vector<uint32_t> index_;  // open addressing: tag | slot + 1, 0 empty, ~0 erased
  unsigned slot_bits_ = 32;      // of an index position, for slot + 1 (the rest: the tag)
  std::vector<arena_block> blocks_;
  size_t fill_ = 0;  // bytes used in the last block
  size_t size_ = 0;
  size_t used_ = 0;  // index positions not empty (live or erased)
  size_t garbage_ = 0;
};

}  // namespace warren::web
