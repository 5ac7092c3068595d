// A gateway connection's WebSocket, once upgraded (gateway_handler.cpp, gateway_ws.cpp).
#pragma once

#include "web/ws_close.hpp"
#include "web/ws_parser.hpp"

namespace warren::web {

struct ws_state {
  ws_parser parser;
  ws_close_handshake close;
  bool deflate;
  ws_state(const ws_parser_options& o, bool d) : parser(o), deflate(d) {}
};

}  // namespace warren::web
