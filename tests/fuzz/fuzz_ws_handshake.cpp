// Fuzzes the WebSocket opening handshake (web/ws_handshake): the upgrade checks, the
// Sec-WebSocket-Accept key, and the parsing of Sec-WebSocket-Protocol and
// Sec-WebSocket-Extensions lists (quoted strings, parameters). Bit 0 of the first byte picks how
// the rest becomes a request: 0, raw HTTP read by Beast's parser as the gateway reads it;
// 1, lines "name:value" taken as they are (bytes Beast would refuse reach the checks too, for a
// caller with another HTTP parser). Checks: the status is one the header promises, the response
// is well-formed HTTP with that status and no header value can break a line, an accepted key's
// answer agrees with an independent computation (OpenSSL's SHA-1 and base64), and what is
// chosen was offered and is ours.
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include <array>
#include <cctype>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "web/ws_handshake.hpp"

using namespace warren::web;
namespace bhttp = boost::beast::http;

namespace {

constexpr std::array<std::string_view, 2> ours{"warren.v1", "json"};

std::string expected_accept(std::string_view key) {
  std::string in(key);
  in += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(in.data()), in.size(), digest);
  unsigned char b64[64];
  int n = EVP_EncodeBlock(b64, digest, SHA_DIGEST_LENGTH);
  return std::string(reinterpret_cast<char*>(b64), size_t(n));
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(uint8_t(a[i])) != std::tolower(uint8_t(b[i]))) return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

void check(const ws_upgrade_request& req, bool deflate) {
  ws_handshake_options opts;
  opts.subprotocols = ours;
  opts.permessage_deflate = deflate;
  ws_handshake_result r = ws_handshake(req, opts);
  FUZZ_CHECK(r.status == 101 || r.status == 400 || r.status == 405 || r.status == 426);
  FUZZ_CHECK(r.ok() == r.error.empty());
  for (const auto& [name, value] : r.headers) {
    FUZZ_CHECK(!name.empty());
    FUZZ_CHECK(value.find_first_of("\r\n") == std::string::npos);
    FUZZ_CHECK(name.find_first_of("\r\n:") == std::string::npos);
  }
  std::string text = ws_format_response(r);
  bhttp::response_parser<bhttp::empty_body> p;
  p.skip(true);  // a 101 has no body; the error bodies are checked by their Content-Length
  boost::beast::error_code ec;
  p.put(boost::asio::buffer(text), ec);
  FUZZ_CHECK(!ec && p.is_header_done());
  FUZZ_CHECK(p.get().result_int() == r.status);
  if (!r.ok()) return;

  // An accepted request has exactly one key; the handshake takes it trimmed of spaces and tabs.
  std::string_view key;
  for (const auto& h : req.headers)
    if (iequals(h.name, "Sec-WebSocket-Key")) key = trim(h.value);
  bool accept_seen = false;
  for (const auto& [name, value] : r.headers) {
    if (name != "Sec-WebSocket-Accept") continue;
    accept_seen = true;
    FUZZ_CHECK(value == expected_accept(key));
  }
  FUZZ_CHECK(accept_seen);
  if (!r.subprotocol.empty()) FUZZ_CHECK(r.subprotocol == ours[0] || r.subprotocol == ours[1]);
  if (r.deflate) FUZZ_CHECK(deflate);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool structured = data[0] & 1;
  const bool deflate = !(data[0] & 2);
  std::string_view in = warren::fuzz::as_text(data + 1, size - 1);

  // The list parsers on their own, on the whole input.
  (void)http_list_has_token(in, "websocket");
  std::string answer = ws_negotiate_deflate(in);
  FUZZ_CHECK(answer.empty() ||
             answer ==
                 "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
  std::string chosen = ws_select_subprotocol(in, ours);
  FUZZ_CHECK(chosen.empty() || chosen == ours[0] || chosen == ours[1]);
  std::string raw_key(in.substr(0, 24));
  if (ws_valid_key(raw_key)) FUZZ_CHECK(ws_accept_key(raw_key) == expected_accept(raw_key));

  if (structured) {
    // First line: the method; then "name:value" lines. Version from the first byte's high bits.
    std::vector<http_header> headers;
    ws_upgrade_request req;
    req.version = 10 + (data[0] >> 6);
    size_t nl = in.find('\n');
    req.method = in.substr(0, nl);
    std::string_view rest = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
    while (!rest.empty()) {
      size_t end = rest.find('\n');
      std::string_view line = rest.substr(0, end);
      rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
      size_t colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      headers.push_back({line.substr(0, colon), line.substr(colon + 1)});
    }
    req.headers = headers;
    check(req, deflate);
    return 0;
  }

  bhttp::request_parser<bhttp::empty_body> p;
  p.header_limit(8192);
  boost::beast::error_code ec;
  p.put(boost::asio::buffer(in.data(), in.size()), ec);
  if (!p.is_header_done()) return 0;
  const auto& msg = p.get();
  std::vector<http_header> headers;
  for (const auto& f : msg)
    headers.push_back(http_header{std::string_view(f.name_string().data(), f.name_string().size()),
                                  std::string_view(f.value().data(), f.value().size())});
  ws_upgrade_request req;
  req.method = std::string_view(msg.method_string().data(), msg.method_string().size());
  req.version = msg.version();
  req.headers = headers;
  check(req, deflate);
  return 0;
}
