// HTTP request parsing and response writing.
#include "http/http_handler.hpp"

#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>

#include <sstream>

namespace warren::http {

namespace bhttp = boost::beast::http;

namespace {
// Idle keep-alive connections are closed after this long.
constexpr std::chrono::seconds idle_timeout{60};
}  // namespace

response text_response(const request& req, bhttp::status status, std::string body,
                       std::string_view content_type) {
  response res{status, req.version()};
  res.set(bhttp::field::server, "Warren");
  res.set(bhttp::field::content_type, content_type);
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

void http_handler::reset_parser() {
  parser_.emplace();
  parser_->body_limit(max_request_bytes);
  parser_->header_limit(64 * 1024);
}

size_t http_handler::on_data(std::span<const uint8_t> data) {
  last_activity_ = std::chrono::steady_clock::now();
  size_t used = 0;
  while (used < data.size() && !conn().closing()) {
    if (!parser_) reset_parser();
    boost::beast::error_code ec;
    size_t n = parser_->put(boost::asio::buffer(data.data() + used, data.size() - used), ec);
    used += n;
    if (ec == bhttp::error::need_more) break;
    if (ec) {
      request dummy;
      dummy.version(11);
      auto status = ec == bhttp::error::body_limit ? bhttp::status::payload_too_large
                                                   : bhttp::status::bad_request;
      respond(text_response(dummy, status, ec.message() + "\n"), false);
      return data.size();
    }
    if (!parser_->is_done()) {
      if (n == 0) break;
      continue;
    }
    request req = parser_->release();
    parser_.reset();
    bool keep = req.keep_alive();
    respond(router_(req), keep);
  }
  return conn().closing() ? data.size() : used;
}

void http_handler::respond(response res, bool keep_alive) {
  res.keep_alive(keep_alive);
  std::ostringstream os;
  os << res;
  conn().out() += os.str();
  if (!keep_alive)
    conn().close_gracefully(std::chrono::seconds(1));
  else
    conn().flush();
}

void http_handler::on_tick(std::chrono::steady_clock::time_point now) {
  if (now - last_activity_ > idle_timeout) conn().close_now();
}

}  // namespace warren::http
