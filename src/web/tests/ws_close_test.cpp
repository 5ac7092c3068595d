// The closing handshake state table of ws_close.hpp, row by row.
#include <gtest/gtest.h>

#include "web/ws_close.hpp"
#include "web/ws_frame.hpp"

namespace warren::web {
namespace {

using st = ws_close_handshake::state;

std::string close_frame(uint16_t code, std::string_view reason = {}) {
  std::string out;
  ws_append_close(out, code, reason);
  return out;
}

TEST(WsCloseHandshake, WeCloseThenThePeerAnswers) {
  ws_close_handshake c;
  std::string out;
  EXPECT_TRUE(c.accepts_data());
  EXPECT_TRUE(c.close(out, ws_close::going_away, "shutdown"));
  EXPECT_EQ(out, close_frame(1001, "shutdown"));
  EXPECT_EQ(c.get(), st::closing);
  EXPECT_FALSE(c.accepts_data());
  EXPECT_FALSE(c.may_send_data());
  EXPECT_FALSE(c.done());
  // A second close writes nothing.
  out.clear();
  EXPECT_FALSE(c.close(out, ws_close::normal));
  EXPECT_EQ(out, "");
  // Pings after our close are ignored.
  c.on_ping(out, "p");
  EXPECT_EQ(out, "");
  // The peer's close completes it without another frame.
  c.on_peer_close(out, ws_close::normal);
  EXPECT_EQ(out, "");
  EXPECT_TRUE(c.done());
}

TEST(WsCloseHandshake, PeerClosesAndWeEchoItsCode) {
  for (uint16_t code : {1000, 1001, 3000, 4999}) {
    ws_close_handshake c;
    std::string out;
    c.on_peer_close(out, code);
    EXPECT_EQ(out, close_frame(code)) << code;
    EXPECT_TRUE(c.done());
  }
}

TEST(WsCloseHandshake, AnEmptyCloseIsAnsweredWithAnEmptyClose) {
  ws_close_handshake c;
  std::string out;
  c.on_peer_close(out, ws_close::no_status);
  EXPECT_EQ(out, std::string("\x88\x00", 2));  // 1005 never reaches the wire
}

TEST(WsCloseHandshake, ProtocolErrorClosesWithoutWaiting) {
  ws_close_handshake c;
  std::string out;
  c.fail(out, ws_close::invalid_payload, "text message is not valid UTF-8");
  EXPECT_EQ(out, close_frame(1007, "text message is not valid UTF-8"));
  EXPECT_TRUE(c.done());
  out.clear();
  c.fail(out, ws_close::protocol_error);  // nothing more once closed
  c.on_peer_close(out, ws_close::normal);
  c.on_ping(out, "x");
  EXPECT_EQ(out, "");
}

TEST(WsCloseHandshake, ErrorWhileClosingSendsNoSecondClose) {
  ws_close_handshake c;
  std::string out;
  c.close(out, ws_close::normal);
  out.clear();
  c.fail(out, ws_close::protocol_error);
  EXPECT_EQ(out, "");
  EXPECT_TRUE(c.done());
}

TEST(WsCloseHandshake, PingWhileOpenGetsAPong) {
  ws_close_handshake c;
  std::string out;
  c.on_ping(out, "payload");
  std::string expect;
  ws_append_frame(expect, ws_opcode::pong, "payload");
  EXPECT_EQ(out, expect);
}

}  // namespace
}  // namespace warren::web
