// A worker's gateway counters: latency buckets (bounds inclusive, beyond the last) and the sum of
// several workers into gateway_stats with cumulative buckets.
#include "web/gateway_counters.hpp"

#include <gtest/gtest.h>

using warren::web::gateway_stats;
using warren::web::worker_counters;

TEST(WorkerCounters, LatencyGoesToTheFirstBucketWhoseBoundItDoesNotExceed) {
  worker_counters c;
  c.observe_latency(0.0002, 1);  // <= 0.5 ms
  c.observe_latency(0.0005, 2);  // exactly the first bound: still the first bucket
  c.observe_latency(0.003, 4);   // (2.5 ms, 5 ms]
  c.observe_latency(7.0, 1);     // beyond 2.5 s
  EXPECT_EQ(c.latency[0], 3u);
  EXPECT_EQ(c.latency[3], 4u);
  EXPECT_EQ(c.latency.back(), 1u);
  EXPECT_DOUBLE_EQ(c.latency_sum_seconds, 0.0002 + 2 * 0.0005 + 4 * 0.003 + 7.0);
}

TEST(WorkerCounters, WorkersAddUpWithCumulativeBuckets) {
  worker_counters a, b;
  a.websocket = 2;
  a.sse = 1;
  a.events_delivered = 10;
  a.slow_readers_cut = 1;
  a.observe_latency(0.0001, 5);
  a.observe_latency(0.2, 1);  // (0.1, 0.25]
  b.stream = 3;
  b.longpoll = 4;
  b.events_delivered = 7;
  b.observe_latency(0.0008, 2);  // (0.5 ms, 1 ms]
  b.observe_latency(10.0, 1);
  gateway_stats s;
  a.add_to(s);
  b.add_to(s);
  EXPECT_EQ(s.websocket, 2u);
  EXPECT_EQ(s.sse, 1u);
  EXPECT_EQ(s.stream, 3u);
  EXPECT_EQ(s.longpoll, 4u);
  EXPECT_EQ(s.events_delivered, 17u);
  EXPECT_EQ(s.slow_readers_cut, 1u);
  EXPECT_EQ(s.latency_buckets[0], 5u);
  EXPECT_EQ(s.latency_buckets[1], 7u);
  EXPECT_EQ(s.latency_buckets[7], 7u);      // <= 0.1 s
  EXPECT_EQ(s.latency_buckets[8], 8u);      // <= 0.25 s
  EXPECT_EQ(s.latency_buckets.back(), 8u);  // <= 2.5 s: the one at 10 s is only in the count
  EXPECT_EQ(s.latency_count, 9u);
  EXPECT_DOUBLE_EQ(s.latency_sum_seconds, 5 * 0.0001 + 0.2 + 2 * 0.0008 + 10.0);
}
