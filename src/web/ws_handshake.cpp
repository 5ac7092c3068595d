// Opening handshake checks, Sec-WebSocket-Accept (SHA-1 through OpenSSL's EVP), and the
// parsing of Sec-WebSocket-Protocol and Sec-WebSocket-Extensions lists (RFC 6455 9.1 grammar:
// extension *( ";" param [ "=" ( token | quoted-string ) ] ), comma-separated).
#include "web/ws_handshake.hpp"

#include <openssl/evp.h>

#include <optional>
#include <stdexcept>

#include "web/base64.hpp"

namespace warren::web {
namespace {

constexpr std::string_view websocket_guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// RFC 7230 tchar.
bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_tchar(c)) return false;
  return true;
}

// Splits at `sep` outside quoted strings; calls fn(trimmed piece) for each, including empty
// ones (callers decide). Returns false on an unterminated quoted string.
template <class Fn>
bool split_outside_quotes(std::string_view s, char sep, Fn&& fn) {
  size_t start = 0;
  bool quoted = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (quoted) {
      if (c == '\\')
        ++i;  // the escaped character, whatever it is
      else if (c == '"')
        quoted = false;
    } else if (c == '"') {
      quoted = true;
    } else if (c == sep) {
      if (!fn(trim(s.substr(start, i - start)))) return true;
      start = i + 1;
    }
  }
  if (quoted) return false;
  fn(trim(s.substr(start)));
  return true;
}

// The value of an extension parameter: a token, or a quoted string whose content (unescaped)
// is a token (RFC 6455 9.1). nullopt if neither.
std::optional<std::string> param_value(std::string_view v) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
    std::string out;
    for (size_t i = 1; i + 1 < v.size(); ++i) {
      if (v[i] == '\\') {
        if (++i + 1 >= v.size()) return std::nullopt;
      }
      out += v[i];
    }
    if (!is_token(out)) return std::nullopt;
    return out;
  }
  if (!is_token(v)) return std::nullopt;
  return std::string(v);
}

std::optional<int> window_bits(const std::optional<std::string>& v) {
  if (!v || v->size() > 2 || v->empty()) return std::nullopt;
  int n = 0;
  for (char c : *v) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  // "8" is allowed; a leading zero ("09") is not the ABNF's form.
  if ((*v)[0] == '0' || n < 8 || n > 15) return std::nullopt;
  return n;
}

// One permessage-deflate offer's parameters: whether we can accept it.
bool acceptable_deflate_offer(std::string_view params) {
  bool seen_snct = false, seen_cnct = false, seen_smwb = false, seen_cmwb = false;
  bool ok = true;
  bool first = true;
  split_outside_quotes(params, ';', [&](std::string_view p) {
    if (first) {  // the extension name itself
      first = false;
      return true;
    }
    size_t eq = p.find('=');
    std::string_view name = trim(p.substr(0, eq));
    std::optional<std::string> value;
    if (eq != std::string_view::npos) {
      value = param_value(trim(p.substr(eq + 1)));
      if (!value) return ok = false;
    }
    auto once = [&](bool& seen) { return !std::exchange(seen, true); };
    if (name == "server_no_context_takeover") {
      ok = once(seen_snct) && !value;
    } else if (name == "client_no_context_takeover") {
      ok = once(seen_cnct) && !value;
    } else if (name == "server_max_window_bits") {
      // Required value 8..15; below 15 we cannot honour with our 15-bit compressor.
      auto bits = window_bits(value);
      ok = once(seen_smwb) && bits && *bits == 15;
    } else if (name == "client_max_window_bits") {
      // Without a value: the client could limit its window if asked (we do not ask).
      ok = once(seen_cmwb) && (!value || window_bits(value));
    } else {
      ok = false;  // unknown parameter: this offer is declined
    }
    return ok;
  });
  return ok;
}

void set_error(ws_handshake_result& r, unsigned status, std::string why) {
  r.status = status;
  r.error = std::move(why);
}

}  // namespace

bool http_list_has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = trim(list.substr(0, comma));
    if (iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

std::string ws_accept_key(std::string_view key) {
  std::string input(key);
  input.append(websocket_guid);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(input.data(), input.size(), digest, &n, EVP_sha1(), nullptr) != 1)
    throw std::runtime_error("SHA-1 failed");
  return base64_encode(std::string_view(reinterpret_cast<const char*>(digest), n));
}

bool ws_valid_key(std::string_view key) {
  std::string raw;
  return key.size() == 24 && base64_decode(key, raw) && raw.size() == 16;
}

std::string ws_select_subprotocol(std::string_view offered,
                                  std::span<const std::string_view> supported) {
  std::string chosen;
  split_outside_quotes(offered, ',', [&](std::string_view p) {
    for (std::string_view s : supported)
      if (!p.empty() && p == s) {
        chosen = std::string(p);
        return false;
      }
    return true;
  });
  return chosen;
}

std::string ws_negotiate_deflate(std::string_view extensions) {
  bool accepted = false;
  if (!split_outside_quotes(extensions, ',', [&](std::string_view offer) {
        std::string_view name = trim(offer.substr(0, offer.find(';')));
        if (name == "permessage-deflate" && acceptable_deflate_offer(offer)) accepted = true;
        return !accepted;
      }))
    return {};
  if (!accepted) return {};
  return "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
}

ws_handshake_result ws_handshake(const ws_upgrade_request& req,
                                 const ws_handshake_options& options) {
  ws_handshake_result r;
  if (req.method != "GET") {
    set_error(r, 405, "a WebSocket upgrade must be a GET");
    r.headers.emplace_back("Allow", "GET");
    return r;
  }
  if (req.version < 11) {
    set_error(r, 400, "a WebSocket upgrade needs HTTP/1.1");
    return r;
  }

  // List headers may come on several lines: join them (RFC 7230 3.2.2). Key and version must
  // come once.
  std::string upgrade, connection, protocols, extensions;
  std::string_view key, version;
  int keys = 0, versions = 0;
  bool host = false;
  auto join = [](std::string& to, std::string_view v) {
    if (!to.empty()) to += ',';
    to.append(v);
  };
  for (const http_header& h : req.headers) {
    std::string_view v = trim(h.value);
    if (iequals(h.name, "Host")) {
      host = host || !v.empty();
    } else if (iequals(h.name, "Upgrade")) {
      join(upgrade, v);
    } else if (iequals(h.name, "Connection")) {
      join(connection, v);
    } else if (iequals(h.name, "Sec-WebSocket-Key")) {
      key = v;
      ++keys;
    } else if (iequals(h.name, "Sec-WebSocket-Version")) {
      version = v;
      ++versions;
    } else if (iequals(h.name, "Sec-WebSocket-Protocol")) {
      join(protocols, v);
    } else if (iequals(h.name, "Sec-WebSocket-Extensions")) {
      join(extensions, v);
    }
  }

  if (!host) {
    set_error(r, 400, "missing Host header");
    return r;
  }
  if (!http_list_has_token(upgrade, "websocket")) {
    set_error(r, 400, "Upgrade header does not name websocket");
    return r;
  }
  if (!http_list_has_token(connection, "Upgrade")) {
    set_error(r, 400, "Connection header does not list Upgrade");
    return r;
  }
  if (versions > 1) {
    set_error(r, 400, "more than one Sec-WebSocket-Version header");
    return r;
  }
  if (versions == 0) {
    // A handshake without a required field is malformed (RFC 6455 4.2.1): 400. 426 with the
    // version we speak is for a client that asked for another version.
    set_error(r, 400, "no Sec-WebSocket-Version header");
    return r;
  }
  if (version != "13") {
    set_error(r, 426, "only WebSocket version 13 is supported");
    r.headers.emplace_back("Sec-WebSocket-Version", "13");
    return r;
  }
  if (keys != 1) {
    set_error(r, 400, keys == 0 ? "missing Sec-WebSocket-Key" : "more than one Sec-WebSocket-Key");
    return r;
  }
  if (!ws_valid_key(key)) {
    set_error(r, 400, "Sec-WebSocket-Key is not the base64 of 16 bytes");
    return r;
  }

  r.status = 101;
  r.headers.emplace_back("Upgrade", "websocket");
  r.headers.emplace_back("Connection", "Upgrade");
  r.headers.emplace_back("Sec-WebSocket-Accept", ws_accept_key(key));
  if (!protocols.empty() && !options.subprotocols.empty()) {
    r.subprotocol = ws_select_subprotocol(protocols, options.subprotocols);
    if (!r.subprotocol.empty()) r.headers.emplace_back("Sec-WebSocket-Protocol", r.subprotocol);
  }
  if (options.permessage_deflate && !extensions.empty()) {
    std::string answer = ws_negotiate_deflate(extensions);
    if (!answer.empty()) {
      r.deflate = true;
      r.headers.emplace_back("Sec-WebSocket-Extensions", std::move(answer));
    }
  }
  return r;
}

std::string ws_format_response(const ws_handshake_result& r) {
  std::string out = "HTTP/1.1 ";
  switch (r.status) {
    case 101:
      out += "101 Switching Protocols";
      break;
    case 400:
      out += "400 Bad Request";
      break;
    case 405:
      out += "405 Method Not Allowed";
      break;
    case 426:
      out += "426 Upgrade Required";
      break;
    default:
      out += std::to_string(r.status) + " Error";
      break;
  }
  out += "\r\n";
  for (const auto& [name, value] : r.headers) {
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  if (!r.ok()) {
    std::string body = r.error + "\n";
    out += "Content-Type: text/plain; charset=utf-8\r\nContent-Length: ";
    out += std::to_string(body.size());
    out += "\r\nConnection: close\r\n\r\n";
    out += body;
    return out;
  }
  out += "\r\n";
  return out;
}

}  // namespace warren::web
