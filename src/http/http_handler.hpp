// HTTP/1.1 request handling over a net::connection: Beast's parser is fed the bytes the
// connection delivers (so no per-connection read buffer beyond a partial request), a router
// answers each request, keep-alive and pipelining are honoured.
//
// The router is asynchronous: it gets the request and a responder, and may answer at once or
// later (after asking vhosts on other workers, say). Responses go out in request order whatever
// order they complete in; at most max_in_flight requests wait for answers before the connection
// stops reading. A responder that fires after its connection closed does nothing.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <variant>

#include "net/connection.hpp"

namespace warren::net {
class worker;
}

namespace warren::http {

using request = boost::beast::http::request<boost::beast::http::string_body>;
using request_header = boost::beast::http::request_header<>;
using response = boost::beast::http::response<boost::beast::http::string_body>;

// Completes one request. Call it once, from any thread: it hands the response to the
// connection's worker. Copyable; calling it after the connection closed is harmless.
using responder = std::function<void(response)>;

// What a route sees besides the request.
struct request_context {
  boost::asio::ip::address peer;
  net::worker* worker = nullptr;  // the connection's worker: where its responder runs
  // The request came over the local control socket (<data-dir>/warren.sock, mode 0600): the
  // socket file's permissions authenticated the peer, so no credentials are asked for
  // (mgmt::authenticate admits it as the administrator "warrenctl").
  bool local_socket = false;
};

struct router {
  // Optional. Called once a request's head is in, before its body is read: either the largest
  // body accepted for this request, or a response sent at once (the body is then not read and
  // the connection closes after it) - e.g. 401 before a large upload.
  std::function<std::variant<size_t, response>(const request_header&, const request_context&)>
      on_head;
  std::function<void(request, const request_context&, responder)> handle;
};

// A plain-text response with Content-Length set. (The handler sets Connection: keep-alive or
// close from the request when it sends the response.)
response text_response(const request_header& req, boost::beast::http::status status,
                       std::string body,
                       std::string_view content_type = "text/plain; charset=utf-8");

// From a request's first byte: its head must be in within `head`, the whole request (a 20 MB
// definitions upload at 70 KB/s included) within `request`; else 408 and the connection
// closes. Without them a client trickling a byte a second (slowloris) held its socket as long
// as it liked, since every byte counted as activity. The head is also bounded in size
// (max_header_bytes: 431).
struct request_deadlines {
  std::chrono::milliseconds head{std::chrono::seconds(10)};
  std::chrono::milliseconds request{std::chrono::seconds(300)};
};

class http_handler final : public net::connection_handler {
 public:
  // Bodies above this are refused with 413 unless router::on_head allows less; it is also the
  // parser's hard limit.
  static constexpr size_t max_body_bytes = 32 * 1024 * 1024;
  // Bodies accepted when the router has no on_head.
  static constexpr size_t default_body_bytes = 1024 * 1024;
  // The largest request head (request line and fields) read.
  static constexpr uint32_t max_header_bytes = 64 * 1024;
  // Requests parsed and waiting for their response before reading stops.
  static constexpr size_t max_in_flight = 16;

  using deadlines = request_deadlines;

  // `local_socket`: the connection is on the control socket; its requests say so in their
  // request_context.
  explicit http_handler(const router& r, bool local_socket = false, deadlines d = deadlines{});
  ~http_handler() override;
  size_t on_data(std::span<const uint8_t> data) override;
  void on_tick(std::chrono::steady_clock::time_point now) override;
  void on_closed() override;

 private:
  struct slot {
    uint64_t seq;
    std::optional<response> res;
    bool keep_alive;
  };
  // Shared with responders: cleared when the handler goes, so late answers are dropped.
  struct handler_ref {
    http_handler* handler;
  };

  void reset_parser();
  // Queues a response that is ready now (errors, early refusals) behind the pending ones.
  void push_ready(response res, bool keep_alive);
  void complete(uint64_t seq, response res);
  void write_ready();
  request_context context();

  const router& router_;
  deadlines deadlines_;
  std::shared_ptr<handler_ref> link_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  bool local_socket_ = false;
  bool head_checked_ = false;
  bool done_reading_ = false;  // a request asked to close, or the input was bad
  bool paused_ = false;        // too many in flight
  std::deque<slot> slots_;     // in request order
  uint64_t next_seq_ = 0;
  std::chrono::steady_clock::time_point last_activity_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point request_started_;  // the current request's first byte
};

}  // namespace warren::http
