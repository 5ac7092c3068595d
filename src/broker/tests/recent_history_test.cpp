// recent_history: the bounded ring behind x-recent-history, and its declare-argument rules.
#include "broker/recent_history.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <memory>
#include <vector>

namespace warren::broker {
namespace {

template <typename T>
std::vector<T> items(const recent_history<T>& h) {
  std::vector<T> out;
  h.for_each([&](const T& x) { out.push_back(x); });
  return out;
}

std::vector<int> range(int from, int to) {  // [from, to)
  std::vector<int> v;
  for (int i = from; i < to; ++i) v.push_back(i);
  return v;
}

TEST(recent_history, keeps_the_newest_twenty_by_default) {
  recent_history<int> h;
  EXPECT_EQ(h.capacity(), 20u);
  EXPECT_TRUE(h.empty());
  for (int i = 0; i < 5; ++i) h.push(i);
  EXPECT_EQ(items(h), range(0, 5));
  for (int i = 5; i < 47; ++i) h.push(i);
  EXPECT_EQ(h.size(), 20u);
  EXPECT_EQ(items(h), range(27, 47));  // oldest first
}

TEST(recent_history, capacity_zero_keeps_nothing) {
  recent_history<int> h(0);
  for (int i = 0; i < 3; ++i) h.push(i);
  EXPECT_EQ(h.size(), 0u);
  EXPECT_TRUE(items(h).empty());
}

TEST(recent_history, capacity_one_keeps_the_last) {
  recent_history<int> h(1);
  for (int i = 0; i < 3; ++i) h.push(i);
  EXPECT_EQ(items(h), std::vector<int>{2});
}

TEST(recent_history, shrinking_drops_the_oldest) {
  recent_history<int> h(5);
  for (int i = 0; i < 8; ++i) h.push(i);  // wrapped: holds 3..7
  h.set_capacity(3);
  EXPECT_EQ(h.capacity(), 3u);
  EXPECT_EQ(items(h), range(5, 8));
  h.push(8);
  EXPECT_EQ(items(h), range(6, 9));
  h.set_capacity(0);
  EXPECT_TRUE(h.empty());
  h.push(9);
  EXPECT_TRUE(h.empty());
}

TEST(recent_history, growing_keeps_everything_and_fills_further) {
  recent_history<int> h(3);
  for (int i = 0; i < 5; ++i) h.push(i);  // wrapped: holds 2..4
  h.set_capacity(5);
  EXPECT_EQ(items(h), range(2, 5));
  for (int i = 5; i < 9; ++i) h.push(i);
  EXPECT_EQ(items(h), range(4, 9));
}

TEST(recent_history, huge_capacity_allocates_only_for_items_kept) {
  recent_history<int> h(std::numeric_limits<size_t>::max());
  for (int i = 0; i < 100; ++i) h.push(i);
  EXPECT_EQ(items(h), range(0, 100));
}

TEST(recent_history, holds_move_only_items) {
  recent_history<std::unique_ptr<int>> h(2);
  for (int i = 0; i < 3; ++i) h.push(std::make_unique<int>(i));
  std::vector<int> seen;
  h.for_each([&](const std::unique_ptr<int>& p) { seen.push_back(*p); });
  EXPECT_EQ(seen, (std::vector<int>{1, 2}));
  h.clear();
  EXPECT_TRUE(h.empty());
}

common::field_table length_arg(common::field_value v) {
  common::field_table t;
  t.set("x-recent-history-length", std::move(v));
  return t;
}

TEST(parse_history_length, accepts_positive_signed_integers_only) {
  EXPECT_EQ(parse_history_length(common::field_table{}), 20u);
  EXPECT_EQ(parse_history_length(length_arg(int8_t{3})), 3u);
  EXPECT_EQ(parse_history_length(length_arg(int16_t{300})), 300u);
  EXPECT_EQ(parse_history_length(length_arg(int32_t{60})), 60u);
  EXPECT_EQ(parse_history_length(length_arg(int64_t{1} << 40)), size_t{1} << 40);
  EXPECT_EQ(parse_history_length(length_arg(uint64_t{7})), 7u);  // 'L' decodes as signed long
  // The plugin's validate refuses 0 and negatives ("must be a positive integer")...
  EXPECT_EQ(parse_history_length(length_arg(int32_t{0})), std::nullopt);
  EXPECT_EQ(parse_history_length(length_arg(int8_t{-1})), std::nullopt);
  EXPECT_EQ(parse_history_length(length_arg(~uint64_t{0})), std::nullopt);  // 'L' -1
  // ...and every type but byte, short, signedint and long.
  EXPECT_EQ(parse_history_length(length_arg(uint8_t{3})), std::nullopt);
  EXPECT_EQ(parse_history_length(length_arg(uint16_t{3})), std::nullopt);
  EXPECT_EQ(parse_history_length(length_arg(uint32_t{3})), std::nullopt);
  EXPECT_EQ(parse_history_length(length_arg(3.0)), std::nullopt);
  EXPECT_EQ(parse_history_length(length_arg("3")), std::nullopt);
  EXPECT_EQ(parse_history_length(length_arg(true)), std::nullopt);
  EXPECT_EQ(parse_history_length(length_arg(common::field_value{})), std::nullopt);
}

TEST(history_no_store, only_a_true_boolean_header_skips_storing) {
  common::field_table h;
  EXPECT_FALSE(history_no_store(nullptr));
  EXPECT_FALSE(history_no_store(&h));
  h.set("x-recent-history-no-store", false);
  EXPECT_FALSE(history_no_store(&h));
  h.set("x-recent-history-no-store", "true");
  EXPECT_FALSE(history_no_store(&h));
  h.set("x-recent-history-no-store", int32_t{1});
  EXPECT_FALSE(history_no_store(&h));
  h.set("x-recent-history-no-store", true);
  EXPECT_TRUE(history_no_store(&h));
}

}  // namespace
}  // namespace warren::broker
