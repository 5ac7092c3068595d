// Byte edits of a basic property list: the header goes in first and comes out leaving the
// publisher's bytes as they were, whatever other properties are present; malformed lists are
// left alone.
#include "amqp/protocol/properties_edit.hpp"

#include <gtest/gtest.h>

#include "amqp/protocol/methods.hpp"

namespace warren::amqp::protocol {
namespace {

std::string encode(const basic_properties& p) {
  std::string s;
  common::byte_writer w(s);
  encode_basic_properties(w, p);
  return s;
}

basic_properties decode(const std::string& s) {
  common::byte_reader r(s.data(), s.size());
  basic_properties p;
  EXPECT_TRUE(decode_basic_properties(r, p));
  EXPECT_TRUE(r.at_end());
  return p;
}

field_value forward_value() {
  field_table t;
  t.set("e", std::string("fan"));
  t.set("k", std::string("rk"));
  return t;
}

// Property lists with and without each field around the headers table.
std::vector<basic_properties> samples() {
  std::vector<basic_properties> v;
  v.emplace_back();
  basic_properties p;
  p.delivery_mode = 2;
  v.push_back(p);
  p.content_type = "text/plain";
  v.push_back(p);
  p.content_encoding = "gzip";
  v.push_back(p);
  field_table h;
  h.set("a", int32_t(1));
  h.set("x-warren-forward", std::string("a publisher's own, not first"));
  p.headers = h;
  v.push_back(p);
  p.content_type.reset();
  p.message_id = "m-1";
  p.timestamp = 1700000000;
  p.app_id = "app";
  v.push_back(p);
  return v;
}

TEST(PropertiesEdit, HeaderGoesInFirstAndComesOutLeavingTheBytesAsTheyWere) {
  for (const auto& p : samples()) {
    std::string original = encode(p);
    std::string s = original;
    ASSERT_TRUE(prepend_header(s, "x-warren-forward", forward_value()));
    basic_properties with = decode(s);
    ASSERT_TRUE(with.headers);
    ASSERT_FALSE(with.headers->entries.empty());
    EXPECT_EQ(with.headers->entries.front().key, "x-warren-forward");
    EXPECT_EQ(with.headers->entries.front().value, forward_value());
    // Every other property, and the publisher's headers in their order, unchanged.
    basic_properties rest = with;
    rest.headers->entries.erase(rest.headers->entries.begin());
    if (rest.headers->entries.empty()) rest.headers.reset();
    EXPECT_EQ(rest, p);

    auto v = take_first_header(s, "x-warren-forward");
    ASSERT_TRUE(v);
    EXPECT_EQ(*v, forward_value());
    EXPECT_EQ(s, original);
  }
}

TEST(PropertiesEdit, TakeLeavesAListWhoseFirstHeaderIsAnother) {
  basic_properties p;
  field_table h;
  h.set("other", int32_t(1));
  h.set("x-warren-forward", forward_value());
  p.headers = h;
  std::string s = encode(p), before = s;
  EXPECT_FALSE(take_first_header(s, "x-warren-forward"));
  EXPECT_EQ(s, before);
  basic_properties none;
  s = encode(none);
  before = s;
  EXPECT_FALSE(take_first_header(s, "x-warren-forward"));
  EXPECT_EQ(s, before);
}

TEST(PropertiesEdit, MalformedListsAreLeftAlone) {
  basic_properties p;
  p.content_type = "text/plain";
  p.headers = field_table{};
  p.headers->set("a", std::string("b"));
  std::string good = encode(p);
  ASSERT_TRUE(prepend_header(good, "x-warren-forward", forward_value()));
  // Every truncation of a valid list: no edit, no read past the end.
  for (size_t n = 0; n < good.size(); ++n) {
    std::string s = good.substr(0, n), before = s;
    EXPECT_FALSE(take_first_header(s, "x-warren-forward")) << n;
    EXPECT_EQ(s, before);
    if (n < 2 + 1 + 10 + 4) {  // flags, content type, the table's length
      EXPECT_FALSE(prepend_header(s, "k", field_value{int32_t(1)})) << n;
      EXPECT_EQ(s, before);
    }
  }
  std::string continued("\x00\x01", 2);  // a second flags word: not class basic's
  EXPECT_FALSE(prepend_header(continued, "k", field_value{int32_t(1)}));
  std::string bad_value = encode(basic_properties{});
  ASSERT_TRUE(prepend_header(bad_value, "k", field_value{int32_t(1)}));
  bad_value[2 + 4 + 1 + 1] = 'Z';  // the value's type tag: unknown
  std::string before = bad_value;
  EXPECT_FALSE(take_first_header(bad_value, "k"));
  EXPECT_EQ(bad_value, before);
  std::string s = encode(basic_properties{});
  EXPECT_FALSE(prepend_header(s, std::string(256, 'k'), field_value{int32_t(1)}));
}

TEST(PropertiesEdit, AnEmptyTableOfThePublisherGoesWithTheHeader) {
  // Documented (forward.hpp): an empty headers table and none are the same to consumers.
  basic_properties p;
  p.headers = field_table{};
  std::string s = encode(p);
  ASSERT_TRUE(prepend_header(s, "x-warren-forward", forward_value()));
  ASSERT_TRUE(take_first_header(s, "x-warren-forward"));
  EXPECT_FALSE(decode(s).headers);
}

}  // namespace
}  // namespace warren::amqp::protocol
