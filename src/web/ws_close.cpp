// The transitions of ws_close_handshake (table in ws_close.hpp).
#include "web/ws_close.hpp"

#include "web/ws_frame.hpp"

namespace warren::web {

bool ws_close_handshake::close(std::string& out, uint16_t code, std::string_view reason) {
  if (state_ != state::open) return false;
  ws_append_close(out, code, reason);
  state_ = state::closing;
  return true;
}

void ws_close_handshake::on_peer_close(std::string& out, uint16_t code) {
  if (state_ == state::open) ws_append_close(out, code);
  state_ = state::closed;
}

void ws_close_handshake::fail(std::string& out, uint16_t code, std::string_view reason) {
  if (state_ == state::open) ws_append_close(out, code, reason);
  state_ = state::closed;
}

void ws_close_handshake::on_ping(std::string& out, std::string_view payload) const {
  if (state_ == state::open) ws_append_frame(out, ws_opcode::pong, payload);
}

}  // namespace warren::web
