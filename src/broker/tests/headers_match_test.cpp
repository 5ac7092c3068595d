// headers_match against RabbitMQ 3.10's rabbit_exchange_type_headers: modes, skipped keys, void
// bindings, value comparison across types, repeated keys.
#include "broker/headers_match.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace warren::broker {
namespace {

using common::byte_array;
using common::decimal;
using common::field_array;
using common::field_entry;
using common::field_table;
using common::field_value;
using common::timestamp;

// Builds a table keeping repeated keys (field_table::set would replace them).
field_table table(std::vector<std::pair<std::string, field_value>> entries) {
  field_table t;
  for (auto& [k, v] : entries) t.entries.push_back(field_entry{k, std::move(v)});
  return t;
}
const field_value kVoid{};
field_array arr(std::initializer_list<field_value> items) {
  return field_array(std::vector<field_value>(items));
}

bool matches(const field_table& binding, const field_table* headers) {
  auto mode = parse_x_match(binding);
  EXPECT_TRUE(mode.has_value());
  return mode && headers_match(*mode, binding, headers);
}
bool matches(const field_table& binding, const field_table& headers) {
  return matches(binding, &headers);
}

TEST(parse_x_match, accepts_exactly_rabbitmqs_four_long_strings) {
  EXPECT_EQ(parse_x_match(table({})), x_match::all);
  EXPECT_EQ(parse_x_match(table({{"a", 1}})), x_match::all);
  EXPECT_EQ(parse_x_match(table({{"x-match", "all"}})), x_match::all);
  EXPECT_EQ(parse_x_match(table({{"x-match", "any"}})), x_match::any);
  EXPECT_EQ(parse_x_match(table({{"x-match", "all-with-x"}})), x_match::all_with_x);
  EXPECT_EQ(parse_x_match(table({{"x-match", "any-with-x"}})), x_match::any_with_x);
  for (const char* bad : {"ALL", "Any", "", "all ", "any_with_x", "none"})
    EXPECT_EQ(parse_x_match(table({{"x-match", bad}})), std::nullopt) << bad;
  EXPECT_EQ(parse_x_match(table({{"x-match", byte_array{"all"}}})), std::nullopt);
  EXPECT_EQ(parse_x_match(table({{"x-match", 1}})), std::nullopt);
  EXPECT_EQ(parse_x_match(table({{"x-match", true}})), std::nullopt);
  EXPECT_EQ(parse_x_match(table({{"x-match", kVoid}})), std::nullopt);
  EXPECT_EQ(parse_x_match(table({{"x-match", "any"}, {"x-match", "bogus"}})), x_match::any);
}

TEST(headers_match, all_requires_every_condition) {
  auto b = table({{"x-match", "all"}, {"format", "pdf"}, {"type", "report"}});
  EXPECT_TRUE(matches(b, table({{"format", "pdf"}, {"type", "report"}})));
  EXPECT_TRUE(matches(b, table({{"type", "report"}, {"extra", 1}, {"format", "pdf"}})));
  EXPECT_FALSE(matches(b, table({{"format", "pdf"}})));
  EXPECT_FALSE(matches(b, table({{"format", "pdf"}, {"type", "log"}})));
  EXPECT_FALSE(matches(b, table({})));
  EXPECT_FALSE(matches(b, nullptr));
  // x-match absent means all.
  EXPECT_FALSE(matches(table({{"format", "pdf"}, {"type", "report"}}), table({{"format", "pdf"}})));
}

TEST(headers_match, any_requires_one_condition) {
  auto b = table({{"x-match", "any"}, {"format", "pdf"}, {"type", "report"}});
  EXPECT_TRUE(matches(b, table({{"format", "pdf"}})));
  EXPECT_TRUE(matches(b, table({{"format", "zip"}, {"type", "report"}})));
  EXPECT_FALSE(matches(b, table({{"format", "zip"}, {"type", "log"}})));
  EXPECT_FALSE(matches(b, table({{"other", "pdf"}})));
  EXPECT_FALSE(matches(b, nullptr));
}

TEST(headers_match, no_conditions_all_matches_any_does_not) {
  EXPECT_TRUE(matches(table({}), nullptr));
  EXPECT_TRUE(matches(table({{"x-match", "all"}}), nullptr));
  EXPECT_TRUE(matches(table({{"x-match", "all"}}), table({{"a", 1}})));
  EXPECT_FALSE(matches(table({{"x-match", "any"}}), table({{"a", 1}})));
  EXPECT_FALSE(matches(table({{"x-match", "any"}}), nullptr));
  // x-match itself is never a condition, not even in the with-x modes.
  EXPECT_TRUE(matches(table({{"x-match", "all-with-x"}}), nullptr));
  EXPECT_FALSE(matches(table({{"x-match", "any-with-x"}}), table({{"x-match", "any-with-x"}})));
}

TEST(headers_match, x_keys_are_conditions_only_in_with_x_modes) {
  // all / any ignore the binding's x- keys...
  EXPECT_TRUE(
      matches(table({{"x-match", "all"}, {"x-tenant", "t1"}, {"a", 1}}), table({{"a", 1}})));
  EXPECT_FALSE(
      matches(table({{"x-match", "any"}, {"x-tenant", "t1"}}), table({{"x-tenant", "t1"}})));
  EXPECT_TRUE(matches(table({{"x-tenant", "t1"}}), nullptr));  // default all, no conditions
  // ...but the message's x- headers are ordinary data for non-x binding keys.
  EXPECT_TRUE(matches(table({{"x-match", "any"}, {"tenant", "t1"}}),
                      table({{"x-tenant", "t2"}, {"tenant", "t1"}})));
  // all-with-x / any-with-x compare them.
  auto all_x = table({{"x-match", "all-with-x"}, {"x-tenant", "t1"}, {"a", 1}});
  EXPECT_FALSE(matches(all_x, table({{"a", 1}})));
  EXPECT_FALSE(matches(all_x, table({{"a", 1}, {"x-tenant", "t2"}})));
  EXPECT_TRUE(matches(all_x, table({{"a", 1}, {"x-tenant", "t1"}})));
  auto any_x = table({{"x-match", "any-with-x"}, {"x-tenant", "t1"}, {"a", 1}});
  EXPECT_TRUE(matches(any_x, table({{"x-tenant", "t1"}})));
  EXPECT_TRUE(matches(any_x, table({{"a", 1}})));
  EXPECT_FALSE(matches(any_x, table({{"x-tenant", "t2"}, {"a", 2}})));
  // Only the "x-" prefix counts: "X-tenant" and "xtenant" are ordinary keys.
  EXPECT_FALSE(matches(table({{"X-tenant", "t1"}}), nullptr));
  EXPECT_FALSE(matches(table({{"xtenant", "t1"}}), nullptr));
}

TEST(headers_match, void_binding_value_asks_for_presence) {
  auto all = table({{"x-match", "all"}, {"a", kVoid}});
  EXPECT_TRUE(matches(all, table({{"a", "anything"}})));
  EXPECT_TRUE(matches(all, table({{"a", 0}})));
  EXPECT_TRUE(matches(all, table({{"a", kVoid}})));
  EXPECT_TRUE(matches(all, table({{"a", field_table{}}})));
  EXPECT_FALSE(matches(all, table({{"b", 1}})));
  EXPECT_FALSE(matches(all, nullptr));
  auto any = table({{"x-match", "any"}, {"a", kVoid}, {"b", 1}});
  EXPECT_TRUE(matches(any, table({{"a", false}})));
  EXPECT_FALSE(matches(any, table({{"b", 2}})));
  auto all_with_x = table({{"x-match", "all-with-x"}, {"x-a", kVoid}});
  EXPECT_TRUE(matches(all_with_x, table({{"x-a", 1}})));
  EXPECT_FALSE(matches(all_with_x, table({{"a", 1}})));
  // A void header is only present, it does not equal a non-void binding value.
  EXPECT_FALSE(matches(table({{"a", 1}}), table({{"a", kVoid}})));
  EXPECT_FALSE(matches(table({{"a", ""}}), table({{"a", kVoid}})));
}

// (binding value, header value, equal?) as Erlang's == sees RabbitMQ's decoded terms.
struct value_case {
  const char* what;
  field_value binding;
  field_value header;
  bool equal;
};

std::vector<value_case> value_cases() {
  const uint64_t u64max = std::numeric_limits<uint64_t>::max();
  return {
      {"int32 = int64", int32_t{1}, int64_t{1}, true},
      {"int8 = uint8", int8_t{7}, uint8_t{7}, true},
      {"int16 = uint16", int16_t{300}, uint16_t{300}, true},
      {"uint32 = int64", uint32_t{4000000000u}, int64_t{4000000000}, true},
      {"negative int8 = int64", int8_t{-5}, int64_t{-5}, true},
      {"int differs", int32_t{1}, int32_t{2}, false},
      {"'L' is signed: max = -1", u64max, int8_t{-1}, true},
      {"'L' max != timestamp max", u64max, timestamp{u64max}, false},
      {"timestamp = int", timestamp{5}, int64_t{5}, true},
      {"timestamp above INT64_MAX = double", timestamp{uint64_t{1} << 63}, 9223372036854775808.0,
       true},
      {"int64 max != double 2^63", std::numeric_limits<int64_t>::max(), 9223372036854775808.0,
       false},
      {"int = double", int32_t{1}, 1.0, true},
      {"int != fractional double", int32_t{1}, 1.5, false},
      {"float = double", 1.5f, 1.5, true},
      {"float 0.1 != double 0.1", 0.1f, 0.1, false},
      {"zero = negative zero", int32_t{0}, -0.0, true},
      {"double differs", 2.5, 2.25, false},
      {"int != string", int32_t{1}, "1", false},
      {"string = string", "abc", "abc", true},
      {"string differs", "abc", "abd", false},
      {"string = byte array", "abc", byte_array{"abc"}, true},
      {"bool = bool", true, true, true},
      {"bool differs", true, false, false},
      {"bool != int", true, int32_t{1}, false},
      {"decimal = decimal", decimal{2, 100}, decimal{2, 100}, true},
      {"decimal scale matters", decimal{1, 10}, decimal{2, 100}, false},
      {"decimal != int", decimal{0, 1}, int32_t{1}, false},
      {"empty array = empty table", field_array{}, field_table{}, true},
      {"array = array", arr({int32_t{1}, "x"}), arr({int32_t{1}, "x"}), true},
      {"array order matters", arr({int32_t{1}, int32_t{2}}), arr({int32_t{2}, int32_t{1}}), false},
      {"nested types matter: I vs l", arr({int32_t{1}}), arr({int64_t{1}}), false},
      {"nested 'l' and 'L' are both long", arr({int64_t{-1}}), arr({u64max}), true},
      {"nested string != byte array", arr({"a"}), arr({byte_array{"a"}}), false},
      {"nested empty array != empty table", arr({field_array{}}), arr({field_table{}}), false},
      {"table = table", table({{"x", 1}, {"y", "z"}}), table({{"x", 1}, {"y", "z"}}), true},
      {"nested table order matters", table({{"x", 1}, {"y", 2}}), table({{"y", 2}, {"x", 1}}),
       false},
      {"nested table types matter", table({{"x", int32_t{1}}}), table({{"x", int16_t{1}}}), false},
      {"non-empty array != table", arr({int32_t{1}}), table({{"x", int32_t{1}}}), false},
  };
}

TEST(headers_match, values_compare_as_rabbitmq_does) {
  for (const auto& c : value_cases()) {
    for (x_match mode : {x_match::all, x_match::any}) {
      field_table binding = table({{"k", c.binding}});
      field_table headers = table({{"k", c.header}});
      EXPECT_EQ(headers_match(mode, binding, &headers), c.equal) << c.what;
      // Equality is symmetric.
      EXPECT_EQ(headers_match(mode, headers, &binding), c.equal) << c.what << " (swapped)";
    }
  }
}

TEST(headers_match, key_order_does_not_matter_but_repeated_keys_pair_by_rank) {
  EXPECT_TRUE(matches(table({{"b", 1}, {"a", 2}}), table({{"a", 2}, {"c", 0}, {"b", 1}})));
  // RabbitMQ merges stably sorted tables: the n-th "a" of the binding meets the n-th "a" of the
  // headers.
  auto twice = table({{"a", 1}, {"a", 2}});
  EXPECT_TRUE(matches(twice, table({{"a", 1}, {"a", 2}})));
  EXPECT_TRUE(matches(twice, table({{"a", 1}, {"b", 0}, {"a", 2}})));
  EXPECT_FALSE(matches(twice, table({{"a", 2}, {"a", 1}})));
  EXPECT_FALSE(matches(twice, table({{"a", 1}})));
  EXPECT_TRUE(matches(table({{"a", 1}}), table({{"a", 1}, {"a", 2}})));
  EXPECT_FALSE(matches(table({{"a", 2}}), table({{"a", 1}, {"a", 2}})));
  auto any = table({{"x-match", "any"}, {"a", 1}, {"a", 2}});
  EXPECT_TRUE(matches(any, table({{"a", 3}, {"a", 2}})));
  EXPECT_FALSE(matches(any, table({{"a", 2}})));
}

}  // namespace
}  // namespace warren::broker
