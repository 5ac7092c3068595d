// The server side of WebSocket framing (RFC 6455 section 5, RSV1 from RFC 7692): a pure state
// machine fed the bytes a socket delivered, in chunks split anywhere. No socket, no timers.
//
// Hand-written rather than Beast's websocket::stream: a Beast stream owns its socket, a read
// buffer and per-connection state worth several kilobytes even when idle, and our budget for an
// idle WebSocket user is 2 KB of server RSS in all. net::connection keeps no read buffer per
// connection (reads land in the worker's scratch buffer and only a partial frame is saved), and
// this parser follows the same rule: about 56 bytes of state, and no bytes of its own except the
// earlier fragments of a fragmented message, released once the message is delivered.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "web/utf8.hpp"
#include "web/ws_frame.hpp"

namespace warren::web {

class ws_deflate;

struct ws_parser_options {
  // Largest message, summed over its fragments, before and after decompression (else 1009).
  uint32_t max_message_size = 1024 * 1024;
  // permessage-deflate was negotiated: RSV1 may mark the first frame of a message, and such
  // messages are inflated with `inflater` (required then; the worker's ws_deflate).
  bool permessage_deflate = false;
  ws_deflate* inflater = nullptr;
  // Parse the frames a server sends instead (the client's side, for test clients and load
  // tools): frames must be unmasked, and a masked one is the protocol error (RFC 6455 5.1).
  bool from_server = false;
};

enum class ws_event_kind : uint8_t {
  need_more,  // every whole frame is consumed; offer the rest again with more bytes
  message,    // a whole text or binary message
  ping,
  pong,
  close,  // the peer's close frame; the parser is finished
  error,  // the peer broke the protocol; close with `code`; the parser is finished
};

struct ws_event {
  ws_event_kind kind = ws_event_kind::need_more;
  ws_opcode opcode = ws_opcode::continuation;  // message: text or binary
  // close: the peer's code (1005 if its close frame was empty); error: the code to close with
  // (1002 protocol error, 1007 invalid payload data, 1009 message too big).
  uint16_t code = 0;
  // message, ping, pong: the payload (unmasked, inflated). close: the reason. error: what was
  // wrong, a static string for logs and the close frame. Valid until the next parse() call and
  // while the caller's bytes are unchanged.
  std::string_view data;
};

struct ws_parse_result {
  ws_event event;
  size_t consumed = 0;  // bytes of the input to drop before the next call
};

// One per WebSocket connection, owned by its handler on the connection's worker.
//
// Contract: parse() consumes whole frames only. The caller keeps the unconsumed bytes (a partial
// frame) and offers them again, unchanged and in front of new bytes, in the next call; the
// parser relies on that to remember how much of a partial text frame it already validated.
// Consumed frames are unmasked in place in the caller's buffer (hence a mutable span), so a
// message in a single frame reaches the caller without a copy.
//
// Checks, each failing the connection with the code shown:
//   unknown opcode (3-7, B-F); RSV2 or RSV3 set; RSV1 set unless permessage-deflate was
//   negotiated and the frame is the first of a text or binary message           1002
//   frame not masked (masked, with from_server)                                 1002
//   control frame fragmented or longer than 125 bytes                           1002
//   continuation with no message started; text/binary inside a started one      1002
//   length not in its shortest form; 64-bit length with the top bit set        1002
//   close payload of 1 byte, or a close code not valid on the wire              1002
//   text not UTF-8 (checked as bytes arrive, across fragments, failing at the
//   first bad byte even inside an incomplete frame); close reason not UTF-8;
//   compressed data that does not inflate                                       1007
//   message (sum of fragments) over max_message_size, compressed or inflated    1009
// Control frames between the fragments of a message are returned at once.
class ws_parser {
 public:
  explicit ws_parser(const ws_parser_options& options = {});

  // Parses frames from the front of `data` until it returns an event, needs more bytes, or
  // fails. After a close frame or an error every call consumes everything and returns
  // need_more (nothing after a close is acted on).
  ws_parse_result parse(std::span<uint8_t> data);

  bool finished() const { return finished_; }
  // Fragments of a message have been received and its last one has not.
  bool in_message() const { return message_op_ != ws_opcode::continuation; }

 private:
  ws_parse_result fail(uint16_t code, const char* why, size_t consumed);
  ws_parse_result finish_compressed(ws_opcode op, std::string_view payload, size_t consumed);

  ws_deflate* inflater_;
  std::string message_;  // earlier fragments, or the inflated message just returned
  uint32_t max_message_;
  uint32_t checked_ = 0;  // payload bytes of the partial frame at the front already validated
  utf8_validator utf8_;   // over the text message in progress
  ws_opcode message_op_ = ws_opcode::continuation;  // text/binary while fragments are pending
  bool deflate_;
  bool compressed_ = false;  // the message in progress had RSV1 on its first frame
  bool finished_ = false;
  bool masked_;  // frames carry a masking key (from a client); false on the client's side
};

}  // namespace warren::web
