// consistent_hash_ring: weight parsing as RabbitMQ validates binding keys, proportional
// distribution, stability, and how many keys move when the ring changes.
#include "broker/consistent_hash_ring.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

namespace warren::broker {
namespace {

TEST(parse_weight, follows_erlang_list_to_integer_and_refuses_below_one) {
  EXPECT_EQ(parse_weight("1"), 1u);
  EXPECT_EQ(parse_weight("10"), 10u);
  EXPECT_EQ(parse_weight("007"), 7u);
  EXPECT_EQ(parse_weight("+5"), 5u);
  EXPECT_EQ(parse_weight("4294967295"), 4294967295u);
  for (const char* bad : {"0", "00", "-0", "-1", "+0", "", "+", "-", " 5", "5 ", "5.0", "1e3",
                          "0x10", "abc", "1_000", "4294967296", "99999999999999999999999"})
    EXPECT_EQ(parse_weight(bad), std::nullopt) << "'" << bad << "'";
}

// The hash is part of the routing contract: pin it so a change cannot slip in unnoticed.
TEST(ring_hash, is_fnv1a_then_splitmix64) {
  EXPECT_EQ(ring_hash(""), 0xf52a15e9a9b5e89bull);
  EXPECT_EQ(ring_hash("a"), 0x02c0bdbf481420f8ull);
  EXPECT_EQ(ring_hash("hello"), 0x16fe05a1c75bcd0full);
  EXPECT_EQ(ring_hash("order-42"), 0x586d07f28908894full);
}

TEST(jump_consistent_hash, matches_the_published_algorithm) {
  EXPECT_EQ(jump_consistent_hash(0, 1), 0u);
  EXPECT_EQ(jump_consistent_hash(1, 10), 6u);
  EXPECT_EQ(jump_consistent_hash(0xdeadbeef, 100), 87u);
  EXPECT_EQ(jump_consistent_hash(0x16fe05a1c75bcd0full, 1000), 66u);
  EXPECT_EQ(jump_consistent_hash(~uint64_t{0}, 7), 2u);
  for (uint64_t k = 0; k < 1000; ++k) EXPECT_LT(jump_consistent_hash(k * 7919, 13), 13u);
}

std::vector<std::string> random_keys(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::string> keys;
  keys.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    keys.emplace_back("key-");
    keys.back() += std::to_string(rng());
  }
  return keys;
}

std::vector<dest_id> route_all(const consistent_hash_ring& ring,
                               const std::vector<std::string>& keys) {
  std::vector<dest_id> out;
  out.reserve(keys.size());
  for (const auto& k : keys) out.push_back(*ring.pick(k));
  return out;
}

TEST(consistent_hash_ring, empty_ring_picks_nothing) {
  consistent_hash_ring ring;
  EXPECT_EQ(ring.pick("x"), std::nullopt);
  EXPECT_TRUE(ring.empty());
  EXPECT_EQ(ring.total_weight(), 0u);
}

TEST(consistent_hash_ring, add_and_remove_report_presence) {
  consistent_hash_ring ring;
  EXPECT_TRUE(ring.add(1, 3));
  EXPECT_FALSE(ring.add(1, 5));  // already bound: RabbitMQ ignores the second binding
  EXPECT_FALSE(ring.add(2, 0));
  EXPECT_EQ(ring.size(), 1u);
  EXPECT_EQ(ring.total_weight(), 3u);
  for (const auto& k : random_keys(100, 1)) EXPECT_EQ(ring.pick(k), dest_id{1});
  EXPECT_FALSE(ring.remove(2));
  EXPECT_TRUE(ring.remove(1));
  EXPECT_FALSE(ring.remove(1));
  EXPECT_TRUE(ring.empty());
  EXPECT_EQ(ring.pick("x"), std::nullopt);
}

TEST(consistent_hash_ring, distribution_is_proportional_to_weight) {
  consistent_hash_ring ring;
  const std::map<dest_id, uint32_t> weights = {{10, 1}, {20, 2}, {30, 3}, {40, 4}};
  for (const auto& [d, w] : weights) ring.add(d, w);
  const auto keys = random_keys(100000, 42);
  std::map<dest_id, size_t> count;
  for (dest_id d : route_all(ring, keys)) ++count[d];
  for (const auto& [d, w] : weights) {
    double expected = keys.size() * (w / 10.0);
    EXPECT_NEAR(count[d] / expected, 1.0, 0.03) << "dest " << d << " got " << count[d];
  }
}

TEST(consistent_hash_ring, equal_weights_spread_evenly_over_many_destinations) {
  consistent_hash_ring ring;
  for (dest_id d = 0; d < 20; ++d) ring.add(d, 5);
  const auto keys = random_keys(100000, 7);
  std::map<dest_id, size_t> count;
  for (dest_id d : route_all(ring, keys)) ++count[d];
  ASSERT_EQ(count.size(), 20u);
  for (const auto& [d, n] : count) EXPECT_NEAR(n / 5000.0, 1.0, 0.05) << "dest " << d;
}

TEST(consistent_hash_ring, same_key_same_destination) {
  consistent_hash_ring a, b;
  for (dest_id d : {5, 3, 9}) {
    a.add(d, static_cast<uint32_t>(d));
    b.add(d, static_cast<uint32_t>(d));
  }
  const auto keys = random_keys(20000, 3);
  auto first = route_all(a, keys);
  EXPECT_EQ(route_all(a, keys), first);
  EXPECT_EQ(route_all(b, keys), first);  // an identically built ring routes identically
}

TEST(consistent_hash_ring, adding_moves_only_the_new_share_to_the_new_destination) {
  consistent_hash_ring ring;
  for (dest_id d = 1; d <= 4; ++d) ring.add(d, static_cast<uint32_t>(d));  // total 10
  const auto keys = random_keys(100000, 11);
  auto before = route_all(ring, keys);
  ring.add(99, 2);  // total 12: the new destination should take 2/12 of the keys
  auto after = route_all(ring, keys);
  size_t moved = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (before[i] == after[i]) continue;
    ++moved;
    EXPECT_EQ(after[i], dest_id{99}) << keys[i] << " moved between old destinations";
  }
  EXPECT_NEAR(moved / (keys.size() * 2.0 / 12.0), 1.0, 0.03) << moved << " moved";

  ring.remove(99);  // removing the newest restores the previous mapping exactly
  EXPECT_EQ(route_all(ring, keys), before);
}

TEST(consistent_hash_ring, removing_an_older_destination_keeps_proportions) {
  consistent_hash_ring ring;
  for (dest_id d = 1; d <= 4; ++d) ring.add(d, 2);
  ring.remove(2);
  EXPECT_EQ(ring.size(), 3u);
  EXPECT_EQ(ring.total_weight(), 6u);
  const auto keys = random_keys(60000, 5);
  std::map<dest_id, size_t> count;
  for (dest_id d : route_all(ring, keys)) ++count[d];
  EXPECT_EQ(count.count(2), 0u);
  for (dest_id d : {1, 3, 4}) EXPECT_NEAR(count[d] / 20000.0, 1.0, 0.05) << "dest " << d;
  // Buckets are laid out in the order of the remaining bindings: as if 1, 3, 4 were added.
  consistent_hash_ring fresh;
  for (dest_id d : {1, 3, 4}) fresh.add(d, 2);
  EXPECT_EQ(route_all(ring, keys), route_all(fresh, keys));
}

}  // namespace
}  // namespace warren::broker
