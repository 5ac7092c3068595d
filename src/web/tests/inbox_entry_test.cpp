// inbox_entry: the 32-byte packed inbox of a user (sequence numbers as distances from the next,
// the read position saturating, expiry in seconds), checked at its boundaries against the plain
// 64-bit arithmetic it replaces.
#include "web/inbox_entry.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>

using warren::web::inbox_entry;

TEST(InboxEntry, IsThirtyTwoBytes) {
  EXPECT_EQ(sizeof(inbox_entry), 32u);
  EXPECT_EQ(alignof(inbox_entry), 4u);
}

TEST(InboxEntry, NumbersFromItsStartAndKeepsAtMostTheLimit) {
  inbox_entry e;
  const uint64_t start = 1'765'000'000'000'000ull;  // a time in microseconds, as fresh_seq gives
  e.start(start);
  EXPECT_EQ(e.next_seq(), start);
  EXPECT_EQ(e.held(), 0u);
  EXPECT_EQ(e.first_seq(), start);
  EXPECT_EQ(e.read_seq(), 0u);
  for (uint64_t i = 0; i < 5; ++i) EXPECT_EQ(e.take_seq(3), start + i);
  EXPECT_EQ(e.last_seq(), start + 4);
  EXPECT_EQ(e.held(), 3u);  // the count limit moved the first
  EXPECT_EQ(e.first_seq(), start + 2);
}

TEST(InboxEntry, CarriesIntoTheHighHalfAndWrapsLikeA64BitCounter) {
  inbox_entry e;
  e.start(0xffff'fffeull);
  EXPECT_EQ(e.take_seq(10), 0xffff'fffeull);
  EXPECT_EQ(e.take_seq(10), 0xffff'ffffull);
  EXPECT_EQ(e.next_seq(), 0x1'0000'0000ull);
  EXPECT_EQ(e.first_seq(), 0xffff'fffeull);
  e.start(UINT64_MAX - 1);
  EXPECT_EQ(e.take_seq(10), UINT64_MAX - 1);
  EXPECT_EQ(e.take_seq(10), UINT64_MAX);
  EXPECT_EQ(e.next_seq(), 0u);  // as `next_seq++` on a uint64_t did
  EXPECT_EQ(e.first_seq(), UINT64_MAX - 1);
  EXPECT_EQ(e.held(), 2u);
}

TEST(InboxEntry, TheLimitIsCappedAtThirtyOneBits) {
  inbox_entry e;
  e.start(10);
  ASSERT_TRUE(e.recovered(10 + (1ull << 40), UINT64_MAX));  // a gap larger than any count
  EXPECT_EQ(e.held(), inbox_entry::max_held);
  EXPECT_EQ(e.next_seq(), 11 + (1ull << 40));
  EXPECT_FALSE(e.live());  // the held count does not spill into the flag beside it
  e.set_live(true);
  e.take_seq(UINT64_MAX);
  EXPECT_EQ(e.held(), inbox_entry::max_held);
  EXPECT_TRUE(e.live());
}

TEST(InboxEntry, RecoveryIgnoresRecordsNotAfterWhatIsKnown) {
  inbox_entry e;
  e.start(100);
  ASSERT_TRUE(e.recovered(100, 1000));
  ASSERT_TRUE(e.recovered(101, 1000));
  EXPECT_FALSE(e.recovered(101, 1000));
  EXPECT_FALSE(e.recovered(50, 1000));
  EXPECT_EQ(e.next_seq(), 102u);
  EXPECT_EQ(e.held(), 2u);
  ASSERT_TRUE(e.recovered(110, 5));  // a gap counts as held, up to the limit
  EXPECT_EQ(e.first_seq(), 106u);
}

TEST(InboxEntry, ReadPositionIsExactWithinFourBillionAndBeforeEverythingHeldBeyond) {
  inbox_entry e;
  const uint64_t start = 1'765'000'000'000'000ull;
  e.start(start);
  for (int i = 0; i < 10; ++i) e.take_seq(4);
  e.set_read(start + 7);
  EXPECT_EQ(e.read_seq(), start + 7);
  e.take_seq(4);
  EXPECT_EQ(e.read_seq(), start + 7);  // stays put as the inbox goes on
  e.set_read(0);
  EXPECT_EQ(e.read_seq(), 0u);  // none
  e.take_seq(4);
  EXPECT_EQ(e.read_seq(), 0u);
  // A position further back than 2^32 - 1: before everything held, kept as first - 1.
  e.set_read(5);
  EXPECT_EQ(e.read_seq(), e.first_seq() - 1);
  // At the edge of the 32 bits, then moved past it by the inbox going on.
  e.set_read(e.next_seq() - UINT32_MAX);
  EXPECT_EQ(e.read_seq(), e.next_seq() - UINT32_MAX);
  e.take_seq(4);
  EXPECT_EQ(e.read_seq(), e.first_seq() - 1);  // before everything held: the unread count holds
  // With nothing held, the position kept is the last seq (nothing unread).
  e.drop_all();
  e.set_read(7);
  EXPECT_EQ(e.read_seq(), e.last_seq());
}

TEST(InboxEntry, UnreadCountMatchesPlainArithmeticUnderRandomUse) {
  std::mt19937_64 rng(13);
  for (int round = 0; round < 200; ++round) {
    inbox_entry e;
    uint64_t next = rng() % 2 ? rng() : (rng() % 1000) + 1;
    uint64_t first = next, read = 0;
    const uint64_t limit = 1 + rng() % 50;
    e.start(next);
    for (int step = 0; step < 300; ++step) {
      if (rng() % 4 == 0 && next != first) {
        uint64_t last = next - 1;
        read = rng() % 3 == 0 ? rng() % (last + 1) : last - rng() % (next - first);
        e.set_read(read);
      } else {
        e.take_seq(limit);
        ++next;
        if (next - first > limit) first = next - limit;
      }
      ASSERT_EQ(e.next_seq(), next);
      ASSERT_EQ(e.first_seq(), first);
      uint64_t read_to = std::max(read, first - 1);
      uint64_t got_to = std::max(e.read_seq(), e.first_seq() - 1);
      ASSERT_EQ(got_to, read_to) << "round " << round << " step " << step;
      if (read == 0) {
        ASSERT_EQ(e.read_seq(), 0u);
      } else if (next - read <= UINT32_MAX) {
        ASSERT_EQ(e.read_seq(), read);
      }
    }
  }
}

TEST(InboxEntry, ExpiryRoundsUpToTheSecondAndOnlyGrows) {
  inbox_entry e;
  EXPECT_EQ(e.expires_max(), 0);
  e.hold_until(1'765'000'000'001);  // 1 ms into a second: the whole second
  EXPECT_EQ(e.expires_max(), 1'765'000'001'000);
  e.hold_until(1'765'000'000'000);  // earlier: no change
  EXPECT_EQ(e.expires_max(), 1'765'000'001'000);
  e.hold_until(1'765'000'001'000);  // exactly on a second
  EXPECT_EQ(e.expires_max(), 1'765'000'001'000);
  e.hold_until(1'765'000'001'999);
  EXPECT_EQ(e.expires_max(), 1'765'000'002'000);
  e.hold_until(INT64_MAX / 2);  // past 2106: the largest the seconds hold
  EXPECT_EQ(e.expires_max(), int64_t(UINT32_MAX) * 1000);
  e.drop_all();
  EXPECT_EQ(e.expires_max(), 0);
  e.hold_until(-5);
  EXPECT_EQ(e.expires_max(), 0);
}

TEST(InboxEntry, KeepsTheNewestRecordsLocationWhole) {
  inbox_entry e;
  EXPECT_FALSE(e.newest());
  e.set_newest({0xffff'fff0u, 0xffff'ffffu, 0x7fff'ffffu});
  auto at = e.newest();
  EXPECT_EQ(at.segment, 0xffff'fff0u);
  EXPECT_EQ(at.offset, 0xffff'ffffu);
  EXPECT_EQ(at.length, 0x7fff'ffffu);
  e.drop_all();
  EXPECT_FALSE(e.newest());
}
