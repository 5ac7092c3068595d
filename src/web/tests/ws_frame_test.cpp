// The frame writer: header forms at their boundaries, close frames (codes that must not be
// sent, reasons cut at a character boundary), fragmentation, prepared broadcast frames, masking.
// Written frames are read back with the parser after masking them as a client would.
#include <gtest/gtest.h>

#include "web/utf8.hpp"
#include "web/ws_deflate.hpp"
#include "web/ws_frame.hpp"
#include "ws_test_support.hpp"

namespace warren::web {
namespace {

using namespace test;

// Turns server frames into client frames (mask bit and key added) so the parser can read them.
std::string as_client(std::string_view server) {
  std::string out;
  while (!server.empty()) {
    uint8_t b0 = uint8_t(server[0]), b1 = uint8_t(server[1]);
    EXPECT_EQ(b1 & 0x80, 0) << "server frames are not masked";
    size_t header = 2;
    uint64_t len = b1 & 0x7f;
    if (len == 126) {
      len = uint64_t(uint8_t(server[2])) << 8 | uint8_t(server[3]);
      header = 4;
    } else if (len == 127) {
      len = 0;
      for (int i = 0; i < 8; ++i) len = len << 8 | uint8_t(server[2 + i]);
      header = 10;
    }
    std::string_view payload = server.substr(header, len);
    std::string f;
    ws_append_client_frame(f, ws_opcode(b0 & 0x0f), payload, key, b0 & 0x80, b0 & 0x40);
    out += f;
    server.remove_prefix(header + len);
  }
  return out;
}

TEST(WsWriter, HeaderFormsAtTheirBoundaries) {
  for (auto [n, header] : {std::pair<size_t, size_t>{0, 2},
                           {125, 2},
                           {126, 4},
                           {65535, 4},
                           {65536, 10},
                           {1u << 20, 10}}) {
    EXPECT_EQ(ws_header_size(n), header) << n;
    std::string out;
    ws_append_frame(out, ws_opcode::binary, std::string(n, 'x'));
    EXPECT_EQ(out.size(), header + n);
    EXPECT_EQ(uint8_t(out[0]), 0x82);
  }
  std::string out;
  ws_append_header(out, ws_opcode::text, 300, false, true);
  EXPECT_EQ(out, std::string("\x41\x7e\x01\x2c", 4));
  out.clear();
  ws_append_header(out, ws_opcode::binary, 0x123456789a);
  EXPECT_EQ(out, std::string("\x82\x7f\x00\x00\x00\x12\x34\x56\x78\x9a", 10));
}

TEST(WsWriter, Rfc6455Example) {
  std::string out;
  ws_append_frame(out, ws_opcode::text, "Hello");
  EXPECT_EQ(out, std::string("\x81\x05\x48\x65\x6c\x6c\x6f", 7));  // RFC 6455 5.7
  out.clear();
  ws_append_frame(out, ws_opcode::ping, "Hello");
  EXPECT_EQ(out, std::string("\x89\x05\x48\x65\x6c\x6c\x6f", 7));
}

TEST(WsWriter, ReadsBackThroughTheParser) {
  std::string out;
  ws_append_frame(out, ws_opcode::text, "one");
  ws_append_frame(out, ws_opcode::ping, "p");
  ws_append_frame(out, ws_opcode::binary, std::string(70000, 'b'));
  ws_append_close(out, ws_close::going_away, "bye");
  EXPECT_EQ(parse_with({}, as_client(out), {1000}),
            (std::vector<std::string>{"text:one", "ping:p", "binary:" + std::string(70000, 'b'),
                                      "close:1001:bye"}));
}

TEST(WsWriter, Fragmentation) {
  std::string out;
  ws_append_message(out, ws_opcode::text, "abcdefghij", 4);
  // abcd (text, not fin), efgh (continuation), ij (continuation, fin)
  EXPECT_EQ(out, std::string("\x01\x04"
                             "abcd"
                             "\x00\x04"
                             "efgh"
                             "\x80\x02"
                             "ij",
                             16));
  EXPECT_EQ(parse_with({}, as_client(out), {3}), std::vector<std::string>{"text:abcdefghij"});
  out.clear();
  ws_append_message(out, ws_opcode::binary, "abc", 0);
  EXPECT_EQ(out, std::string("\x82\x03"
                             "abc",
                             5));
  out.clear();
  ws_append_message(out, ws_opcode::binary, "abcdef", 3, true);  // RSV1 on the first only
  EXPECT_EQ(out, std::string("\x42\x03"
                             "abc"
                             "\x80\x03"
                             "def",
                             10));
}

TEST(WsWriter, CloseCodesThatMustNotBeSentGiveAnEmptyClose) {
  for (uint16_t code : {1005, 1006, 1015, 0, 999, 1004, 5000}) {
    std::string out;
    ws_append_close(out, code, "reason");
    EXPECT_EQ(out, std::string("\x88\x00", 2)) << code;
  }
  std::string out;
  ws_append_close(out, ws_close::protocol_error);
  EXPECT_EQ(out, std::string("\x88\x02\x03\xea", 4));
}

TEST(WsWriter, CloseReasonIsCutAtACharacterBoundary) {
  // 61 two-byte characters = 122 bytes, then one more: 124 bytes do not fit in 123.
  std::string reason;
  for (int i = 0; i < 62; ++i) reason += "\xc3\xa9";
  std::string out;
  ws_append_close(out, ws_close::normal, reason);
  ASSERT_LE(out.size(), 2 + ws_max_control_payload);
  std::string_view sent(out.data() + 4, out.size() - 4);
  EXPECT_EQ(sent.size(), 122u);
  EXPECT_TRUE(is_valid_utf8(sent));
  // ASCII is cut at exactly 123 bytes.
  out.clear();
  ws_append_close(out, ws_close::normal, std::string(200, 'r'));
  EXPECT_EQ(out.size(), 2 + ws_max_control_payload);
}

TEST(WsWriter, CloseCodeValidity) {
  for (uint16_t c = 0; c < 6000; ++c) {
    bool expect = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1011) || (c >= 3000 && c <= 4999);
    EXPECT_EQ(ws_close_code_valid(c), expect) << c;
  }
}

TEST(WsWriter, PreparedMessageForBroadcast) {
  ws_prepared_message plain_only(ws_opcode::text, "hello everyone");
  std::string expect;
  ws_append_frame(expect, ws_opcode::text, "hello everyone");
  EXPECT_EQ(plain_only.frame(false), expect);
  EXPECT_EQ(plain_only.frame(true), expect);  // no compressed form: plain for everyone
  EXPECT_FALSE(plain_only.has_compressed());

  ws_deflate z;
  std::string big(2000, 'a');
  ws_prepared_message both(ws_opcode::text, big, z);
  ASSERT_TRUE(both.has_compressed());
  EXPECT_LT(both.frame(true).size(), both.frame(false).size());
  EXPECT_EQ(uint8_t(both.frame(true)[0]), 0xc1);  // FIN, RSV1, text
  ws_parser_options o;
  o.permessage_deflate = true;
  o.inflater = &z;
  EXPECT_EQ(parse_with(o, as_client(both.frame(true)), {7}),
            std::vector<std::string>{"text:" + big});
  EXPECT_EQ(parse_with(o, as_client(both.frame(false)), {7}),
            std::vector<std::string>{"text:" + big});

  // Too short to gain from compression: plain only.
  ws_prepared_message tiny(ws_opcode::text, "hi", z);
  EXPECT_FALSE(tiny.has_compressed());
}

TEST(WsMask, MaskingIsItsOwnInverseAtAnyOffset) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data += char(i * 7);
  for (size_t offset = 0; offset < 4; ++offset)
    for (size_t n : {0, 1, 3, 7, 8, 9, 15, 16, 17, 999}) {
      std::string a = data.substr(0, n);
      ws_mask(reinterpret_cast<uint8_t*>(a.data()), n, key, offset);
      for (size_t i = 0; i < n; ++i)
        ASSERT_EQ(uint8_t(a[i]), uint8_t(data[i]) ^ key[(offset + i) % 4]) << n << " " << i;
      ws_mask(reinterpret_cast<uint8_t*>(a.data()), n, key, offset);
      EXPECT_EQ(a, data.substr(0, n));
    }
}

}  // namespace
}  // namespace warren::web
