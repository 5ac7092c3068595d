// Test helpers for the WebSocket codec: client frames, a driver that feeds a parser the way
// net::connection does (keeping only the unconsumed bytes), and events as comparable strings.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "web/ws_frame.hpp"
#include "web/ws_parser.hpp"

namespace warren::web::test {

inline constexpr uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};

// A masked client frame.
inline std::string frame(ws_opcode op, std::string_view payload, bool fin = true,
                         bool rsv1 = false) {
  std::string out;
  ws_append_client_frame(out, op, payload, key, fin, rsv1);
  return out;
}
inline std::string text(std::string_view p, bool fin = true) {
  return frame(ws_opcode::text, p, fin);
}
inline std::string binary(std::string_view p, bool fin = true) {
  return frame(ws_opcode::binary, p, fin);
}
inline std::string cont(std::string_view p, bool fin = true) {
  return frame(ws_opcode::continuation, p, fin);
}
inline std::string ping(std::string_view p = {}) {
  return frame(ws_opcode::ping, p);
}
inline std::string pong(std::string_view p = {}) {
  return frame(ws_opcode::pong, p);
}
inline std::string close_payload(uint16_t code, std::string_view reason = {}) {
  std::string p;
  p += char(code >> 8);
  p += char(code & 0xff);
  p.append(reason);
  return p;
}
inline std::string close(uint16_t code, std::string_view reason = {}) {
  return frame(ws_opcode::close, close_payload(code, reason));
}
// A frame from raw header bits: first byte as given, masked, shortest length.
inline std::string raw(uint8_t b0, std::string_view payload) {
  std::string out;
  ws_append_client_frame(out, ws_opcode(b0 & 0x0f), payload, key, b0 & 0x80, false);
  out[0] = char(b0);
  return out;
}

inline std::string describe(const ws_event& e) {
  switch (e.kind) {
    case ws_event_kind::need_more:
      return "need_more";
    case ws_event_kind::message:
      return (e.opcode == ws_opcode::text ? "text:" : "binary:") + std::string(e.data);
    case ws_event_kind::ping:
      return "ping:" + std::string(e.data);
    case ws_event_kind::pong:
      return "pong:" + std::string(e.data);
    case ws_event_kind::close:
      return "close:" + std::to_string(e.code) + ":" + std::string(e.data);
    case ws_event_kind::error:
      return "error:" + std::to_string(e.code);
  }
  return "?";
}

// Feeds `wire` in pieces of the given sizes (the last one repeats), as net::connection does:
// new bytes are appended to what the parser left unconsumed, and the parser is called until it
// needs more. Checks on the way that what is kept is never a whole frame's worth of bytes the
// parser could have taken (it is always less than the frame at its front).
struct feed_result {
  std::vector<std::string> events;
  std::vector<std::string> error_reasons;
};

// Whether `b` starts with a whole (masked) frame, judged from its header alone.
inline bool whole_frame_at_front(std::string_view b) {
  if (b.size() < 2) return false;
  uint64_t len = uint8_t(b[1]) & 0x7f;
  size_t header = 2;
  if (len == 126) {
    if (b.size() < 4) return false;
    len = uint64_t(uint8_t(b[2])) << 8 | uint8_t(b[3]);
    header = 4;
  } else if (len == 127) {
    if (b.size() < 10) return false;
    len = 0;
    for (int i = 0; i < 8; ++i) len = len << 8 | uint8_t(b[2 + i]);
    header = 10;
  }
  if (uint8_t(b[1]) & 0x80) header += 4;
  return b.size() >= header && b.size() - header >= len;
}

inline feed_result feed(ws_parser& p, std::string_view wire, const std::vector<size_t>& pieces) {
  feed_result r;
  std::string pending;
  size_t fed = 0, i = 0;
  while (fed < wire.size()) {
    size_t n = std::min(pieces[std::min(i, pieces.size() - 1)], wire.size() - fed);
    if (n == 0) n = 1;
    ++i;
    pending.append(wire.substr(fed, n));
    fed += n;
    for (;;) {
      std::span<uint8_t> bytes(reinterpret_cast<uint8_t*>(pending.data()), pending.size());
      ws_parse_result res = p.parse(bytes);
      EXPECT_LE(res.consumed, pending.size());
      // The event's data may point into `pending`: read it before dropping what was consumed.
      if (res.event.kind != ws_event_kind::need_more) {
        r.events.push_back(describe(res.event));
        if (res.event.kind == ws_event_kind::error) r.error_reasons.emplace_back(res.event.data);
      }
      pending.erase(0, res.consumed);
      if (res.event.kind == ws_event_kind::need_more) {
        if (!p.finished()) {
          EXPECT_FALSE(whole_frame_at_front(pending)) << "a whole frame was left";
        }
        break;
      }
    }
  }
  return r;
}

inline std::vector<std::string> parse_with(const ws_parser_options& o, std::string_view wire,
                                           const std::vector<size_t>& pieces) {
  ws_parser p(o);
  return feed(p, wire, pieces).events;
}

// The events of `wire` parsed whole, one byte at a time, and split in two at every offset:
// all must be `expected`.
inline void expect_every_split(const ws_parser_options& o, std::string_view wire,
                               const std::vector<std::string>& expected) {
  EXPECT_EQ(parse_with(o, wire, {wire.size()}), expected) << "whole";
  EXPECT_EQ(parse_with(o, wire, {1}), expected) << "one byte at a time";
  for (size_t k = 1; k < wire.size(); ++k) {
    auto got = parse_with(o, wire, {k, wire.size()});
    if (got != expected) {
      ADD_FAILURE() << "split at " << k << " of " << wire.size();
      EXPECT_EQ(got, expected);
      return;
    }
  }
}

}  // namespace warren::web::test
