// Headers-exchange matching: x-match modes and RabbitMQ's comparison of header values.
#include "broker/headers_match.hpp"

#include <cmath>
#include <cstdint>
#include <string_view>

namespace warren::broker {

using common::field_table;
using common::field_value;

namespace {

// An integer as RabbitMQ decodes it, as sign and magnitude so that every AMQP integer (uint64
// timestamps above INT64_MAX, INT64_MIN) compares exactly without 128-bit arithmetic.
struct erl_integer {
  bool negative;
  uint64_t magnitude;
  bool operator==(const erl_integer&) const = default;
};

erl_integer from_signed(int64_t v) {
  if (v >= 0) return {false, static_cast<uint64_t>(v)};
  return {true, uint64_t{0} - static_cast<uint64_t>(v)};
}

std::optional<erl_integer> as_integer(const field_value& v) {
  if (auto p = v.get_if<int8_t>()) return from_signed(*p);
  if (auto p = v.get_if<uint8_t>()) return erl_integer{false, *p};
  if (auto p = v.get_if<int16_t>()) return from_signed(*p);
  if (auto p = v.get_if<uint16_t>()) return erl_integer{false, *p};
  if (auto p = v.get_if<int32_t>()) return from_signed(*p);
  if (auto p = v.get_if<uint32_t>()) return erl_integer{false, *p};
  if (auto p = v.get_if<int64_t>()) return from_signed(*p);
  // RabbitMQ decodes 'L' as a signed 64-bit long (its reading of the 0-9-1 errata).
  if (auto p = v.get_if<uint64_t>()) return from_signed(static_cast<int64_t>(*p));
  if (auto p = v.get_if<common::timestamp>()) return erl_integer{false, p->value};
  return std::nullopt;
}

std::optional<double> as_float(const field_value& v) {
  if (auto p = v.get_if<float>()) return static_cast<double>(*p);
  if (auto p = v.get_if<double>()) return *p;
  return std::nullopt;
}

std::optional<std::string_view> as_binary(const field_value& v) {
  if (auto p = v.get_if<std::string>()) return std::string_view(*p);
  if (auto p = v.get_if<common::byte_array>()) return std::string_view(p->data);
  return std::nullopt;
}

// Erlang compares an integer and a float by exact numeric value.
bool integer_equals_float(erl_integer i, double d) {
  if (!std::isfinite(d) || std::trunc(d) != d) return false;
  if (d < 0) {
    if (!i.negative || -d >= 18446744073709551616.0) return false;  // 2^64
    return static_cast<uint64_t>(-d) == i.magnitude;
  }
  if (i.negative || d >= 18446744073709551616.0) return false;
  return static_cast<uint64_t>(d) == i.magnitude;  // d may be -0.0, which equals 0
}

// The type atom RabbitMQ keeps beside a nested value: one per tag, except that 'l' and 'L'
// both decode to `long`.
char type_atom(const field_value& v) {
  char t = v.type_tag();
  return t == 'L' ? 'l' : t;
}

bool loosely_equal(const field_value& a, const field_value& b);

// Values inside arrays and tables are {Type, Value} terms: the type must agree as well.
bool nested_equal(const field_value& a, const field_value& b) {
  return type_atom(a) == type_atom(b) && loosely_equal(a, b);
}

// Erlang's == on two decoded values (RabbitMQ compares binding and header values this way and
// ignores their types at the top level):
//   integer types, timestamp, float, double   equal if numerically equal (1 == 1.0)
//   long string, byte array                   equal if the same bytes
//   bool, decimal (scale, value), void        equal only to the same kind with the same value
//   array, table                              both are Erlang lists: equal if the same length
//                                             and pairwise nested_equal (so an empty array
//                                             equals an empty table); tables keep their order
bool loosely_equal(const field_value& a, const field_value& b) {
  auto ai = as_integer(a), bi = as_integer(b);
  auto af = as_float(a), bf = as_float(b);
  if (ai && bi) return *ai == *bi;
  if (ai && bf) return integer_equals_float(*ai, *bf);
  if (af && bi) return integer_equals_float(*bi, *af);
  if (af && bf) return *af == *bf;
  if (ai || af || bi || bf) return false;

  auto as = as_binary(a), bs = as_binary(b);
  if (as || bs) return as && bs && *as == *bs;

  auto at = a.get_if<field_table>(), bt = b.get_if<field_table>();
  auto aa = a.get_if<common::field_array>(), ba = b.get_if<common::field_array>();
  if ((at || aa) && (bt || ba)) {
    if (aa && ba) {
      if (aa->items.size() != ba->items.size()) return false;
      for (size_t i = 0; i < aa->items.size(); ++i)
        if (!nested_equal(aa->items[i], ba->items[i])) return false;
      return true;
    }
    if (at && bt) {
      if (at->entries.size() != bt->entries.size()) return false;
      for (size_t i = 0; i < at->entries.size(); ++i) {
        const auto& x = at->entries[i];
        const auto& y = bt->entries[i];
        if (x.key != y.key || !nested_equal(x.value, y.value)) return false;
      }
      return true;
    }
    // An array is a list of pairs and a table a list of triples: equal only when both empty.
    return (aa ? aa->items.empty() : at->entries.empty()) &&
           (ba ? ba->items.empty() : bt->entries.empty());
  }
  // bool, decimal and void: same alternative and same value (std::variant's ==).
  return a == b;
}

// The n-th (0-based) entry with this key in wire order, or null.
const field_value* nth_value(const field_table* t, std::string_view key, size_t n) {
  if (!t) return nullptr;
  for (const auto& e : t->entries) {
    if (e.key != key) continue;
    if (n == 0) return &e.value;
    --n;
  }
  return nullptr;
}

}  // namespace

std::optional<x_match> parse_x_match(const field_table& binding_args) {
  const field_value* v = binding_args.find("x-match");
  if (!v) return x_match::all;
  const auto* s = v->get_if<std::string>();
  if (!s) return std::nullopt;
  if (*s == "all") return x_match::all;
  if (*s == "any") return x_match::any;
  if (*s == "all-with-x") return x_match::all_with_x;
  if (*s == "any-with-x") return x_match::any_with_x;
  return std::nullopt;
}

// RabbitMQ sorts both tables by key (stably) and merges them; checking each binding entry
// against the header entry of the same key and rank gives the same answer without sorting,
// hence without allocating. Tables are small, so the scans are cheap.
bool headers_match(x_match mode, const field_table& binding_args,
                   const field_table* message_headers) {
  const bool with_x = mode == x_match::all_with_x || mode == x_match::any_with_x;
  const bool want_all = mode == x_match::all || mode == x_match::all_with_x;
  const auto& conditions = binding_args.entries;
  for (size_t i = 0; i < conditions.size(); ++i) {
    const auto& c = conditions[i];
    if (c.key == "x-match") continue;
    if (!with_x && c.key.starts_with("x-")) continue;
    size_t rank = 0;
    for (size_t j = 0; j < i; ++j) rank += conditions[j].key == c.key ? 1 : 0;
    const field_value* h = nth_value(message_headers, c.key, rank);
    const bool holds = h && (c.value.get_if<std::monostate>() || loosely_equal(c.value, *h));
    if (holds && !want_all) return true;
    if (!holds && want_all) return false;
  }
  return want_all;
}

}  // namespace warren::broker
