// The statistics kept beside each object: the sample ring's arithmetic (32-bit differences,
// gaps, replacement within an interval), rates, sample selection, and what it costs per queue.
#include <gtest/gtest.h>

#include <vector>

#include "broker/stats.hpp"

namespace warren::broker {
namespace {

using h2 = sample_history<2, 4>;
constexpr int64_t iv = h2::interval_ms;

TEST(SampleHistory, AllocatesNothingUntilAValueIsNonZero) {
  h2 h;
  h.record(10 * iv, {0, 0});
  EXPECT_EQ(h.size(), 0u);
  EXPECT_EQ(h.heap_bytes(), 0u);
  h.record(11 * iv, {0, 3});
  EXPECT_EQ(h.size(), 1u);
  EXPECT_EQ(h.heap_bytes(), 2 * 4 * sizeof(uint32_t));
}

TEST(SampleHistory, RatesAndOlderValuesFromDifferences) {
  h2 h;
  h.record(10 * iv, {100, 7});
  EXPECT_EQ(h.rate(0), 0.0);           // one sample: no rate yet
  h.record(11 * iv + 1234, {600, 7});  // aligned down to the interval
  EXPECT_EQ(h.newest_time(), 11 * iv);
  EXPECT_DOUBLE_EQ(h.rate(0), 500.0 * 1000 / double(iv));
  EXPECT_EQ(h.value(0, 1), 100u);
  EXPECT_EQ(h.value(1, 1), 7u);
}

TEST(SampleHistory, ASecondSampleInOneIntervalReplacesTheFirst) {
  h2 h;
  h.record(10 * iv, {1, 1});
  h.record(11 * iv, {2, 2});
  h.record(11 * iv + 10, {5, 5});
  EXPECT_EQ(h.size(), 2u);
  EXPECT_EQ(h.value(0, 0), 5u);
  EXPECT_EQ(h.value(0, 1), 1u);
}

TEST(SampleHistory, MissedIntervalsRepeatTheLastValuesAndTheRingWraps) {
  h2 h;
  h.record(10 * iv, {1, 0});
  h.record(13 * iv, {4, 0});  // 11 and 12 missed
  ASSERT_EQ(h.size(), 4u);
  EXPECT_EQ(h.value(0, 0), 4u);
  EXPECT_EQ(h.value(0, 1), 1u);
  EXPECT_EQ(h.value(0, 2), 1u);
  EXPECT_EQ(h.value(0, 3), 1u);
  h.record(14 * iv, {9, 0});  // capacity 4: the oldest goes
  EXPECT_EQ(h.size(), 4u);
  EXPECT_EQ(h.value(0, 3), 1u);
  EXPECT_EQ(h.value(0, 0), 9u);
}

TEST(SampleHistory, ValuesBeyond32BitsStayExact) {
  h2 h;
  const uint64_t big = (uint64_t(1) << 40) + 17;
  h.record(10 * iv, {big, 0});
  h.record(11 * iv, {big + 1'000'000'000, 0});
  EXPECT_EQ(h.value(0, 1), big);
  EXPECT_EQ(h.value(0, 0), big + 1'000'000'000);
}

TEST(SampleHistory, SamplesWithinAnAgeAndAnIncrementNewestFirst) {
  h2 h;
  for (int64_t i = 0; i < 4; ++i) h.record((10 + i) * iv, {uint64_t(i + 1), 0});
  std::vector<std::pair<int64_t, uint64_t>> got;
  h.for_each_sample(0, 2 * iv, 2 * iv, [&](int64_t t, uint64_t v) { got.emplace_back(t, v); });
  EXPECT_EQ(got, (std::vector<std::pair<int64_t, uint64_t>>{{13 * iv, 4}, {11 * iv, 2}}));
}

TEST(SampleHistory, ACopyIsDeep) {
  h2 a;
  a.record(10 * iv, {1, 2});
  h2 b;
  b.copy_from(a);
  a.record(11 * iv, {3, 4});
  EXPECT_EQ(b.size(), 1u);
  EXPECT_EQ(b.value(1, 0), 2u);
}

// The budget: a busy queue's statistics (counters, history and its ring) within 1 KB;
// an idle queue's without the ring.
TEST(QueueStats, ABusyQueueCostsAtMostAKilobyte) {
  queue_history h;
  h.record(10 * queue_history::interval_ms, {1, 0, 1, 0, 0, 0});
  size_t busy = sizeof(queue_counters) + sizeof(queue_history) + h.heap_bytes();
  EXPECT_LE(busy, 1024u) << busy;
  EXPECT_LE(sizeof(queue_counters) + sizeof(queue_history), 160u);  // 136 B on x86-64
}

}  // namespace
}  // namespace warren::broker
