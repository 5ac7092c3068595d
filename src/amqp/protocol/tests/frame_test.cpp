// Frame parser: whole frames, input split at every byte, and each framing error.
#include <gtest/gtest.h>

#include "amqp/protocol/frame.hpp"

namespace warren::amqp::protocol {
namespace {

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string sample_stream() {
  std::string s;
  channel_open open;
  write_method(s, 1, open);
  content_header h;
  h.body_size = 10;
  h.properties.delivery_mode = 2;
  basic_publish pub;
  pub.routing_key = "rk";
  write_method(s, 1, pub);
  write_content_header_frame(s, 1, h);
  write_body_frames(s, 1, "0123456789", 4096);
  write_heartbeat_frame(s);
  return s;
}

TEST(Frame, ProtocolHeader) {
  EXPECT_EQ(check_protocol_header(bytes("AMQ")), header_status::need_more);
  EXPECT_EQ(check_protocol_header(bytes(std::string(protocol_header))), header_status::ok);
  EXPECT_EQ(check_protocol_header(bytes("GET / HTTP/1.1")), header_status::mismatch);
  EXPECT_EQ(check_protocol_header(bytes(std::string("AMQP\0\0\x09\x00", 8))),
            header_status::mismatch);
  EXPECT_EQ(check_protocol_header(bytes(std::string("AMQP\x01\x01", 6))), header_status::mismatch);
}

// Feeds the stream in pieces, as a socket would deliver it, and collects frame types.
std::vector<uint8_t> parse_split(const std::string& s, size_t split) {
  std::vector<uint8_t> types;
  std::string buf;
  size_t fed = 0;
  while (fed < s.size() || !buf.empty()) {
    if (fed < s.size()) {
      size_t n = std::min(split, s.size() - fed);
      buf.append(s, fed, n);
      fed += n;
    }
    for (;;) {
      parse_result r = parse_frame(bytes(buf), 131072);
      EXPECT_NE(r.status, parse_status::error) << r.error_text;
      if (r.status != parse_status::frame) break;
      types.push_back(r.frame.type);
      buf.erase(0, r.consumed);
    }
    if (fed == s.size() && !buf.empty()) {
      ADD_FAILURE() << "leftover bytes";
      break;
    }
  }
  return types;
}

TEST(Frame, SplitAtEveryByte) {
  std::string s = sample_stream();
  std::vector<uint8_t> expect = {frame_method, frame_method, frame_header, frame_body,
                                 frame_heartbeat};
  for (size_t split = 1; split <= s.size(); ++split) EXPECT_EQ(parse_split(s, split), expect);
  // And every prefix of the first frame is "need more".
  std::string first;
  write_method(first, 1, channel_open{});
  for (size_t n = 0; n < first.size(); ++n)
    EXPECT_EQ(parse_frame(bytes(first.substr(0, n)), 4096).status, parse_status::need_more);
}

TEST(Frame, DecodesChannelAndPayload) {
  std::string s;
  write_method(s, 7, channel_close{200, "bye", 0, 0});
  parse_result r = parse_frame(bytes(s), 4096);
  ASSERT_EQ(r.status, parse_status::frame);
  EXPECT_EQ(r.frame.channel, 7);
  method m;
  ASSERT_EQ(decode_method(r.frame.payload, m), decode_status::ok);
  EXPECT_EQ(std::get<channel_close>(m).reply_text, "bye");
}

TEST(Frame, BadFrameEnd) {
  std::string s;
  write_heartbeat_frame(s);
  s.back() = 'x';
  parse_result r = parse_frame(bytes(s), 4096);
  EXPECT_EQ(r.status, parse_status::error);
  EXPECT_NE(r.error_text.find("FRAME_ERROR"), std::string::npos);
}

TEST(Frame, UnknownType) {
  std::string s("\x05\0\0\0\0\0\0\xce", 8);
  EXPECT_EQ(parse_frame(bytes(s), 4096).status, parse_status::error);
}

TEST(Frame, OversizedFrameIsRefusedFromItsHeader) {
  // Header announces 1 MB; only the 7 header bytes are present.
  std::string s("\x03\0\x01\0\x10\0\0", 7);
  parse_result r = parse_frame(bytes(s), 131072);
  EXPECT_EQ(r.status, parse_status::error);
  EXPECT_NE(r.error_text.find("frame_max"), std::string::npos);
  // Exactly frame_max is fine.
  std::string body(4096 - frame_overhead, 'a');
  std::string f;
  write_body_frames(f, 1, body, 4096);
  EXPECT_EQ(parse_frame(bytes(f), 4096).status, parse_status::frame);
  f.clear();
  write_body_frames(f, 1, body + "b", 0);
  EXPECT_EQ(parse_frame(bytes(f), 4096).status, parse_status::error);
}

TEST(Frame, BodySplitsByFrameMax) {
  std::string f;
  write_body_frames(f, 3, std::string(10000, 'z'), 4096);
  size_t frames = 0, total = 0;
  std::string_view rest(f);
  while (!rest.empty()) {
    parse_result r = parse_frame(bytes(std::string(rest)), 4096);
    ASSERT_EQ(r.status, parse_status::frame);
    total += r.frame.payload.size();
    ++frames;
    rest.remove_prefix(r.consumed);
  }
  EXPECT_EQ(frames, 3u);
  EXPECT_EQ(total, 10000u);
}

// write_delivery must put on the wire exactly what the general writers do for the same delivery,
// long names (cut at 255 bytes as shortstr), bodies split over frames and empty bodies included.
TEST(Frame, DeliveryFromViewsMatchesTheGeneralWriters) {
  struct sample {
    std::string tag, exchange, routing_key, body;
    bool redelivered;
  };
  std::vector<sample> samples = {
      {"amq.ctag-abcdefghijklmnopqrstuv", "", "q", "0123456789abcdef", false},
      {"c", "amq.topic", std::string(300, 'k'), "", true},
      {std::string(256, 't'), "x", "rk", std::string(10000, 'b'), false},
  };
  for (const auto& s : samples) {
    content_header h;
    h.body_size = s.body.size();
    h.properties.delivery_mode = 2;
    h.properties.content_type = "application/json";
    h.properties.headers = common::field_table{};
    h.properties.headers->set("k", int64_t(7));
    basic_deliver d;
    d.consumer_tag = s.tag;
    d.delivery_tag = 123456789012ULL;
    d.redelivered = s.redelivered;
    d.exchange = s.exchange;
    d.routing_key = s.routing_key;
    std::string expected;
    write_method(expected, 7, d);
    write_content_header_frame(expected, 7, h);
    write_body_frames(expected, 7, s.body, 4096);

    std::string props;
    common::byte_writer w(props);
    encode_basic_properties(w, h.properties);
    std::string got;
    write_delivery(got, 7,
                   delivery_view{s.tag, d.delivery_tag, s.redelivered, s.exchange, s.routing_key},
                   props, s.body, 4096);
    EXPECT_EQ(got, expected) << s.tag.size() << " " << s.routing_key.size();

    // The head and the body frames by reference, the slices put back where they were handed
    // over, are the same bytes: each slice goes between its frame's header and end octet.
    std::string spliced;
    write_delivery_head(
        spliced, 7, delivery_view{s.tag, d.delivery_tag, s.redelivered, s.exchange, s.routing_key},
        props, s.body.size());
    size_t slices = 0;
    write_body_frames_by_reference(spliced, 7, s.body, 4096, [&](std::string_view part) {
      EXPECT_GE(part.data(), s.body.data());  // a view of the body, not a copy
      EXPECT_LE(part.data() + part.size(), s.body.data() + s.body.size());
      spliced.append(part);
      ++slices;
    });
    EXPECT_EQ(spliced, expected);
    EXPECT_EQ(slices, (s.body.size() + 4095 - 8) / (4096 - 8));
  }
}

}  // namespace
}  // namespace warren::amqp::protocol
