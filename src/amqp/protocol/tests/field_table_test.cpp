// Field tables: every type tag round-trips, nesting, malformed input, and RabbitMQ's tag choices.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "amqp/protocol/field_table.hpp"

namespace warren::amqp::protocol {
namespace {

field_table every_type() {
  field_table t;
  t.set("V", field_value{});
  t.set("t", true);
  t.set("b", int8_t(-5));
  t.set("B", uint8_t(250));
  t.set("s", int16_t(-30000));
  t.set("u", uint16_t(65000));
  t.set("I", int32_t(-2000000000));
  t.set("i", uint32_t(4000000000u));
  t.set("l", int64_t(-9000000000000000000ll));
  t.set("L", uint64_t(18000000000000000000ull));
  t.set("f", 1.5f);
  t.set("d", -2.25);
  t.set("D", decimal{2, 12345});
  t.set("S", std::string("long string \0 with nul", 22));
  t.set("x", byte_array{std::string("\x01\x02\xff", 3)});
  t.set("T", timestamp{1700000000});
  field_array a;
  a.items = {int32_t(1), std::string("two"), field_table{}, field_array{}};
  t.set("A", a);
  field_table inner;
  inner.set("deep", true);
  t.set("F", inner);
  return t;
}

std::string encode(const field_table& t) {
  std::string s;
  common::byte_writer w(s);
  encode_table(w, t);
  return s;
}

TEST(FieldTable, EveryTypeRoundTrips) {
  field_table t = every_type();
  std::string wire = encode(t);
  common::byte_reader r(wire.data(), wire.size());
  field_table back;
  ASSERT_TRUE(decode_table(r, back));
  EXPECT_TRUE(r.at_end());
  EXPECT_EQ(back, t);
  // Every tag the issue lists is present, with the tag RabbitMQ uses.
  std::string tags;
  for (const auto& e : back.entries) {
    EXPECT_EQ(std::string(1, e.value.type_tag()), e.key);
    tags += e.value.type_tag();
  }
  EXPECT_EQ(tags, "VtbBsuIilLfdDSxTAF");
}

TEST(FieldTable, KnownWireBytes) {
  // {"a": 'I' 1} -> length 7: 1 'a' 'I' 0 0 0 1
  field_table t;
  t.set("a", int32_t(1));
  EXPECT_EQ(encode(t), std::string("\0\0\0\x07\x01"
                                   "aI\0\0\0\x01",
                                   11));
  // 's' is a signed 16-bit integer (RabbitMQ), not a short string.
  std::string wire(
      "\0\0\0\x05\x01"
      "ks\xff\xfe",
      9);
  common::byte_reader r(wire.data(), wire.size());
  field_table back;
  ASSERT_TRUE(decode_table(r, back));
  ASSERT_NE(back.find("k")->get_if<int16_t>(), nullptr);
  EXPECT_EQ(*back.find("k")->get_if<int16_t>(), -2);
}

TEST(FieldTable, SpecialFloatsKeepTheirBits) {
  field_table t;
  t.set("inf", std::numeric_limits<double>::infinity());
  t.set("neg0", -0.0f);
  std::string wire = encode(t);
  common::byte_reader r(wire.data(), wire.size());
  field_table back;
  ASSERT_TRUE(decode_table(r, back));
  EXPECT_TRUE(std::isinf(*back.find("inf")->get_if<double>()));
  EXPECT_TRUE(std::signbit(*back.find("neg0")->get_if<float>()));
}

TEST(FieldTable, TruncationAtEveryByteFails) {
  std::string wire = encode(every_type());
  for (size_t n = 0; n < wire.size(); ++n) {
    // Shorten the outer length too, so the truncation is inside the table, not only after it.
    std::string cut = wire.substr(0, n);
    if (n >= 4) {
      common::byte_writer w(cut);
      w.patch_u32(0, uint32_t(n - 4));
    }
    common::byte_reader r(cut.data(), cut.size());
    field_table back;
    bool ok = decode_table(r, back);
    // Only cutting exactly at an entry boundary can yield a valid (smaller) table.
    if (ok) {
      EXPECT_LT(back.entries.size(), every_type().entries.size()) << "at " << n;
    }
  }
}

TEST(FieldTable, UnknownTagIsRejected) {
  std::string wire(
      "\0\0\0\x03\x01"
      "kZ",
      7);
  common::byte_reader r(wire.data(), wire.size());
  field_table back;
  EXPECT_FALSE(decode_table(r, back));
  EXPECT_FALSE(r.ok());
}

TEST(FieldTable, LengthBeyondInputIsRejected) {
  std::string wire(
      "\0\0\x10\x00\x01"
      "kt\x01",
      8);
  common::byte_reader r(wire.data(), wire.size());
  field_table back;
  EXPECT_FALSE(decode_table(r, back));
}

TEST(FieldTable, HostileNestingIsBounded) {
  // 10 000 nested tables: must fail cleanly, not overflow the stack.
  const int depth = 10000;
  std::string inner;
  for (int i = 0; i < depth; ++i) {
    std::string outer;
    common::byte_writer w(outer);
    w.u32(uint32_t(inner.size() + 3));
    w.u8(1);
    w.u8('k');
    w.u8('F');
    outer += inner.empty() ? std::string("\0\0\0\0", 4) : inner;
    common::byte_writer(outer).patch_u32(0, uint32_t(outer.size() - 4));
    inner = std::move(outer);
  }
  common::byte_reader r(inner.data(), inner.size());
  field_table back;
  EXPECT_FALSE(decode_table(r, back));
}

TEST(FieldTable, Lookups) {
  field_table caps;
  caps.set("publisher_confirms", true);
  field_table t;
  t.set("capabilities", caps);
  t.set("product", std::string("pika"));
  EXPECT_EQ(table_string(t, "product").value(), "pika");
  ASSERT_NE(table_table(t, "capabilities"), nullptr);
  EXPECT_EQ(table_bool(*table_table(t, "capabilities"), "publisher_confirms"), true);
  EXPECT_FALSE(table_bool(t, "missing").has_value());
}

}  // namespace
}  // namespace warren::amqp::protocol
