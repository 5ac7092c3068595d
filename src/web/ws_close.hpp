// The closing handshake (RFC 6455 sections 5.5.1, 7.1 and 7.4) as a one-byte state machine the
// connection handler consults: what to write, what to ignore, when to drop the TCP connection.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace warren::web {

// One per WebSocket connection, beside its ws_parser, on the connection's worker.
//
//   state     event                      writes                     then
//   open      we close (shutdown, kick)  close(code, reason)        closing
//   open      peer's close(code)         close(same code)           closed
//   open      protocol error (parser)    close(error code)          closed
//   closing   peer's close               nothing                    closed
//   closing   data, ping, pong           nothing (ignored)          closing
//   closing   protocol error             nothing                    closed
//   closed    anything                   nothing                    closed
//
// "closed": the server drops the TCP connection first (7.1.1) once the output is written. A
// peer that never answers our close is the caller's time-out (a few seconds, then drop).
// Codes 1005, 1006 and 1015 never reach the wire: echoing a close that carried no code gives
// an empty close frame (see ws_append_close).
class ws_close_handshake {
 public:
  enum class state : uint8_t { open, closing, closed };

  state get() const { return state_; }
  // Messages and pings from the peer are acted on only while open; after our close frame they
  // are ignored (we may send no more data, and the peer's data is moot).
  bool accepts_data() const { return state_ == state::open; }
  bool may_send_data() const { return state_ == state::open; }
  // The TCP connection should be closed once the output is written.
  bool done() const { return state_ == state::closed; }

  // We start closing. Returns false (and writes nothing) if a close was already sent.
  bool close(std::string& out, uint16_t code, std::string_view reason = {});
  // The peer's close frame arrived (1005 if it carried no code): echo its code unless ours was
  // already sent.
  void on_peer_close(std::string& out, uint16_t code);
  // The parser reported a protocol error: close with its code (unless a close was already
  // sent) and do not wait for the peer ("Fail the WebSocket Connection", 7.1.7).
  void fail(std::string& out, uint16_t code, std::string_view reason = {});
  // A ping while open gets a pong with the same payload; after our close, nothing.
  void on_ping(std::string& out, std::string_view payload) const;

 private:
  state state_ = state::open;
};

}  // namespace warren::web
