// The shard map's rule (web/shard_map.hpp): the hash is FNV-1a as published, the rebalance is
// balanced, moves only what it must, and changes nothing when applied to its own result.
#include "web/shard_map.hpp"

#include <gtest/gtest.h>

#include <map>

namespace warren::web {
namespace {

std::map<std::string, size_t> counts(const slot_list& s) {
  std::map<std::string, size_t> out;
  for (const auto& n : s) ++out[n];
  return out;
}

TEST(ShardMap, Fnv1aKnownValues) {
  // The reference values of 32-bit FNV-1a.
  EXPECT_EQ(fnv1a(""), 0x811c9dc5u);
  EXPECT_EQ(fnv1a("a"), 0xe40c292cu);
  EXPECT_EQ(fnv1a("foobar"), 0xbf9cf968u);
  EXPECT_EQ(slot_of("foobar"), 0x68u);
}

TEST(ShardMap, FromNothingBalancedOverRunningNodes) {
  auto s = rebalance({}, {"b", "a", "c"});
  ASSERT_EQ(s.size(), shard_slots);
  auto c = counts(s);
  EXPECT_EQ(c.size(), 3u);
  for (const auto& [n, k] : c) EXPECT_TRUE(k == 85 || k == 86) << n << " " << k;
  EXPECT_EQ(rebalance(s, {"a", "b", "c"}), s);  // a fixed point
}

TEST(ShardMap, JoinAndLeaveMoveOnlyWhatTheyMust) {
  auto two = rebalance({}, {"a", "b"});
  EXPECT_EQ(counts(two), (std::map<std::string, size_t>{{"a", 128}, {"b", 128}}));
  auto three = rebalance(two, {"a", "b", "c"});
  size_t to_c = counts(three)["c"];
  EXPECT_EQ(slots_moved(two, three), to_c);  // every slot that moved went to the newcomer
  EXPECT_TRUE(to_c == 85 || to_c == 86);
  auto back = rebalance(three, {"a", "b"});
  for (size_t i = 0; i < shard_slots; ++i)
    if (three[i] != "c") {
      EXPECT_EQ(back[i], three[i]) << i;  // only c's slots moved
    }
  EXPECT_EQ(counts(back), (std::map<std::string, size_t>{{"a", 128}, {"b", 128}}));
  EXPECT_EQ(rebalance(back, {"a", "b"}), back);
}

TEST(ShardMap, NoRunningNodeLeavesNoOwner) {
  auto s = rebalance(rebalance({}, {"a"}), {});
  EXPECT_EQ(counts(s), (std::map<std::string, size_t>{{"", shard_slots}}));
}

TEST(ShardMap, JsonRoundTripAndMalformed) {
  auto s = rebalance({}, {"a", "b"});
  EXPECT_EQ(decode_slots(encode_slots(s)), s);
  EXPECT_FALSE(decode_slots("{}"));
  EXPECT_FALSE(decode_slots("{\"slots\":[\"a\"]}"));  // not 256
  EXPECT_FALSE(decode_slots("not json"));
}

TEST(ShardMap, TableOwner) {
  shard_table t("a");
  EXPECT_EQ(t.owner("x"), "");  // no map yet: nobody (the node acts alone)
  t.set(rebalance({}, {"a", "b"}), 3);
  auto s = t.get();
  EXPECT_EQ(t.owner("foobar"), (*s)[slot_of("foobar")]);
  EXPECT_EQ(t.version(), 3);
}

}  // namespace
}  // namespace warren::web
