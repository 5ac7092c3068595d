// A web gateway connection: HTTP requests, then possibly a WebSocket, SSE, stream or long-poll
// (the WebSocket's frames and messages: gateway_ws.cpp).
#include "web/gateway_handler.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/write.hpp>

#include <charconv>
#include <regex>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "broker/vhost.hpp"
#include "http/url.hpp"
#include "mgmt/definitions_json.hpp"
#include "net/worker.hpp"
#include "web/gateway.hpp"
#include "web/utf8.hpp"
#include "web/ws_deflate.hpp"
#include "web/ws_frame.hpp"
#include "web/ws_handshake.hpp"
#include "web/ws_parser.hpp"
#include "web/ws_state.hpp"

namespace warren::web {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;
using clock = std::chrono::steady_clock;

std::optional<uint64_t> parse_u64(std::string_view s) {
  uint64_t v = 0;
  if (s.empty()) return std::nullopt;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > max_name) return false;
  // Names from a path are percent-decoded bytes; they go into JSON answers and events, which
  // must be UTF-8 (nlohmann's dump throws on anything else).
  utf8_validator v;
  return v.feed(s) && v.complete();
}

std::string_view error_word(int status) {
  switch (status) {
    case 400:
      return "bad_request";
    case 401:
      return "unauthorized";
    case 403:
      return "forbidden";
    case 404:
      return "not_found";
    case 429:
      return "too_many_requests";
    case 503:
      return "unavailable";
    default:
      return "error";
  }
}

std::string error_json(std::string_view error, std::string_view reason) {
  return mgmt::dump(json{{"error", error}, {"reason", reason}});
}

namespace {

constexpr std::chrono::seconds head_timeout{10};  // to send a whole request head
constexpr std::chrono::seconds idle_timeout{60};  // a keep-alive connection with no request
const std::string cors = "Access-Control-Allow-Origin: *\r\n";

std::string_view reason_phrase(int status) {
  switch (status) {
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 426:
      return "Upgrade Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

using http::percent_decode;
using http::query_param;

bool matches(const std::vector<std::string>& patterns, std::string_view room) {
  for (const auto& p : patterns) {
    if (!p.empty() && p.back() == '*') {
      if (room.substr(0, p.size() - 1) == std::string_view(p).substr(0, p.size() - 1)) return true;
    } else if (p == room) {
      return true;
    }
  }
  return false;
}

}  // namespace

bool room_rights::may_join(std::string_view room) const {
  return !join || matches(*join, room);
}

bool room_rights::may_publish(std::string_view room) const {
  if (anonymous) return false;
  if (publish) return matches(*publish, room);
  return may_join(room);
}

gateway_handler::gateway_handler(gateway& g, bool ip_counted)
    : g_(g),
      self_(std::make_shared<self_ref>(self_ref{this})),
      tokens_(2 * g.settings().publish_rate),
      refill_at_(clock::now()),
      last_in_(clock::now()),
      last_out_(clock::now()),
      ip_counted_(ip_counted) {}

gateway_handler::~gateway_handler() {
  self_->h = nullptr;
  if (session_) session_->receiver = nullptr;
}

void gateway_handler::on_closed() {
  self_->h = nullptr;
  detach();
  set_mode(mode::http);  // no longer an open transport
  if (ip_counted_) {
    g_.release_ip(conn().peer_address());
    ip_counted_ = false;
  }
}

void gateway_handler::refuse_over_limit() {
  keep_alive_ = false;
  respond_error(429, "too_many_connections",
                fmt::format("more than {} connections from this address",
                            g_.settings().max_connections_per_ip));
}

void gateway_handler::refuse_fenced(std::string_view reason) {
  keep_alive_ = false;
  respond_error(503, "unavailable", reason);
}

void gateway_handler::fence(std::string_view reason) {
  detach();
  if (mode_ == mode::ws && ws_) {
    // 1001, as at shutdown (1013 "try again later" is not among the codes RFC 6455 defines, which
    // ws_close_code_valid holds to); the reason says why (cut to 123 bytes by the writer).
    ws_close(ws_close::going_away, reason);
  } else if (mode_ == mode::stream) {
    conn().out() += "0\r\n\r\n";
    conn().close_gracefully(std::chrono::seconds(1));
  } else {
    conn().close_gracefully(std::chrono::seconds(1));
  }
}

// --- HTTP ----------------------------------------------------------------------------------------

size_t gateway_handler::on_data(std::span<const uint8_t> data) {
  last_in_ = clock::now();
  // Past the lease's deadline: as when fenced (docs/cluster.md, "Fencing").
  if (const auto* f = g_.fence(); f && f->lapsed(last_in_)) {
    fence(f->refusal());
    conn().flush();
    return data.size();
  }
  ping_sent_ = false;
  size_t used = 0;
  for (;;) {
    if (conn().closing()) return data.size();
    if (used >= data.size()) return used;
    auto rest = data.subspan(used);
    switch (mode_) {
      case mode::http: {
        bool handled = false;
        used += http_data(rest, handled);
        if (!handled) return conn().closing() ? data.size() : used;
        break;
      }
      case mode::ws:
        used += ws_data(rest);
        return conn().closing() ? data.size() : used;
      case mode::sse:
      case mode::stream:
        return data.size();  // nothing is expected from the client; reading notices it going
      case mode::waiting:
      case mode::poll:
        return used;  // reading is paused; the rest is offered again afterwards
    }
  }
}

size_t gateway_handler::http_data(std::span<const uint8_t> data, bool& handled) {
  const auto& s = g_.settings();
  if (!parser_) {
    parser_ = std::make_unique<bhttp::request_parser<bhttp::string_body>>();
    parser_->header_limit(uint32_t(s.max_header));
    // The largest any route accepts: Beast checks Content-Length against the limit while it
    // finishes the head, before the route is known; the route's own limit is applied below.
    parser_->body_limit(std::max(s.max_body, s.max_bulk_body));
    head_checked_ = false;
    deadline_ = clock::now() + head_timeout;
  }
  size_t used = 0;
  while (used < data.size()) {
    boost::beast::error_code ec;
    size_t n = parser_->put(boost::asio::buffer(data.data() + used, data.size() - used), ec);
    used += n;
    if (ec == bhttp::error::need_more) return used;
    if (ec) {
      keep_alive_ = false;
      int status = ec == bhttp::error::header_limit ? 431
                   : ec == bhttp::error::body_limit ? 413
                                                    : 400;
      parser_.reset();
      respond_error(status, error_word(status), ec.message());
      handled = true;
      return data.size();
    }
    if (parser_->is_header_done() && !head_checked_) {
      head_checked_ = true;
      const auto& h = parser_->get();
      size_t limit = s.max_body;
      if (h.method() == bhttp::verb::post && h.target() == "/api/follows") limit = s.max_bulk_body;
      auto len = parser_->content_length();
      if (len && *len > limit) {
        keep_alive_ = false;
        parser_.reset();
        respond_error(413, "payload_too_large",
                      fmt::format("request body larger than {} bytes", limit));
        handled = true;
        return data.size();
      }
      parser_->body_limit(limit);
    }
    if (parser_->is_done()) break;
    if (n == 0) return used;
  }
  if (!parser_->is_done()) return used;
  request req = parser_->release();
  parser_.reset();
  keep_alive_ = req.keep_alive();
  handled = true;
  handle(std::move(req));
  return used;
}

void gateway_handler::respond(int status, std::string_view content_type, std::string_view body,
                              std::string_view extra_headers) {
  if (conn().closing()) return;
  std::string& out = conn().out();
  out += fmt::format("HTTP/1.1 {} {}\r\nServer: Warren\r\n", status, reason_phrase(status));
  if (!content_type.empty()) out += fmt::format("Content-Type: {}\r\n", content_type);
  out += fmt::format("Content-Length: {}\r\n", body.size());
  out += cors;
  out += extra_headers;
  if (!keep_alive_) out += "Connection: close\r\n";
  out += "\r\n";
  out += body;
  finish_response();
}

void gateway_handler::respond_error(int status, std::string_view error, std::string_view reason,
                                    std::string_view extra_headers) {
  respond(status, "application/json", error_json(error, reason), extra_headers);
}

void gateway_handler::set_mode(mode m) {
  if (m == mode_) return;
  worker_counters& wc = g_.counters(conn().owner().index());
  auto count = [&wc](mode x) -> uint64_t* {
    switch (x) {
      case mode::ws:
        return &wc.websocket;
      case mode::sse:
        return &wc.sse;
      case mode::stream:
        return &wc.stream;
      case mode::poll:
        return &wc.longpoll;
      case mode::http:
      case mode::waiting:
        break;
    }
    return nullptr;
  };
  if (uint64_t* c = count(mode_)) --*c;
  if (uint64_t* c = count(m)) ++*c;
  mode_ = m;
}

void gateway_handler::finish_response() {
  last_out_ = clock::now();
  bool paused = mode_ == mode::waiting || mode_ == mode::poll;
  set_mode(mode::http);  // an answered long-poll is no longer waiting
  if (!keep_alive_) {
    conn().close_gracefully(std::chrono::seconds(1));
    return;
  }
  conn().flush();
  if (paused) conn().pause_reading(false);
}

void gateway_handler::on_hub(std::function<std::pair<int, std::string>()> fn) {
  set_mode(mode::waiting);
  conn().pause_reading(true);
  auto self = self_;
  net::worker* w = &conn().owner();
  g_.home().post([self, w, fn = std::move(fn)] {
    std::pair<int, std::string> r;
    try {
      r = fn();
    } catch (const std::exception& e) {
      spdlog::error("web gateway: {}", e.what());
      r = {500, error_json("internal_error", e.what())};
    }
    w->post([self, r = std::move(r)]() mutable {
      if (self->h) self->h->reply(r.first, std::move(r.second));
    });
  });
}

void gateway_handler::on_hub_async(std::function<void(std::function<void(int, std::string)>)> fn) {
  set_mode(mode::waiting);
  conn().pause_reading(true);
  auto self = self_;
  net::worker* w = &conn().owner();
  g_.home().post([self, w, fn = std::move(fn)] {
    fn([self, w](int status, std::string body) {
      w->post([self, status, body = std::move(body)]() mutable {
        if (self->h) self->h->reply(status, std::move(body));
      });
    });
  });
}

void gateway_handler::on_hub_synced(std::function<hub_answer()> fn) {
  set_mode(mode::waiting);
  conn().pause_reading(true);
  auto self = self_;
  net::worker* w = &conn().owner();
  store::message_store* st = g_.store();
  g_.home().post([self, w, st, fn = std::move(fn)] {
    hub_answer r;
    try {
      r = fn();
    } catch (const std::exception& e) {
      spdlog::error("web gateway: {}", e.what());
      r = {500, error_json("internal_error", e.what()), 0};
    }
    auto answer = [self, w, status = r.status, body = std::move(r.body)]() mutable {
      w->post([self, status, body = std::move(body)]() mutable {
        if (self->h) self->h->reply(status, std::move(body));
      });
    };
    if (r.nodes) {
      wait_for_nodes(*r.nodes, st, r.ticket, std::move(answer), [self, w] {
        w->post([self] {
          if (self->h)
            self->h->reply(503, error_json("unavailable",
                                           "a node of the cluster this message was handed to (the "
                                           "owner of its target) did not store it: it is down or "
                                           "unreachable"));
        });
      });
      return;
    }
    // What the answer says was taken is on disk first (the store's group commit).
    if (st && r.ticket)
      st->when_synced(r.ticket, std::move(answer));
    else
      answer();
  });
}

bool gateway_handler::send_options(const json& b, broker::message& m) {
  if (b.contains("ttl")) {
    const json& t = b["ttl"];
    if (!t.is_number() || t.get<double>() < 0 || t.get<double>() > 1e9) {
      respond_error(400, "bad_request", "ttl must be a number of seconds, 0 or more");
      return false;
    }
    m.properties.expiration = std::to_string(int64_t(t.get<double>() * 1000));
  }
  if (b.contains("transient")) {
    if (!b["transient"].is_boolean()) {
      respond_error(400, "bad_request", "transient must be true or false");
      return false;
    }
    if (b["transient"].get<bool>()) {
      if (!m.properties.headers) m.properties.headers.emplace();
      m.properties.headers->set("x-warren-transient", true);
    }
  }
  return true;
}

void gateway_handler::reply(int status, std::string body) {
  if (status == 201 || status == 204)
    respond(status, {}, {});
  else
    respond_json(status, body);
}

bool gateway_handler::take_token() {
  double rate = g_.settings().publish_rate;
  if (rate <= 0) return true;
  auto now = clock::now();
  tokens_ =
      std::min(2 * rate, tokens_ + std::chrono::duration<double>(now - refill_at_).count() * rate);
  refill_at_ = now;
  if (tokens_ < 1) return false;
  tokens_ -= 1;
  return true;
}

void gateway_handler::handle(request req) {
  std::string_view target(req.target().data(), req.target().size());
  size_t q = target.find('?');
  std::string_view raw_path = target.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  auto method = req.method();

  if (method == bhttp::verb::options) {
    respond(204, {}, {},
            "Access-Control-Allow-Methods: GET, POST, PUT, DELETE, OPTIONS\r\n"
            "Access-Control-Allow-Headers: Authorization, Content-Type, Last-Event-ID\r\n"
            "Access-Control-Max-Age: 600\r\n");
    return;
  }

  auto since_param = [&](std::optional<uint64_t>& since) {
    if (auto s = query_param(query, "since")) {
      since = parse_u64(*s);
      if (!since) {
        respond_error(400, "bad_request", "since must be a non-negative integer");
        return false;
      }
    }
    return true;
  };

  if (raw_path == "/ws" || raw_path == "/sse" || raw_path == "/poll" || raw_path == "/stream") {
    if (method != bhttp::verb::get) {
      respond_error(405, "method_not_allowed", "use GET", "Allow: GET\r\n");
      return;
    }
    std::optional<uint64_t> since;
    if (!since_param(since)) return;
    if (raw_path == "/ws") {
      start_ws(req);
      return;
    }
    std::string token = query_param(query, "token").value_or("");
    if (!authenticate_browser(req, token)) return;
    if (raw_path == "/sse") {
      auto last = req["Last-Event-ID"];
      if (!last.empty()) {
        since = parse_u64(std::string_view(last.data(), last.size()));
        if (!since) {
          respond_error(400, "bad_request", "Last-Event-ID must be a non-negative integer");
          return;
        }
      }
      start_sse(req, since);
    } else if (raw_path == "/stream") {
      start_stream(req, since);
    } else {
      start_poll(req, since);
    }
    return;
  }

  if (raw_path.starts_with("/api/")) {
    std::vector<std::string> parts;
    std::string_view rest = raw_path.substr(5);
    while (true) {
      size_t slash = rest.find('/');
      auto part = percent_decode(rest.substr(0, slash), false);
      if (!part) {
        respond_error(400, "bad_request", "bad percent-encoding in the path");
        return;
      }
      parts.push_back(std::move(*part));
      if (slash == std::string_view::npos) break;
      rest.remove_prefix(slash + 1);
    }
    if (parts.size() == 1 && parts[0] == "dev-token") {
      const auto& s = g_.settings();
      if (!s.dev_tokens || s.jwt_secret.empty()) {
        respond_error(404, "not_found", "development tokens are off (--web-dev-tokens)");
        return;
      }
      if (method != bhttp::verb::post) {
        respond_error(405, "method_not_allowed", "use POST", "Allow: POST\r\n");
        return;
      }
      auto body = json::parse(req.body(), nullptr, false);
      if (!body.is_object() || !body.contains("user") || !body["user"].is_string() ||
          !valid_name(body["user"].get<std::string>())) {
        respond_error(400, "bad_request", "expected {\"user\": \"name\"}");
        return;
      }
      int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
      json claims = {{"sub", body["user"]}, {"iat", now}, {"exp", now + 86400}};
      respond_json(200, mgmt::dump(json{{"token", jwt_sign_hs256(claims, s.jwt_secret)}}));
      return;
    }
    auto auth = req[bhttp::field::authorization];
    bool bearer = auth.size() > 7 && boost::beast::iequals(auth.substr(0, 7), "Bearer ");
    bool browser_only =
        parts.size() == 3 && parts[0] == "rooms" && (parts[2] == "join" || parts[2] == "leave");
    if ((bearer && parts.size() == 3 && parts[0] == "rooms") || browser_only) {
      browser_http_op(req, parts);
      return;
    }
    if (bearer && parts[0] == "inbox" && parts.size() <= 2) {
      browser_inbox_op(req, parts);
      return;
    }
    backend(req, raw_path, parts);
    return;
  }

  if (method == bhttp::verb::get || method == bhttp::verb::head) {
    std::string_view p = raw_path == "/" ? std::string_view("/index.html") : raw_path;
    if (const asset* a = find_asset(p)) {
      respond(200, a->content_type, method == bhttp::verb::head ? std::string_view() : a->body,
              "Cache-Control: no-cache\r\n");
      return;
    }
  }
  respond_error(404, "not_found", "no such resource");
}

// --- browsers ------------------------------------------------------------------------------------

bool gateway_handler::authenticate_browser(const request& req, std::string_view token) {
  std::string header_token;
  if (token.empty()) {
    auto auth = req[bhttp::field::authorization];
    if (auth.size() > 7 && boost::beast::iequals(auth.substr(0, 7), "Bearer ")) {
      header_token.assign(auth.data() + 7, auth.size() - 7);
      token = header_token;
    }
  }
  const auto& s = g_.settings();
  rights_ = std::make_unique<room_rights>();
  std::string user;
  if (token.empty()) {
    if (s.anonymous_rooms.empty()) {
      keep_alive_ = false;
      respond_error(401, "unauthorized", "no token");
      return false;
    }
    rights_->join = s.anonymous_rooms;
    rights_->anonymous = true;
    user = fmt::format("anonymous:{}", g_.next_anonymous());
  } else {
    if (!g_.verifier()) {
      keep_alive_ = false;
      respond_error(401, "unauthorized", "this gateway accepts no tokens (no --jwt-secret)");
      return false;
    }
    auto r = g_.verifier()->verify(token);
    if (!r.ok() || !valid_name(r.claims.sub) || r.claims.sub.starts_with("anonymous:")) {
      keep_alive_ = false;
      respond_error(401, "unauthorized",
                    !r.ok()                     ? r.error
                    : !valid_name(r.claims.sub) ? std::string("sub too long")
                                                : std::string("sub may not start with anonymous:"));
      return false;
    }
    rights_->join = std::move(r.claims.rooms);
    rights_->publish = std::move(r.claims.publish);
    user = std::move(r.claims.sub);
  }
  detach();
  session_ = std::make_shared<session_link>();
  session_->worker = &conn().owner();
  session_->user = std::move(user);
  return true;
}

void gateway_handler::attach(std::optional<uint64_t> since) {
  session_->receiver = this;
  last_seq_ = since.value_or(0);
  lagging_ = catching_up_ = false;
  link_ptr l = session_;
  hub* h = &g_.the_hub();
  g_.home().post([h, l, since] { h->attach(l, since); });
}

void gateway_handler::detach() {
  if (!session_ || !session_->receiver) return;
  session_->receiver = nullptr;
  link_ptr l = session_;
  hub* h = &g_.the_hub();
  g_.home().post([h, l] { h->detach(l); });
}

void gateway_handler::start_ws(const request& req) {
  std::vector<http_header> headers;
  for (const auto& f : req)
    headers.push_back(http_header{std::string_view(f.name_string().data(), f.name_string().size()),
                                  std::string_view(f.value().data(), f.value().size())});
  ws_upgrade_request u;
  u.method = std::string_view(req.method_string().data(), req.method_string().size());
  u.version = req.version();
  u.headers = headers;
  ws_handshake_options opts;
  opts.permessage_deflate = true;
  auto hs = ws_handshake(u, opts);
  if (!hs.ok()) {
    keep_alive_ = false;
    std::string extra;
    for (const auto& [k, v] : hs.headers) extra += k + ": " + v + "\r\n";
    respond_error(int(hs.status), error_word(int(hs.status)), hs.error, extra);
    return;
  }
  std::string_view target(req.target().data(), req.target().size());
  size_t q = target.find('?');
  std::string token = q == std::string_view::npos
                          ? std::string()
                          : query_param(target.substr(q + 1), "token").value_or("");
  if (!authenticate_browser(req, token)) return;
  std::optional<uint64_t> since;
  if (q != std::string_view::npos)
    if (auto s = query_param(target.substr(q + 1), "since")) since = parse_u64(*s);
  conn().out() += ws_format_response(hs);
  ws_parser_options po;
  po.max_message_size = g_.settings().ws_max_message;
  po.permessage_deflate = hs.deflate;
  po.inflater = &g_.deflater(conn().owner().index());
  ws_ = std::make_unique<ws_state>(po, hs.deflate);
  set_mode(mode::ws);
  // Attached before the client can see the 101, so that anything sent to the user once the
  // client knows it is connected reaches it.
  attach(since);
  conn().flush();
}

void gateway_handler::start_sse(const request&, std::optional<uint64_t> since) {
  set_mode(mode::sse);
  conn().out() +=
      "HTTP/1.1 200 OK\r\nServer: Warren\r\nContent-Type: text/event-stream\r\n"
      "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n" +
      cors + "\r\nretry: 3000\n\n";
  attach(since);
  conn().flush();
  last_out_ = clock::now();
}

void gateway_handler::start_stream(const request&, std::optional<uint64_t> since) {
  set_mode(mode::stream);
  conn().out() +=
      "HTTP/1.1 200 OK\r\nServer: Warren\r\nContent-Type: application/x-ndjson\r\n"
      "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nX-Accel-Buffering: no\r\n" +
      cors + "\r\n";
  attach(since);
  conn().flush();
  last_out_ = clock::now();
}

void gateway_handler::start_poll(const request& req, std::optional<uint64_t> since) {
  const auto& s = g_.settings();
  std::string_view target(req.target().data(), req.target().size());
  std::string_view query = target.substr(target.find('?') + 1);
  auto timeout = s.poll_timeout;
  if (auto t = query_param(query, "timeout")) {
    auto v = parse_u64(*t);
    if (!v || *v > uint64_t(s.poll_timeout_max.count())) {
      respond_error(400, "bad_request",
                    fmt::format("timeout must be 0 to {} seconds", s.poll_timeout_max.count()));
      return;
    }
    timeout = std::chrono::seconds(*v);
  }
  callback_.clear();
  if (auto cb = query_param(query, "callback")) {
    static const std::regex ok("[A-Za-z_$][A-Za-z0-9_$.]{0,63}");
    if (!std::regex_match(*cb, ok)) {
      respond_error(400, "bad_request", "callback must match [A-Za-z_$][A-Za-z0-9_$.]{0,63}");
      return;
    }
    callback_ = *cb;
  }
  set_mode(mode::poll);
  conn().pause_reading(true);
  poll_out_.clear();
  deadline_ = clock::now() + timeout;
  attach(since);
}

void gateway_handler::finish_poll() {
  detach();
  std::string body = "[" + poll_out_ + "]";
  poll_out_.clear();
  poll_out_.shrink_to_fit();
  if (!callback_.empty()) {
    body = callback_ + "(" + body + ");";
    respond(200, "application/javascript; charset=utf-8", body, "Cache-Control: no-cache\r\n");
  } else {
    respond(200, "application/json", body, "Cache-Control: no-cache\r\n");
  }
}

void gateway_handler::write_event(const event& e) {
  std::string& out = conn().out();
  switch (mode_) {
    case mode::ws: {
      std::string j;
      j.reserve(event_json_size(e));
      append_event_json(j, e);
      ws_send(j);
      break;
    }
    case mode::sse:
      // A transient event carries no id: the browser's Last-Event-ID stays the last held one.
      if (!e.transient) {
        out += "id: ";
        out += std::to_string(e.seq);
        out += '\n';
      }
      out += "data: ";
      append_event_json(out, e);
      out += "\n\n";
      break;
    case mode::stream: {
      std::string j;
      j.reserve(event_json_size(e) + 1);
      append_event_json(j, e);
      j += '\n';
      out += fmt::format("{:x}\r\n", j.size());
      out += j;
      out += "\r\n";
      break;
    }
    case mode::poll:
      if (!poll_out_.empty()) poll_out_ += ',';
      append_event_json(poll_out_, e);
      break;
    default:
      return;
  }
  last_seq_ = std::max(last_seq_, e.seq);
  last_out_ = clock::now();
  ++g_.counters(conn().owner().index()).events_delivered;
}

size_t gateway_handler::on_events(const event* evs, size_t n) {
  if (!session_ || session_->receiver != this || lagging_ || conn().closing()) return 0;
  size_t wrote = 0;
  for (size_t i = 0; i < n; ++i) {
    if (last_seq_ && evs[i].seq <= last_seq_ && !evs[i].transient) continue;
    if (mode_ != mode::poll && conn().queued_bytes() > g_.settings().max_queued_output) {
      // A slow reader: stop here and catch up from the inbox once the output has drained.
      lagging_ = true;
      ++g_.counters(conn().owner().index()).slow_readers_cut;
      break;
    }
    write_event(evs[i]);
    ++wrote;
  }
  if (!wrote) return 0;
  if (mode_ == mode::poll)
    finish_poll();
  else
    conn().flush_soon();
  return wrote;
}

void gateway_handler::on_replay(std::vector<event> evs) {
  if (!session_ || session_->receiver != this || conn().closing()) return;
  lagging_ = catching_up_ = false;
  bool wrote = false;
  for (const auto& e : evs) {
    // A reset may number below the position asked for (a position this inbox never gave out):
    // from it on, the inbox's numbering is what counts.
    if (e.tail->starts_with(",\"type\":\"reset\"")) last_seq_ = 0;
    if (last_seq_ && e.seq <= last_seq_) continue;
    write_event(e);
    wrote = true;
  }
  if (!wrote) return;
  if (mode_ == mode::poll)
    finish_poll();
  else
    conn().flush_soon();
}

void gateway_handler::on_output_drained() {
  if (!lagging_ || catching_up_ || !session_ || session_->receiver != this) return;
  catching_up_ = true;
  link_ptr l = session_;
  hub* h = &g_.the_hub();
  uint64_t since = last_seq_;
  g_.home().post([h, l, since] { h->catch_up(l, since); });
}

void gateway_handler::on_tick(clock::time_point now) {
  const auto& s = g_.settings();
  switch (mode_) {
    case mode::http:
      if (parser_ && now > deadline_) {
        keep_alive_ = false;
        parser_.reset();
        respond_error(408, "request_timeout", "the request was not sent in time");
      } else if (!parser_ && now - last_in_ > idle_timeout && now - last_out_ > idle_timeout) {
        conn().close_now();
      }
      break;
    case mode::waiting:
      break;
    case mode::ws:
      if (!ws_->close.accepts_data()) break;
      if (now - last_in_ > 2 * s.ws_ping) {
        ws_close(ws_close::going_away, "no answer to ping");
      } else if (now - last_in_ > s.ws_ping && !ping_sent_) {
        ping_sent_ = true;
        ws_append_frame(conn().out(), ws_opcode::ping, {});
        conn().flush();
      }
      break;
    case mode::sse:
    case mode::stream:
      if (now - last_out_ >= s.heartbeat) {
        // An SSE comment line, or a chunk holding one newline.
        conn().out() += mode_ == mode::sse ? ": ping\n\n" : "1\r\n\n\r\n";
        last_out_ = now;
        conn().flush();
      }
      break;
    case mode::poll:
      if (now >= deadline_) finish_poll();
      break;
  }
}

void gateway_handler::on_shutdown() {
  detach();
  if (mode_ == mode::ws && ws_) {
    ws_close(ws_close::going_away, "server shutting down");
  } else if (mode_ == mode::stream) {
    conn().out() += "0\r\n\r\n";
    conn().close_gracefully(std::chrono::seconds(1));
  } else {
    conn().close_gracefully(std::chrono::seconds(1));
  }
}

}  // namespace warren::web
