// GET /api/warren/gateway's body: percentiles estimated from histogram buckets (inside a bucket,
// in the first, beyond the last, without observations) and the JSON's shape.
#include <gtest/gtest.h>

#include <array>

#include "mgmt/render.hpp"

namespace warren::mgmt {
namespace {

constexpr std::array<double, 3> bounds{1.0, 2.0, 4.0};

double quantile(double q, std::array<uint64_t, 3> cumulative, uint64_t count) {
  return histogram_quantile(q, bounds, cumulative, count);
}

TEST(HistogramQuantile, InterpolatesWithinTheBucketTheRankFallsIn) {
  // 10 observations <= 1, 10 in (1, 2], 20 in (2, 4].
  EXPECT_DOUBLE_EQ(quantile(0.5, {10, 20, 40}, 40), 2.0);    // rank 20: the top of (1, 2]
  EXPECT_DOUBLE_EQ(quantile(0.375, {10, 20, 40}, 40), 1.5);  // rank 15: half-way through (1, 2]
  EXPECT_DOUBLE_EQ(quantile(0.99, {10, 20, 40}, 40), 2.0 + 2.0 * 19.6 / 20.0);
}

TEST(HistogramQuantile, TheFirstBucketStartsAtZero) {
  EXPECT_DOUBLE_EQ(quantile(0.25, {10, 20, 40}, 40), 1.0);
  EXPECT_DOUBLE_EQ(quantile(0.125, {10, 20, 40}, 40), 0.5);
}

TEST(HistogramQuantile, EmptyBucketsAreSkipped) {
  // Nothing in (1, 2]: the median of {10 <= 1, 10 in (2, 4]} lies at the top of the first.
  EXPECT_DOUBLE_EQ(quantile(0.5, {10, 10, 20}, 20), 1.0);
  EXPECT_DOUBLE_EQ(quantile(0.75, {10, 10, 20}, 20), 3.0);
}

TEST(HistogramQuantile, BeyondTheLastBoundIsThatBound) {
  // 10 of 50 observations are above 4 (the +Inf bucket).
  EXPECT_DOUBLE_EQ(quantile(0.9, {10, 20, 40}, 50), 4.0);
  EXPECT_DOUBLE_EQ(quantile(0.5, {0, 0, 0}, 7), 4.0);
}

TEST(HistogramQuantile, NoObservationsIsZero) {
  EXPECT_EQ(quantile(0.5, {0, 0, 0}, 0), 0.0);
  EXPECT_EQ(quantile(0.99, {0, 0, 0}, 0), 0.0);
}

TEST(GatewayJson, NamesEveryFieldTheDashboardAndTheDocsUse) {
  web::gateway_stats s;
  s.websocket = 3;
  s.sse = 2;
  s.stream = 1;
  s.longpoll = 4;
  s.online_users = 5;
  s.inboxes = 6;
  s.held_events = 70;
  s.rooms = 8;
  s.events_delivered = 900;
  s.replays = 10;
  s.resets = 11;
  s.slow_readers_cut = 12;
  // 100 deliveries: 50 at <= 0.5 ms, 50 in (1, 2.5] ms.
  s.latency_buckets.fill(100);
  s.latency_buckets[0] = 50;
  s.latency_buckets[1] = 50;
  s.latency_count = 100;
  s.latency_sum_seconds = 0.1;
  json j = gateway_json(s, {{"rate", 1.5}});
  EXPECT_EQ(j["connections"], json({{"websocket", 3}, {"sse", 2}, {"stream", 1}, {"longpoll", 4}}));
  EXPECT_EQ(j["online_users"], 5);
  EXPECT_EQ(j["inboxes"], 6);
  EXPECT_EQ(j["held_events"], 70);
  EXPECT_EQ(j["rooms"], 8);
  EXPECT_EQ(j["events_delivered"], 900);
  EXPECT_EQ(j["events_delivered_details"], json({{"rate", 1.5}}));
  EXPECT_EQ(j["replays"], 10);
  EXPECT_EQ(j["resets"], 11);
  EXPECT_EQ(j["slow_readers_cut"], 12);
  const json& l = j["delivery_latency"];
  EXPECT_EQ(l["count"], 100);
  EXPECT_DOUBLE_EQ(l["sum_seconds"].get<double>(), 0.1);
  EXPECT_NEAR(l["p50_ms"].get<double>(), 0.5, 1e-9);  // the top of the first bucket
  EXPECT_NEAR(l["p99_ms"].get<double>(), 1.0 + 1.5 * 49.0 / 50.0, 1e-9);
}

}  // namespace
}  // namespace warren::mgmt
