// HTTP/1.1 request handling over a net::connection: Beast's parser is fed the bytes the
// connection delivers (so no per-connection read buffer beyond a partial request), a router
// callback answers each request, keep-alive and pipelining are honoured.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <functional>
#include <memory>
#include <optional>

#include "net/connection.hpp"

namespace warren::http {

using request = boost::beast::http::request<boost::beast::http::string_body>;
using response = boost::beast::http::response<boost::beast::http::string_body>;
using router = std::function<response(const request&)>;

// A plain-text response with Content-Length set.
response text_response(const request& req, boost::beast::http::status status, std::string body,
                       std::string_view content_type = "text/plain; charset=utf-8");

class http_handler final : public net::connection_handler {
 public:
  // Requests above this size are refused with 413.
  static constexpr size_t max_request_bytes = 1024 * 1024;

  explicit http_handler(const router& r) : router_(r) {}
  size_t on_data(std::span<const uint8_t> data) override;
  void on_tick(std::chrono::steady_clock::time_point now) override;

 private:
  void reset_parser();
  void respond(response res, bool keep_alive);

  const router& router_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  std::chrono::steady_clock::time_point last_activity_ = std::chrono::steady_clock::now();
};

}  // namespace warren::http
