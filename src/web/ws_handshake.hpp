// The server's half of the WebSocket opening handshake (RFC 6455 section 4.2) and the
// permessage-deflate negotiation (RFC 7692 section 7.1), on headers given as name/value pairs so
// any HTTP parser can feed it (the gateway's is Beast's). No socket, no HTTP parsing.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace warren::web {

struct http_header {
  std::string_view name;
  std::string_view value;
};

struct ws_upgrade_request {
  std::string_view method = "GET";
  unsigned version = 11;  // HTTP version as major * 10 + minor, as Beast counts it
  std::span<const http_header> headers;
};

struct ws_handshake_options {
  // Subprotocols we speak. The first one in the client's Sec-WebSocket-Protocol list that is
  // also here is chosen; none in common: no subprotocol (the client decides whether to go on).
  std::span<const std::string_view> subprotocols;
  // Accept permessage-deflate offers, always without context takeover in both directions (with
  // it zlib keeps about 290 KB per connection; see ws_deflate.hpp).
  bool permessage_deflate = false;
};

struct ws_handshake_result {
  // 101 when the upgrade is accepted; otherwise 400 (malformed), 405 (not GET) or 426 (not
  // version 13: the headers then carry Sec-WebSocket-Version: 13).
  unsigned status = 400;
  std::string error;        // why it was refused, for the response body and logs
  std::string subprotocol;  // chosen, or empty
  bool deflate = false;     // permessage-deflate agreed, no context takeover either way
  // Headers to send with the status line (101: Upgrade, Connection, Sec-WebSocket-Accept and
  // the chosen protocol and extension; 426: Sec-WebSocket-Version; 405: Allow).
  std::vector<std::pair<std::string, std::string>> headers;

  bool ok() const { return status == 101; }
};

// Checks an upgrade request:
//   method GET (else 405); HTTP/1.1 or later; a Host header;
//   Upgrade lists "websocket" and Connection lists "Upgrade" (comma lists, any case);
//   exactly one Sec-WebSocket-Key, the base64 of 16 bytes;
//   exactly one Sec-WebSocket-Version (none: 400), "13" (else 426 with Sec-WebSocket-Version: 13).
// Then picks the subprotocol and the extension. Origin is the caller's policy, not checked.
ws_handshake_result ws_handshake(const ws_upgrade_request& req,
                                 const ws_handshake_options& options);

// The whole HTTP/1.1 response for a result: 101 with its headers, or the error status with a
// text body and Connection: close.
std::string ws_format_response(const ws_handshake_result& result);

// Sec-WebSocket-Accept: base64(SHA-1(key ++ "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
std::string ws_accept_key(std::string_view key);
// A key is the base64 (padded) of exactly 16 bytes.
bool ws_valid_key(std::string_view key);

// Whether a comma-separated header value lists `token`, ignoring case and optional whitespace.
bool http_list_has_token(std::string_view list, std::string_view token);

// The client's Sec-WebSocket-Protocol list against ours; empty if nothing matches.
std::string ws_select_subprotocol(std::string_view offered,
                                  std::span<const std::string_view> supported);

// The Sec-WebSocket-Extensions response value for the first permessage-deflate offer we can
// accept, or empty to decline. We accept an offer whose parameters are valid (each at most once;
// server_no_context_takeover, client_no_context_takeover, client_max_window_bits[=8..15],
// server_max_window_bits=15) and answer with both no_context_takeover parameters, which RFC 7692
// lets a server add unasked. We decline server_max_window_bits below 15: our per-worker
// compressor uses a 32 KB window, and a client offering a smaller one usually also offers a plain
// permessage-deflate as a fallback.
std::string ws_negotiate_deflate(std::string_view extensions);

}  // namespace warren::web
