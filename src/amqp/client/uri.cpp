// AMQP URI parsing (hand-written: Boost.URL is not in Debian 12's Boost 1.74).
#include "amqp/client/uri.hpp"

#include <charconv>

namespace warren::amqp::client {

namespace {

std::optional<std::string> decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int v = 0;
    auto r = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
    if (r.ec != std::errc() || r.ptr != s.data() + i + 3) return std::nullopt;
    out += char(v);
    i += 2;
  }
  return out;
}

// {kind,"what"}, as Erlang prints amqp_uri's error terms.
std::string reason(std::string_view kind, std::string_view what) {
  std::string out;
  out.reserve(kind.size() + what.size() + 5);
  out.append("{").append(kind).append(",\"").append(what).append("\"}");
  return out;
}

}  // namespace

std::variant<uri, std::string> parse_uri(std::string_view text) {
  uri u;
  size_t colon = text.find("://");
  if (colon == std::string_view::npos) return reason("unexpected_uri_scheme", text);
  std::string_view scheme = text.substr(0, colon);
  if (scheme == "amqps") {
    u.tls = true;
    u.port = 5671;
  } else if (scheme != "amqp") {
    return reason("unexpected_uri_scheme", scheme);
  }
  std::string_view rest = text.substr(colon + 3);
  std::string_view query;
  if (size_t q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  std::string_view authority = rest.substr(0, rest.find('/'));
  std::optional<std::string_view> path;
  if (size_t slash = rest.find('/'); slash != std::string_view::npos) path = rest.substr(slash + 1);
  if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view info = authority.substr(0, at);
    authority = authority.substr(at + 1);
    size_t c = info.find(':');
    auto user = decode(info.substr(0, c));
    auto pass =
        c == std::string_view::npos ? std::optional<std::string>("") : decode(info.substr(c + 1));
    if (!user || !pass) return reason("malformed_uri", text);
    u.user = *user;
    u.password = *pass;
  }
  std::string_view host = authority;
  if (!host.empty() && host.front() == '[') {  // [::1]:5672
    size_t close = host.find(']');
    if (close == std::string_view::npos) return reason("malformed_uri", text);
    std::string_view after = host.substr(close + 1);
    host = host.substr(1, close - 1);
    if (!after.empty()) {
      if (after.front() != ':') return reason("malformed_uri", text);
      authority = after;
    } else {
      authority = {};
    }
  } else if (size_t c = host.rfind(':'); c != std::string_view::npos) {
    authority = host.substr(c);
    host = host.substr(0, c);
  } else {
    authority = {};
  }
  if (!authority.empty()) {
    unsigned port = 0;
    auto p = authority.substr(1);
    auto r = std::from_chars(p.data(), p.data() + p.size(), port);
    if (r.ec != std::errc() || r.ptr != p.data() + p.size() || port == 0 || port > 65535)
      return reason("port_invalid", text);
    u.port = uint16_t(port);
  }
  if (!host.empty()) u.host = std::string(host);
  if (path) {
    if (path->find('/') != std::string_view::npos) return reason("malformed_uri", text);
    auto v = decode(*path);
    if (!v) return reason("malformed_uri", text);
    u.vhost = *v;
  }
  while (!query.empty()) {
    std::string_view kv = query.substr(0, query.find('&'));
    query = kv.size() < query.size() ? query.substr(kv.size() + 1) : std::string_view{};
    size_t eq = kv.find('=');
    std::string_view k = kv.substr(0, eq);
    std::string_view v = eq == std::string_view::npos ? std::string_view{} : kv.substr(eq + 1);
    if (k == "heartbeat") {
      unsigned h = 0;
      if (std::from_chars(v.data(), v.data() + v.size(), h).ec == std::errc() && h < 65536)
        u.heartbeat = uint16_t(h);
    } else if (k == "verify" && v == "verify_none") {
      u.verify_peer = false;
    }
  }
  // amqp_uri:remove_credentials keeps scheme, host, port and path.
  u.safe.append(scheme).append("://");
  if (host.find(':') != std::string_view::npos)
    u.safe.append("[").append(host).append("]");
  else
    u.safe.append(host);
  u.safe.append(authority);
  if (path) u.safe.append("/").append(*path);
  return u;
}

}  // namespace warren::amqp::client
