// user_table: a map of user ids with stable value addresses, erasure, slot reuse, a sweep in
// slices, and many entries (compared with std::unordered_map as it goes).
#include "web/user_table.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "web/inbox_entry.hpp"

using warren::web::user_table;

namespace {
// prefix + n, appended (GCC 12 warns falsely about operator+ on a literal and a temporary).
std::string key(const char* prefix, uint64_t n) {
  std::string k = prefix;
  k += std::to_string(n);
  return k;
}
}  // namespace

TEST(UserTable, FindEmplaceEraseWithStableAddresses) {
  user_table<int> t;
  EXPECT_EQ(t.find("ann"), nullptr);
  auto [a, fresh] = t.try_emplace("ann");
  ASSERT_TRUE(fresh);
  *a = 7;
  for (int i = 0; i < 20000; ++i) *t.try_emplace(key("user-", uint64_t(i))).first = i;
  EXPECT_EQ(t.find("ann"), a);  // the table grew many times: the value did not move
  EXPECT_EQ(*a, 7);
  EXPECT_FALSE(t.try_emplace("ann").second);
  EXPECT_EQ(t.size(), 20001u);
  EXPECT_TRUE(t.erase("ann"));
  EXPECT_FALSE(t.erase("ann"));
  EXPECT_EQ(t.find("ann"), nullptr);
  auto [b, again] = t.try_emplace("ann");
  EXPECT_TRUE(again);
  EXPECT_EQ(*b, 0);  // a reused slot starts as a new value
  EXPECT_EQ(*t.find("user-19999"), 19999);
}

TEST(UserTable, AgreesWithUnorderedMapUnderChurnAndSweepsEverything) {
  user_table<uint64_t> t;
  std::unordered_map<std::string, uint64_t> m;
  std::mt19937 rng(5);
  for (int i = 0; i < 200000; ++i) {
    std::string k = key("u", rng() % 30000);
    if (rng() % 3 == 0) {
      EXPECT_EQ(t.erase(k), m.erase(k) == 1);
    } else {
      *t.try_emplace(k).first += 1;
      m[k] += 1;
    }
  }
  ASSERT_EQ(t.size(), m.size());
  for (const auto& [k, v] : m) ASSERT_EQ(*t.find(k), v) << k;
  size_t seen = 0, cursor = 0;
  for (int i = 0; i < 100; ++i)
    t.visit_some(cursor, 1000, [&](std::string_view, uint64_t&) { ++seen; });
  EXPECT_GE(seen, m.size());  // a full round (and a bit) visits every entry
  size_t each = 0;
  t.for_each([&](std::string_view k, uint64_t& v) { each += m.at(std::string(k)) == v; });
  EXPECT_EQ(each, m.size());
}

TEST(UserTable, LongKeysAndKeysAtBlockEdgesSurviveCompaction) {
  user_table<uint32_t> t;
  // Ids of every length around the arena's 64 KiB block and the length prefix's 127/128 edge.
  std::vector<std::string> keys;
  for (size_t n : {0, 1, 127, 128, 129, 16383, 16384, 65533, 65534, 65535, 65536, 200000})
    keys.push_back(std::string(n, char('a' + n % 26)));
  for (int i = 0; i < 30000; ++i) keys.push_back(key("k", uint64_t(i)));
  for (size_t i = 0; i < keys.size(); ++i) *t.try_emplace(keys[i]).first = uint32_t(i);
  for (size_t i = 0; i < keys.size(); ++i) ASSERT_EQ(*t.find(keys[i]), i) << keys[i].size();
  // Erase most (the arena compacts), then check what stayed and add again.
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i % 5 != 0) {
      ASSERT_TRUE(t.erase(keys[i]));
    }
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i % 5 == 0) {
      ASSERT_EQ(*t.find(keys[i]), i) << keys[i].size();
    } else {
      ASSERT_EQ(t.find(keys[i]), nullptr);
    }
  }
  for (size_t i = 0; i < keys.size(); ++i) *t.try_emplace(keys[i]).first = uint32_t(i) + 1;
  for (size_t i = 0; i < keys.size(); ++i) ASSERT_EQ(*t.find(keys[i]), i + 1);
  EXPECT_EQ(t.size(), keys.size());
}

// The gateway's index of users away (issue 13: at most 64 bytes of RSS a user), with the
// benchmark's ids.
TEST(UserTable, AMillionShortIdsCostTheirEntryTheirBytesAndEightOfIndex) {
  using value = warren::web::inbox_entry;
  user_table<value> t;
  constexpr size_t n = 1'000'000;
  size_t id_bytes = 0;
  for (size_t i = 0; i < n; ++i) {
    std::string k = key("user-", i);
    id_bytes += k.size() + 1;  // and its length
    t.try_emplace(k);
  }
  auto m = t.memory();
  EXPECT_EQ(user_table<value>::entry_size(), 36u);
  EXPECT_LE(m.entries, (n + 4096) * 36);
  EXPECT_EQ(m.index, (2u << 20) * 4);  // a power of two at most three quarters full: 2^21 here
  EXPECT_LE(m.keys, id_bytes + id_bytes / 100 + 65536);
  EXPECT_LE(double(m.total()) / n, 36 + 12.5 + 8.5 + 0.5);
  EXPECT_LE(double(m.total()) / n, 64);
}
