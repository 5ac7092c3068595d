// etcd's JSON gateway over Beast (see etcd_client.hpp).
#include "cluster/etcd_client.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <fmt/format.h>

namespace warren::cluster {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// gRPC's code for "unavailable" (no leader, the member is stopping): another member may answer.
constexpr int grpc_unavailable = 14;

std::string describe(const std::vector<etcd_endpoint>& eps) {
  std::string out;
  for (const auto& e : eps) out += (out.empty() ? "" : ",") + e.text();
  return out;
}

http::request<http::string_body> make_request(const etcd_endpoint& ep, const std::string& path,
                                              std::string body) {
  http::request<http::string_body> req{http::verb::post, path, 11};
  req.set(http::field::host, ep.host + ":" + ep.port);
  req.set(http::field::content_type, "application/json");
  req.keep_alive(true);
  req.body() = std::move(body);
  req.prepare_payload();
  return req;
}

}  // namespace

std::optional<std::vector<etcd_endpoint>> parse_endpoints(std::string_view list,
                                                          std::string& error) {
  std::vector<etcd_endpoint> out;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view one = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (one.empty()) continue;
    std::string_view rest = one;
    if (rest.starts_with("https://")) {
      error = fmt::format("'{}': https endpoints are not supported yet", one);
      return std::nullopt;
    }
    if (rest.starts_with("http://")) rest.remove_prefix(7);
    if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
    etcd_endpoint ep;
    size_t colon = rest.rfind(':');
    if (!rest.empty() && rest.front() == '[') {  // [v6]:port
      size_t close = rest.find(']');
      if (close == std::string_view::npos) {
        error = fmt::format("'{}': unbalanced [", one);
        return std::nullopt;
      }
      ep.host = std::string(rest.substr(1, close - 1));
      colon = rest.size() > close + 1 && rest[close + 1] == ':' ? close + 1 : std::string::npos;
    } else {
      ep.host = std::string(rest.substr(0, colon));
    }
    ep.port = colon == std::string_view::npos ? "2379" : std::string(rest.substr(colon + 1));
    if (ep.host.empty() || ep.port.empty() ||
        ep.port.find_first_not_of("0123456789") != std::string::npos || ep.port.size() > 5 ||
        std::stoul(ep.port) > 65535 || ep.host.find('/') != std::string::npos) {
      error = fmt::format("'{}' is not http://host:port", one);
      return std::nullopt;
    }
    out.push_back(std::move(ep));
  }
  if (out.empty()) {
    error = "no etcd endpoint given";
    return std::nullopt;
  }
  return out;
}

// ------------------------------------------------------------------------------ unary calls

struct etcd_client::pending {
  std::string path;
  std::string body;
  callback cb;
  std::chrono::milliseconds timeout{0};
  lane* in = nullptr;  // calls_ or renewals_ of the client, which outlives its calls
  size_t tries = 0;
  std::chrono::steady_clock::time_point sent{};  // of the current try
};

struct etcd_client::connection {
  explicit connection(asio::io_context& io) : stream(io), resolver(io) {}
  beast::tcp_stream stream;
  tcp::resolver resolver;
  beast::flat_buffer buf;
  http::request<http::string_body> req;
  http::response<http::string_body> res;
  bool open = false;
  void close() {
    beast::error_code ignored;
    resolver.cancel();
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.close();
  }
};

etcd_client::etcd_client(asio::io_context& io, std::vector<etcd_endpoint> endpoints,
                         std::chrono::milliseconds request_timeout)
    : io_(io), endpoints_(std::move(endpoints)), timeout_(request_timeout) {}

etcd_client::~etcd_client() {
  close();
}

void etcd_client::close() {
  closed_ = true;
  for (lane* l : {&calls_, &renewals_}) {
    l->queue.clear();
    if (l->conn) l->conn->close();
    l->conn.reset();
  }
}

void etcd_client::call(std::string path, json body, callback cb, etcd_call_options opts) {
  if (closed_) return;
  auto p = std::make_shared<pending>();
  p->path = std::move(path);
  p->body = body.dump();
  p->cb = std::move(cb);
  p->timeout = opts.attempt_timeout.count() > 0 ? opts.attempt_timeout : timeout_;
  p->in = opts.renewal ? &renewals_ : &calls_;
  if (opts.first)
    p->in->queue.push_front(std::move(p));
  else
    p->in->queue.push_back(std::move(p));
  pump(opts.renewal ? renewals_ : calls_);
}

void etcd_client::pump(lane& l) {
  if (l.busy || closed_ || l.queue.empty()) return;
  l.busy = true;
  auto p = std::move(l.queue.front());
  l.queue.pop_front();
  attempt(std::move(p));
}

void etcd_client::attempt(std::shared_ptr<pending> p) {
  lane& l = *p->in;
  if (!l.conn) {
    l.conn = std::make_shared<connection>(io_);
    // A new connection starts where the client last went, whichever lane went there.
    if (p->tries == 0) l.endpoint = current_;
  }
  auto c = l.conn;
  auto self = shared_from_this();
  const etcd_endpoint& ep = endpoints_[l.endpoint];
  // A kept-alive connection the endpoint closed while idle fails its next request at once: not a
  // sign that the endpoint is down.
  bool reused = c->open;
  auto lost = [reused](const beast::error_code& ec) {
    return !reused || ec == beast::error::timeout;
  };
  auto send = [self, c, p, ep, lost] {
    c->req = make_request(ep, p->path, p->body);
    p->sent = std::chrono::steady_clock::now();
    c->stream.expires_after(p->timeout);
    http::async_write(c->stream, c->req, [self, c, p, lost](beast::error_code ec, size_t) {
      if (self->closed_ || c != p->in->conn) return;
      if (ec) return self->fail_over(p, "write: " + ec.message(), lost(ec));
      c->res = {};
      http::async_read(c->stream, c->buf, c->res, [self, c, p, lost](beast::error_code ec, size_t) {
        if (self->closed_ || c != p->in->conn) return;
        if (ec) return self->fail_over(p, "read: " + ec.message(), lost(ec));
        c->stream.expires_never();
        json j = json::parse(c->res.body(), nullptr, false);
        if (!c->res.keep_alive()) {
          c->close();
          p->in->conn.reset();
        }
        if (c->res.result() == http::status::ok && !j.is_discarded()) return self->finish(p, {}, j);
        std::string err = gateway_error(j).value_or(
            fmt::format("HTTP {} {}", c->res.result_int(), std::string(c->res.reason())));
        auto code = j.is_object() ? j.find("code") : j.end();
        bool unavailable = c->res.result() == http::status::service_unavailable ||
                           (code != j.end() && code->is_number() && *code == grpc_unavailable);
        if (unavailable) return self->fail_over(p, err);
        self->finish(p, err, j);
      });
    });
  };
  if (c->open) return send();
  c->stream.expires_after(p->timeout);
  c->resolver.async_resolve(
      ep.host, ep.port,
      [self, c, p, send](beast::error_code ec, const tcp::resolver::results_type& results) {
        if (self->closed_ || c != p->in->conn) return;
        if (ec) return self->fail_over(p, "resolve: " + ec.message());
        c->stream.async_connect(results,
                                [self, c, p, send](beast::error_code ec, const tcp::endpoint&) {
                                  if (self->closed_ || c != p->in->conn) return;
                                  if (ec) return self->fail_over(p, "connect: " + ec.message());
                                  c->open = true;
                                  send();
                                });
      });
}

void etcd_client::fail_over(std::shared_ptr<pending> p, const std::string& why, bool suspect) {
  lane& l = *p->in;
  if (l.conn) l.conn->close();
  l.conn.reset();
  std::string where = endpoints_[l.endpoint].text();
  if (suspect) end_watches_on(l.endpoint, fmt::format("a call to {} failed: {}", where, why));
  // A kept-alive connection the server closed meanwhile fails the first try on a live endpoint,
  // so a call gets one try more than there are endpoints.
  if (++p->tries > endpoints_.size()) {
    current_ = l.endpoint = (l.endpoint + 1) % endpoints_.size();
    return finish(p, fmt::format("etcd unreachable ({}): {}: {}", describe(endpoints_), where, why),
                  json());
  }
  if (p->tries > 1 || endpoints_.size() > 1)
    current_ = l.endpoint = (l.endpoint + 1) % endpoints_.size();
  attempt(std::move(p));
}

void etcd_client::finish(std::shared_ptr<pending> p, const std::string& error, const json& answer) {
  lane& l = *p->in;
  l.busy = false;
  if (p->tries <= endpoints_.size()) current_ = l.endpoint;  // answered there
  auto self = shared_from_this();  // the callback may drop the last other reference
  answered_sent_ = p->sent;
  p->cb(error, answer);
  pump(l);
}

void etcd_client::range(std::string_view key, std::string_view range_end,
                        std::function<void(const std::string&, range_result)> cb) {
  call("/v3/kv/range", range_request(key, range_end),
       [cb = std::move(cb)](const std::string& err, const json& j) {
         if (!err.empty()) return cb(err, {});
         std::string perr;
         auto r = parse_range(j, perr);
         if (!r) return cb("bad range answer: " + perr, {});
         cb({}, std::move(*r));
       });
}

void etcd_client::put(std::string_view key, std::string_view value, int64_t lease,
                      std::function<void(const std::string&)> cb) {
  call("/v3/kv/put", put_request(key, value, lease),
       [cb = std::move(cb)](const std::string& err, const json&) { cb(err); });
}

void etcd_client::txn(json compare, json success, json failure,
                      std::function<void(const std::string&, txn_result)> cb) {
  call("/v3/kv/txn", txn_request(std::move(compare), std::move(success), std::move(failure)),
       [cb = std::move(cb)](const std::string& err, const json& j) {
         if (!err.empty()) return cb(err, {});
         std::string perr;
         auto r = parse_txn(j, perr);
         if (!r) return cb("bad txn answer: " + perr, {});
         cb({}, std::move(*r));
       });
}

void etcd_client::delete_range(std::string_view key, std::string_view range_end,
                               std::function<void(const std::string&)> cb) {
  call("/v3/kv/deleterange", delete_request(key, range_end),
       [cb = std::move(cb)](const std::string& err, const json&) { cb(err); });
}

void etcd_client::lease_grant(int64_t ttl_seconds,
                              std::function<void(const std::string&, lease_grant_result)> cb) {
  call("/v3/lease/grant", json{{"TTL", std::to_string(ttl_seconds)}},
       [cb = std::move(cb)](const std::string& err, const json& j) {
         if (!err.empty()) return cb(err, {});
         std::string perr;
         auto r = parse_lease_grant(j, perr);
         if (!r) return cb("bad lease grant answer: " + perr, {});
         cb({}, *r);
       });
}

void etcd_client::lease_keepalive(int64_t id, std::function<void(const std::string&, int64_t)> cb,
                                  std::chrono::milliseconds attempt_timeout) {
  call(
      "/v3/lease/keepalive", json{{"ID", std::to_string(id)}},
      [cb = std::move(cb)](const std::string& err, const json& j) {
        if (!err.empty()) return cb(err, 0);
        std::string perr;
        auto ttl = parse_keepalive(j, perr);
        if (!ttl) return cb("bad keepalive answer: " + perr, 0);
        cb({}, *ttl);
      },
      etcd_call_options{attempt_timeout, true, true});
}

void etcd_client::lease_revoke(int64_t id, std::function<void(const std::string&)> cb) {
  call("/v3/lease/revoke", json{{"ID", std::to_string(id)}},
       [cb = std::move(cb)](const std::string& err, const json&) { cb(err); });
}

// ------------------------------------------------------------------------------------ watches

struct etcd_watch::state : std::enable_shared_from_this<etcd_watch::state> {
  state(asio::io_context& io, std::vector<etcd_endpoint> eps, size_t first,
        std::chrono::milliseconds timeout)
      : endpoints(std::move(eps)), ep(first), timeout(timeout), stream(io), resolver(io) {}
  std::vector<etcd_endpoint> endpoints;
  size_t ep;
  size_t tries = 0;
  std::chrono::milliseconds timeout;
  std::string body;
  std::function<void(const watch_message&)> on_message;
  std::function<void(const std::string&)> on_end;
  bool done = false;
  beast::tcp_stream stream;
  tcp::resolver resolver;
  beast::flat_buffer buf;
  http::request<http::string_body> req;
  std::optional<http::response_parser<http::empty_body>> parser;
  json_stream_splitter splitter;
  std::vector<watch_message> ready;  // parsed during a read, handed out after it
  std::string stream_error;
  // The parser keeps a reference to its chunk callback, so it lives here. It only gathers: the
  // messages are handed out after the read (a handler may cancel the watch).
  std::function<size_t(std::uint64_t, beast::string_view, beast::error_code&)> chunk_cb =
      [this](std::uint64_t, beast::string_view body, beast::error_code& ec) -> size_t {
    if (!stream_error.empty()) return body.size();
    bool ok = splitter.feed({body.data(), body.size()}, [this](std::string_view obj) {
      if (!stream_error.empty()) return;
      json j = json::parse(obj, nullptr, false);
      std::string err;
      auto m = j.is_discarded() ? std::nullopt : parse_watch_message(j, err);
      if (!m)
        stream_error = "bad watch message: " + (err.empty() ? std::string("not JSON") : err);
      else
        ready.push_back(std::move(*m));
    });
    if (!ok) stream_error = "bad watch stream";
    if (!stream_error.empty()) ec = http::error::bad_chunk;
    return body.size();
  };

  void close() {
    beast::error_code ignored;
    resolver.cancel();
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.close();
  }
  void end(const std::string& why) {
    if (done) return;
    done = true;
    close();
    auto cb = std::move(on_end);
    on_message = nullptr;
    if (cb) cb(why);
  }
  void next_endpoint(const std::string& why) {
    close();
    if (++tries >= endpoints.size())
      return end(fmt::format("watch: etcd unreachable ({}): {}", describe(endpoints), why));
    ep = (ep + 1) % endpoints.size();
    start();
  }
  void start() {
    auto self = shared_from_this();
    const etcd_endpoint& e = endpoints[ep];
    stream.expires_after(timeout);
    resolver.async_resolve(
        e.host, e.port, [self](beast::error_code ec, const tcp::resolver::results_type& results) {
          if (self->done) return;
          if (ec) return self->next_endpoint("resolve: " + ec.message());
          self->stream.async_connect(results, [self](beast::error_code ec, const tcp::endpoint&) {
            if (self->done) return;
            if (ec) return self->next_endpoint("connect: " + ec.message());
            self->req = make_request(self->endpoints[self->ep], "/v3/watch", self->body);
            http::async_write(self->stream, self->req, [self](beast::error_code ec, size_t) {
              if (self->done) return;
              if (ec) return self->next_endpoint("write: " + ec.message());
              self->parser.emplace();
              self->parser->body_limit(boost::none);
              self->parser->on_chunk_body(self->chunk_cb);
              http::async_read_header(
                  self->stream, self->buf, *self->parser, [self](beast::error_code ec, size_t) {
                    if (self->done) return;
                    if (ec) return self->next_endpoint("read: " + ec.message());
                    auto status = self->parser->get().result_int();
                    if (status != 200)
                      return self->end(fmt::format("watch refused: HTTP {}", status));
                    self->stream.expires_never();
                    self->tries = 0;
                    self->read();
                  });
            });
          });
        });
  }
  void read() {
    auto self = shared_from_this();
    http::async_read_some(stream, buf, *parser, [self](beast::error_code ec, size_t) {
      if (self->done) return;
      auto msgs = std::move(self->ready);
      self->ready.clear();
      for (const auto& m : msgs) {
        if (self->done || !self->on_message) return;
        self->on_message(m);
      }
      if (self->done) return;
      if (!self->stream_error.empty()) return self->end(self->stream_error);
      if (ec) return self->end("watch stream ended: " + ec.message());
      if (self->parser->is_done()) return self->end("watch stream closed by etcd");
      self->read();
    });
  }
};

void etcd_client::end_watches_on(size_t endpoint, const std::string& why) {
  std::erase_if(watches_, [&](const std::weak_ptr<etcd_watch>& w) {
    auto watch = w.lock();
    if (!watch || !watch->s_ || watch->s_->done) return true;
    if (watch->s_->ep != endpoint) return false;
    // Posted: the owner's on_end may call back into this client, which is inside a call now.
    asio::post(io_, [s = watch->s_, why] { s->end("watch: " + why); });
    return true;
  });
}

std::shared_ptr<etcd_watch> etcd_client::watch(std::string_view key, std::string_view range_end,
                                               int64_t start_revision,
                                               std::function<void(const watch_message&)> on_message,
                                               std::function<void(const std::string&)> on_end) {
  auto s = std::make_shared<etcd_watch::state>(io_, endpoints_, current_, timeout_);
  s->body = watch_create_request(key, range_end, start_revision).dump();
  s->on_message = std::move(on_message);
  s->on_end = std::move(on_end);
  s->start();
  auto w = std::shared_ptr<etcd_watch>(new etcd_watch(std::move(s)));
  std::erase_if(watches_, [](const std::weak_ptr<etcd_watch>& x) { return x.expired(); });
  watches_.push_back(w);
  return w;
}

void etcd_watch::cancel() {
  if (!s_ || s_->done) return;
  s_->done = true;
  s_->on_message = nullptr;
  s_->on_end = nullptr;
  s_->close();
}

etcd_watch::~etcd_watch() {
  cancel();
}

}  // namespace warren::cluster
