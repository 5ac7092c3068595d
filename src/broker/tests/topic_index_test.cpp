// topic_index against RabbitMQ's topic semantics: its own test scenario, a table of edge cases,
// a brute-force reference on random keys, churn, and a pathological '#' pattern.
#include "broker/topic_index.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace warren::broker {
namespace {

std::vector<dest_id> match(const topic_index& idx, std::string_view key) {
  std::vector<dest_id> out;
  idx.match(key, out);
  return out;
}

// (binding key, routing key, matches?), from RabbitMQ 3.10's trie_match and split_topic_key.
struct topic_case {
  const char* pattern;
  const char* key;
  bool matches;
};
const topic_case kCases[] = {
    {"a.b.c", "a.b.c", true},
    {"a.b.c", "a.b", false},
    {"a.b.c", "a.b.c.d", false},
    {"a.b.c", "a.b.c.", false},  // trailing empty word
    {"A", "a", false},           // case-sensitive
    {"a.*.c", "a.b.c", true},
    {"a.*.c", "a.c", false},
    {"a.*.c", "a.b.b.c", false},
    {"a.*", "a", false},
    {"a.*", "a.b", true},
    {"a.*", "a.b.c", false},
    {"*", "", false},  // the empty key has no words at all
    {"*", "oneword", true},
    {"*", "a.b", false},
    {"*.*", "a.b", true},
    {"*.*", "a", false},
    {"*.*.*", "a.b.c", true},
    {"*.b.c", "b.b.c", true},
    {"#", "", true},
    {"#", "a", true},
    {"#", "a.b.c", true},
    {"#.#", "", true},
    {"#.#", "a.b", true},
    {"#.#.#", "", true},
    {"#.b", "b", true},
    {"#.b", "a.b", true},
    {"#.b", "a.a.b", true},
    {"#.b", "b.c", false},
    {"a.#", "a", true},
    {"a.#", "a.b", true},
    {"a.#", "a.a.a.a.a", true},
    {"a.#", "b.a", false},
    {"a.#.#", "a.b", true},
    {"a.#.b", "a.b", true},
    {"a.#.b", "a.b.b", true},
    {"a.#.b", "a.x.y.b", true},
    {"a.#.b", "a.b.c", false},
    {"*.#", "", false},
    {"*.#", "a", true},
    {"*.#", "a.b.c", true},
    {"#.*", "", false},
    {"#.*", "a.b", true},
    {"#.*.#", "", false},
    {"#.*.#", "a", true},
    {"*.#.#", "a.b.c", true},
    {"#.b.#", "b", true},
    {"#.b.#", "a.b.c", true},
    {"#.b.#", "a.c", false},
    {"#.a.#", "b.a.c", true},
    {"", "", true},
    {"", "a", false},
    {"vodka.martini", "vodka.gin", false},
    // Empty words are ordinary words: "*" matches one, "#" absorbs them.
    {"a.*.b", "a..b", true},
    {"a..b", "a..b", true},
    {"a..b", "a.b", false},
    {"a.b", "a..b", false},
    {"*.*", ".", true},
    {"#", ".", true},
    {"", ".", false},
    {".", "", false},
    {".", ".", true},
    {"a.", "a.", true},
    {"a.", "a", false},
    {"a.*", "a.", true},
    {"a.#", "a.", true},
    {"*.a", ".a", true},
    {"#.", "", false},
    {"#.", "a.", true},
    // Only a whole word "*" or "#" is a wildcard in a binding key.
    {"a*", "ab", false},
    {"a*", "a*", true},
    {"a.b*", "a.bc", false},
    {"a#", "a", false},
    {"a#", "a#", true},
    {"#a", "xa", false},
    {"a.*b", "a.xb", false},
    // A routing key's "*" or "#" word is literal: it matches only wildcards or itself.
    {"*", "*", true},
    {"#", "#", true},
    {"a", "*", false},
    {"a.b", "a.*", false},
    {"a", "#", false},
    {"\xc3\xbc.*", "\xc3\xbc.x", true},
};

void PrintTo(const topic_case& c, std::ostream* os) {
  *os << "binding '" << c.pattern << "' key '" << c.key << "'";
}

class topic_case_test : public testing::TestWithParam<topic_case> {};

TEST_P(topic_case_test, matches_like_rabbitmq) {
  const auto& c = GetParam();
  topic_index idx;
  ASSERT_TRUE(idx.add(c.pattern, 7));
  std::vector<dest_id> expected;
  if (c.matches) expected.push_back(7);
  EXPECT_EQ(match(idx, c.key), expected) << "binding '" << c.pattern << "' key '" << c.key << "'";
  EXPECT_TRUE(idx.remove(c.pattern, 7));
  EXPECT_TRUE(idx.empty());
  EXPECT_EQ(idx.node_count(), 1u);
}
INSTANTIATE_TEST_SUITE_P(rabbitmq_semantics, topic_case_test, testing::ValuesIn(kCases));

TEST(topic_index, has_at_least_forty_cases) {
  EXPECT_GE(std::size(kCases), 40u);
}

// RabbitMQ's own scenario (unit_access_control_SUITE:topic_matching1), queues t1..t27 as ids.
TEST(topic_index, rabbitmq_topic_matching_scenario) {
  const std::vector<std::pair<std::string, dest_id>> bindings = {{"a.b.c", 1},
                                                                 {"a.*.c", 2},
                                                                 {"a.#.b", 3},
                                                                 {"a.b.b.c", 4},
                                                                 {"#", 5},
                                                                 {"#.#", 6},
                                                                 {"#.b", 7},
                                                                 {"*.*", 8},
                                                                 {"a.*", 9},
                                                                 {"*.b.c", 10},
                                                                 {"a.#", 11},
                                                                 {"a.#.#", 12},
                                                                 {"b.b.c", 13},
                                                                 {"a.b.b", 14},
                                                                 {"a.b", 15},
                                                                 {"b.c", 16},
                                                                 {"", 17},
                                                                 {"*.*.*", 18},
                                                                 {"vodka.martini", 19},
                                                                 {"a.b.c", 20},
                                                                 {"*.#", 21},
                                                                 {"#.*.#", 22},
                                                                 {"*.#.#", 23},
                                                                 {"#.#.#", 24},
                                                                 {"*", 25},
                                                                 {"#.b.#", 26},
                                                                 {"args-test", 27}};
  topic_index idx;
  for (const auto& [k, d] : bindings) ASSERT_TRUE(idx.add(k, d));
  // RabbitMQ also binds t27 a second time with other arguments; the pair is stored once.
  EXPECT_FALSE(idx.add("args-test", 27));
  EXPECT_EQ(idx.size(), 27u);

  using expect = std::vector<std::pair<const char*, std::vector<dest_id>>>;
  auto check = [&](const expect& table) {
    for (const auto& [key, ids] : table) EXPECT_EQ(match(idx, key), ids) << "key '" << key << "'";
  };
  check({{"a.b.c", {1, 2, 5, 6, 10, 11, 12, 18, 20, 21, 22, 23, 24, 26}},
         {"a.b", {3, 5, 6, 7, 8, 9, 11, 12, 15, 21, 22, 23, 24, 26}},
         {"a.b.b", {3, 5, 6, 7, 11, 12, 14, 18, 21, 22, 23, 24, 26}},
         {"", {5, 6, 17, 24}},
         {"b.c.c", {5, 6, 18, 21, 22, 23, 24, 26}},
         {"a.a.a.a.a", {5, 6, 11, 12, 21, 22, 23, 24}},
         {"vodka.gin", {5, 6, 8, 21, 22, 23, 24}},
         {"vodka.martini", {5, 6, 8, 19, 21, 22, 23, 24}},
         {"b.b.c", {5, 6, 10, 13, 18, 21, 22, 23, 24, 26}},
         {"nothing.here.at.all", {5, 6, 21, 22, 23, 24}},
         {"oneword", {5, 6, 21, 22, 23, 24, 25}},
         {"args-test", {5, 6, 21, 22, 23, 24, 25, 27}}});

  // RabbitMQ removes bindings 1, 5, 11, 19, 21 and the second t27 (which leaves the first).
  for (int i : {0, 4, 10, 18, 20}) EXPECT_TRUE(idx.remove(bindings[i].first, bindings[i].second));
  check({{"a.b.c", {2, 6, 10, 12, 18, 20, 22, 23, 24, 26}},
         {"a.b", {3, 6, 7, 8, 9, 12, 15, 22, 23, 24, 26}},
         {"a.b.b", {3, 6, 7, 12, 14, 18, 22, 23, 24, 26}},
         {"", {6, 17, 24}},
         {"b.c.c", {6, 18, 22, 23, 24, 26}},
         {"a.a.a.a.a", {6, 12, 22, 23, 24}},
         {"vodka.gin", {6, 8, 22, 23, 24}},
         {"vodka.martini", {6, 8, 22, 23, 24}},
         {"b.b.c", {6, 10, 13, 18, 22, 23, 24, 26}},
         {"nothing.here.at.all", {6, 22, 23, 24}},
         {"oneword", {6, 22, 23, 24, 25}},
         {"args-test", {6, 22, 23, 24, 25, 27}}});

  for (int i = 0; i < static_cast<int>(bindings.size()); ++i) {
    if (i == 0 || i == 4 || i == 10 || i == 18 || i == 20) continue;
    EXPECT_TRUE(idx.remove(bindings[i].first, bindings[i].second));
  }
  EXPECT_TRUE(idx.empty());
  EXPECT_EQ(idx.node_count(), 1u);
  check({{"a.b.c", {}}, {"b.b.c", {}}, {"", {}}});
}

TEST(topic_index, add_and_remove_report_presence) {
  topic_index idx;
  EXPECT_TRUE(idx.add("a.b", 1));
  EXPECT_FALSE(idx.add("a.b", 1));
  EXPECT_TRUE(idx.add("a.b", 2));
  EXPECT_TRUE(idx.add("a.*", 1));
  EXPECT_EQ(idx.size(), 3u);
  EXPECT_FALSE(idx.remove("a.b", 3));
  EXPECT_FALSE(idx.remove("a.c", 1));
  EXPECT_FALSE(idx.remove("a", 1));  // a prefix of a stored key holds no binding
  EXPECT_FALSE(idx.remove("a.#", 1));
  EXPECT_FALSE(idx.remove("a.b.c", 1));
  EXPECT_EQ(idx.size(), 3u);
  EXPECT_TRUE(idx.remove("a.b", 1));
  EXPECT_FALSE(idx.remove("a.b", 1));
  EXPECT_EQ(match(idx, "a.b"), (std::vector<dest_id>{1, 2}));  // 1 still via "a.*"
}

TEST(topic_index, each_destination_once_even_when_several_bindings_match) {
  topic_index idx;
  for (const char* k : {"a.b", "a.*", "#", "*.b", "a.#", "#.b", "#.#"}) idx.add(k, 42);
  idx.add("a.b", 7);
  idx.add("#", 3);
  EXPECT_EQ(match(idx, "a.b"), (std::vector<dest_id>{3, 7, 42}));
}

TEST(topic_index, appends_after_existing_contents) {
  topic_index idx;
  idx.add("x", 5);
  idx.add("#", 1);
  std::vector<dest_id> out{9, 5, 1};
  idx.match("x", out);
  EXPECT_EQ(out, (std::vector<dest_id>{9, 5, 1, 1, 5}));  // only the new tail is deduplicated
  idx.match("nothing", out);
  EXPECT_EQ(out, (std::vector<dest_id>{9, 5, 1, 1, 5, 1}));
}

TEST(topic_index, clear_and_move) {
  topic_index idx;
  idx.add("a.#", 1);
  topic_index moved = std::move(idx);
  EXPECT_EQ(match(moved, "a.b"), std::vector<dest_id>{1});
  moved.clear();
  EXPECT_TRUE(moved.empty());
  EXPECT_EQ(moved.node_count(), 1u);
  EXPECT_TRUE(match(moved, "a.b").empty());
}

// Independent reference: dynamic programming over the split words.
std::vector<std::string> split(std::string_view key) {
  std::vector<std::string> words;
  if (key.empty()) return words;
  size_t start = 0;
  for (;;) {
    size_t dot = key.find('.', start);
    words.emplace_back(key.substr(start, dot == std::string_view::npos ? key.npos : dot - start));
    if (dot == std::string_view::npos) return words;
    start = dot + 1;
  }
}

bool reference_match(std::string_view pattern, std::string_view key) {
  auto p = split(pattern), k = split(key);
  // ok[i][j]: pattern words [i..) match key words [j..)
  std::vector<std::vector<char>> ok(p.size() + 1, std::vector<char>(k.size() + 1, 0));
  ok[p.size()][k.size()] = 1;
  for (size_t i = p.size(); i-- > 0;) {
    for (size_t j = k.size() + 1; j-- > 0;) {
      if (p[i] == "#") {
        ok[i][j] = ok[i + 1][j] || (j < k.size() && ok[i][j + 1]);
      } else if (j < k.size() && (p[i] == "*" || p[i] == k[j])) {
        ok[i][j] = ok[i + 1][j + 1];
      }
    }
  }
  return ok[0][0];
}

std::string random_key(std::mt19937_64& rng, bool wildcards) {
  static const char* kWords[] = {"a", "b", "", "cc"};
  static const char* kWild[] = {"a", "b", "", "cc", "*", "#", "#", "*"};
  size_t n = rng() % 6;
  std::string key;
  for (size_t i = 0; i < n; ++i) {
    if (i) key += '.';
    key += wildcards ? kWild[rng() % 8] : kWords[rng() % 4];
  }
  return key;
}

TEST(topic_index, agrees_with_reference_under_random_churn) {
  std::mt19937_64 rng(12345);
  topic_index idx;
  std::set<std::pair<std::string, dest_id>> live;
  for (int round = 0; round < 2500; ++round) {
    std::string pattern = random_key(rng, true);
    dest_id d = rng() % 16;
    if (rng() % 3 != 0) {
      EXPECT_EQ(idx.add(pattern, d), live.emplace(pattern, d).second);
    } else {
      EXPECT_EQ(idx.remove(pattern, d), live.erase({pattern, d}) == 1);
    }
    ASSERT_EQ(idx.size(), live.size());
    if (round % 50 == 0) {
      for (int q = 0; q < 10; ++q) {
        std::string key = random_key(rng, false);
        std::set<dest_id> want;
        for (const auto& [p, dest] : live)
          if (reference_match(p, key)) want.insert(dest);
        EXPECT_EQ(match(idx, key), std::vector<dest_id>(want.begin(), want.end()))
            << "key '" << key << "'";
      }
    }
  }
  for (const auto& [p, d] : live) EXPECT_TRUE(idx.remove(p, d));
  EXPECT_TRUE(idx.empty());
  EXPECT_EQ(idx.node_count(), 1u);  // every node pruned: churn leaves nothing behind
}

TEST(topic_index, churn_on_distinct_keys_does_not_grow) {
  topic_index idx;
  idx.add("keep.#", 1);
  const size_t base = idx.node_count();
  for (int i = 0; i < 10000; ++i) {
    // Built by appending: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string&&.
    std::string k = "q";
    k += std::to_string(i);
    k += ".*.x";
    k += std::to_string(i % 7);
    k += ".#";
    ASSERT_TRUE(idx.add(k, static_cast<dest_id>(i)));
    ASSERT_TRUE(idx.remove(k, static_cast<dest_id>(i)));
    ASSERT_EQ(idx.node_count(), base);
  }
  EXPECT_EQ(idx.size(), 1u);
}

// Without the per-'#' memo this walk is O(words^5); with it, it is a few thousand steps.
TEST(topic_index, many_hashes_on_a_long_key_stay_cheap) {
  topic_index idx;
  idx.add("#.a.#.a.#.a.#.a.#.a.#", 1);
  idx.add("#.#.#.#.#.#.#.#.#.#.b", 2);
  idx.add("#.a.#.a.#.a.#.a.#.a.#.b", 3);
  std::string key = "a";
  for (int i = 0; i < 200; ++i) key += ".a";
  EXPECT_EQ(match(idx, key), std::vector<dest_id>{1});
  EXPECT_EQ(match(idx, key + ".b"), (std::vector<dest_id>{1, 2, 3}));
  EXPECT_EQ(match(idx, "a.a.a.a"), std::vector<dest_id>{});
}

// More '#' nodes reached by one routing key than the matcher's short list holds.
TEST(topic_index, many_hash_nodes_reached_by_one_key) {
  topic_index idx;
  std::string key;
  for (int i = 0; i < 100; ++i) {
    std::string w = "w";
    w += std::to_string(i);
    if (i) key += '.';
    key += w;
    std::string binding = "#.";
    binding += w;
    binding += ".#";
    idx.add(binding, static_cast<dest_id>(i));
    binding = "*.";
    binding += w;
    binding += ".#";
    idx.add(binding, static_cast<dest_id>(1000 + i));
  }
  idx.add("#.nope.#", 5000);
  std::vector<dest_id> want;
  for (dest_id i = 0; i < 100; ++i) want.push_back(i);
  want.push_back(1001);  // "*.w1.#" is the only '*' binding whose word sits second
  for (int round = 0; round < 3; ++round) EXPECT_EQ(match(idx, key), want);
  EXPECT_EQ(match(idx, "w1.w1"), (std::vector<dest_id>{1, 1001}));
}

}  // namespace
}  // namespace warren::broker
