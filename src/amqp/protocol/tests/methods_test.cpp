// Generated method codec: every method round-trips; ids, bits, properties and bad input.
#include <gtest/gtest.h>

#include "amqp/protocol/method_samples.hpp"
#include "amqp/protocol/methods.hpp"

namespace warren::amqp::protocol {
namespace {

std::string encode(const method& m) {
  std::string s;
  common::byte_writer w(s);
  encode_method(w, m);
  return s;
}

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(Methods, EveryMethodRoundTrips) {
  auto all = samples::all_methods();
  ASSERT_EQ(all.size(), method_count);
  for (const auto& m : all) {
    std::string wire = encode(m);
    method back;
    ASSERT_EQ(decode_method(bytes(wire), back), decode_status::ok) << method_name(m);
    EXPECT_EQ(back, m) << method_name(m);
    EXPECT_EQ(method_name(method_class_id(m), method_method_id(m)), method_name(m));
  }
}

TEST(Methods, EveryTruncationIsASyntaxError) {
  for (const auto& m : samples::all_methods()) {
    std::string wire = encode(m);
    for (size_t n = 4; n < wire.size(); ++n) {
      method back;
      EXPECT_EQ(decode_method(bytes(wire.substr(0, n)), back), decode_status::syntax_error)
          << method_name(m) << " cut at " << n;
    }
    method back;
    EXPECT_EQ(decode_method(bytes(wire + "x"), back), decode_status::syntax_error)
        << method_name(m) << " with a trailing byte";
  }
}

TEST(Methods, KnownIdsAndTraits) {
  EXPECT_EQ(connection_start::amqp_class_id, 10);
  EXPECT_EQ(connection_start::amqp_method_id, 10);
  EXPECT_EQ(basic_publish::amqp_class_id, 60);
  EXPECT_EQ(basic_publish::amqp_method_id, 40);
  EXPECT_TRUE(basic_publish::has_content);
  EXPECT_TRUE(method_has_content(60, 71));  // get-ok
  EXPECT_FALSE(method_has_content(60, 80));
  EXPECT_EQ(method_name(85, 10), "confirm.select");
  // RabbitMQ extensions from extensions.xml
  EXPECT_EQ(method_name(10, 60), "connection.blocked");
  EXPECT_EQ(method_name(10, 61), "connection.unblocked");
  EXPECT_EQ(method_name(10, 70), "connection.update-secret");
  EXPECT_EQ(method_name(10, 71), "connection.update-secret-ok");
  EXPECT_EQ(method_name(99, 1), "");
  EXPECT_EQ(uint16_t(reply_code::not_allowed), 530);
  EXPECT_TRUE(is_hard_error(reply_code::channel_error));
  EXPECT_FALSE(is_hard_error(reply_code::not_found));
  EXPECT_EQ(reply_code_name(reply_code::precondition_failed), "PRECONDITION_FAILED");
}

TEST(Methods, UnknownIdsAreReported) {
  method back;
  std::string wire("\0\x0a\0\x63", 4);  // connection.99
  EXPECT_EQ(decode_method(bytes(wire), back), decode_status::unknown_method);
  wire = std::string("\x03\xe7\0\x01", 4);  // class 999
  EXPECT_EQ(decode_method(bytes(wire), back), decode_status::unknown_method);
  EXPECT_EQ(decode_method(bytes(std::string("\0", 1)), back), decode_status::syntax_error);
}

TEST(Methods, BitsPackIntoOneOctetLsbFirst) {
  basic_consume c;
  c.queue = "q";
  c.no_ack = true;   // bit 1
  c.no_wait = true;  // bit 3
  std::string wire = encode(c);
  // class, method, reserved short, queue "q", tag "", bits, table length 0
  std::string expect("\0\x3c\0\x14\0\0\x01q\x00\x0a\0\0\0\0", 14);
  EXPECT_EQ(wire, expect);
}

TEST(Properties, EveryPropertyRoundTrips) {
  content_header h;
  h.body_size = 1234567890123ull;
  auto& p = h.properties;
  p.content_type = "text/plain";
  p.content_encoding = "gzip";
  p.headers = samples::sample_table();
  p.delivery_mode = 2;
  p.priority = 9;
  p.correlation_id = "c";
  p.reply_to = "r";
  p.expiration = "60000";
  p.message_id = "m";
  p.timestamp = 1700000000;
  p.type = "t";
  p.user_id = "guest";
  p.app_id = "a";
  p.reserved = "cluster";
  std::string wire;
  common::byte_writer w(wire);
  encode_content_header(w, h);
  content_header back;
  ASSERT_TRUE(decode_content_header(bytes(wire), back));
  EXPECT_EQ(back, h);
  // A subset: only the flagged ones come back.
  content_header s;
  s.properties.delivery_mode = 1;
  s.properties.app_id = "x";
  wire.clear();
  encode_content_header(w, s);
  ASSERT_TRUE(decode_content_header(bytes(wire), back));
  EXPECT_EQ(back, s);
  EXPECT_FALSE(back.properties.headers.has_value());
  for (size_t n = 0; n < wire.size(); ++n)
    EXPECT_FALSE(decode_content_header(bytes(wire.substr(0, n)), back)) << n;
}

TEST(Properties, UnknownFlagsAndWrongClassAreRejected) {
  // class 60, weight 0, size 0, flags with the lowest property bit (bit 1) set: no such property
  std::string wire("\0\x3c\0\0\0\0\0\0\0\0\0\0\0\x02", 14);
  content_header back;
  EXPECT_FALSE(decode_content_header(bytes(wire), back));
  std::string other("\0\x0a\0\0\0\0\0\0\0\0\0\0\0\0", 14);  // class 10 carries no content
  EXPECT_FALSE(decode_content_header(bytes(other), back));
}

}  // namespace
}  // namespace warren::amqp::protocol
