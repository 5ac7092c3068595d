// What the gateway keeps in memory for one user's inbox, connected or not: 32 bytes, so that a
// million users away cost what their index entries cost (docs/storage.md, "Inbox records"). The
// events themselves are in the store; a connected user's connections, rooms and cached events are
// in the hub's map of live users, which this entry only flags. Owned by the hub's user_table, on
// the hub's worker.
#pragma once

#include <algorithm>
#include <cstdint>

#include "store/message_store.hpp"

namespace warren::web {

// Packed: the next sequence number in full (two 32-bit halves, so that the entry needs only
// 4-byte alignment and sits in 36 bytes of table slot), the first held and the read position as
// distances back from it, the newest record's location and the latest expiry in seconds.
//
//   seq      where                        range
//   next     next_lo_, next_hi_           any 64-bit value (a new inbox starts at the time in us)
//   first    next - held_                 held_ <= max_held (--inbox-size is at most that)
//   read     0: none; else next - read_   read_ 1 .. 2^32-1; a position further back than that is
//                                         before everything held and is kept as first - 1
class inbox_entry {
 public:
  static constexpr uint32_t max_held = (1u << 31) - 1;

  uint64_t next_seq() const { return uint64_t(next_hi_) << 32 | next_lo_; }
  uint64_t last_seq() const { return next_seq() - 1; }
  uint64_t first_seq() const { return next_seq() - held_; }
  uint64_t held() const { return held_; }  // seqs from the first held to the last
  uint64_t read_seq() const { return read_ == 0 ? 0 : next_seq() - read_; }
  // The newest event's record (none: nothing stored).
  store::inbox_location newest() const { return {segment_, offset_, length_}; }
  // Every held event has expired by then (ms since the epoch, a whole second; 0: none held).
  int64_t expires_max() const { return int64_t(expires_s_) * 1000; }
  // The hub's map of live users has this user (connections, rooms, cached events).
  bool live() const { return live_; }

  // A new inbox numbering from `seq` (nothing held, no read position).
  void start(uint64_t seq) {
    set_next(seq);
    held_ = 0;
    read_ = 0;
  }
  // Gives out the next seq, keeping at most `limit` held (the oldest go).
  uint64_t take_seq(uint64_t limit) { return advance_to(next_seq() + 1, limit) - 1; }
  // Recovery: the record of `seq` was read; the inbox goes on after it. Its gap to what was known
  // before, if any, counts as held (as when those records were written). Returns false (and
  // changes nothing) for a seq not after what is known.
  bool recovered(uint64_t seq, uint64_t limit) {
    if (seq < next_seq()) return false;
    advance_to(seq + 1, limit);
    return true;
  }
  // `seq` at most last_seq(); 0 clears it.
  void set_read(uint64_t seq) {
    uint64_t back = seq == 0 ? 0 : next_seq() - seq;
    read_ = back <= UINT32_MAX ? uint32_t(back) : uint32_t(held_) + 1;
  }
  // Nothing held any more (an erase while connected): the numbering goes on, the position goes.
  void drop_all() {
    held_ = 0;
    read_ = 0;
    expires_s_ = 0;
    set_newest({});
  }
  void set_newest(const store::inbox_location& at) {
    segment_ = at.segment;
    offset_ = at.offset;
    length_ = at.length;
  }
  // Rounded up to the second: the entry says "all expired" no earlier than the events do.
  void hold_until(int64_t ms) {
    int64_t s = (std::max<int64_t>(ms, 0) + 999) / 1000;
    expires_s_ = std::max(expires_s_, uint32_t(std::min<int64_t>(s, UINT32_MAX)));
  }
  void set_live(bool on) { live_ = on; }

 private:
  void set_next(uint64_t seq) {
    next_lo_ = uint32_t(seq);
    next_hi_ = uint32_t(seq >> 32);
  }
  // Moves next to `next` (> next_seq()); returns it.
  uint64_t advance_to(uint64_t next, uint64_t limit) {
    uint64_t step = next - next_seq();
    limit = std::min<uint64_t>(limit, max_held);
    held_ = uint32_t(std::min<uint64_t>(held_ + step, limit));
    if (read_ != 0) {
      uint64_t back = read_ + step;
      read_ = back <= UINT32_MAX ? uint32_t(back) : uint32_t(held_) + 1;
    }
    set_next(next);
    return next;
  }

  uint32_t next_lo_ = 0, next_hi_ = 0;
  uint32_t held_ : 31 = 0;
  uint32_t live_ : 1 = 0;
  uint32_t read_ = 0;
  uint32_t segment_ = 0, offset_ = 0, length_ = 0;
  uint32_t expires_s_ = 0;
};
static_assert(sizeof(inbox_entry) == 32);

}  // namespace warren::web
