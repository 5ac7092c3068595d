// HTTP request parsing, asynchronous routing and in-order response writing.
#include "http/http_handler.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>

#include <sstream>

#include "net/worker.hpp"

namespace warren::http {

namespace bhttp = boost::beast::http;

namespace {
// Idle keep-alive connections are closed after this long (not while a request is pending).
constexpr std::chrono::seconds idle_timeout{60};
}  // namespace

response text_response(const request_header& req, bhttp::status status, std::string body,
                       std::string_view content_type) {
  response res{status, req.version()};
  res.set(bhttp::field::server, "Warren");
  res.set(bhttp::field::content_type, content_type);
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

http_handler::http_handler(const router& r, bool local_socket, deadlines d)
    : router_(r),
      deadlines_(d),
      link_(std::make_shared<handler_ref>(handler_ref{this})),
      local_socket_(local_socket) {}

http_handler::~http_handler() {
  link_->handler = nullptr;
}

void http_handler::on_closed() {
  link_->handler = nullptr;
  slots_.clear();
}

request_context http_handler::context() {
  return request_context{conn().peer_address(), &conn().owner(), local_socket_};
}

void http_handler::reset_parser() {
  parser_.emplace();
  parser_->body_limit(max_body_bytes);
  parser_->header_limit(max_header_bytes);
  head_checked_ = false;
  request_started_ = std::chrono::steady_clock::now();
}

size_t http_handler::on_data(std::span<const uint8_t> data) {
  last_activity_ = std::chrono::steady_clock::now();
  size_t used = 0;
  while (used < data.size() && !conn().closing()) {
    if (done_reading_) return data.size();  // after a closing request: nothing more is read
    if (slots_.size() >= max_in_flight) {
      // Enough waiting: keep the rest until answers go out (write_ready resumes reading).
      paused_ = true;
      conn().pause_reading(true);
      return used;
    }
    if (!parser_) reset_parser();
    boost::beast::error_code ec;
    size_t n = parser_->put(boost::asio::buffer(data.data() + used, data.size() - used), ec);
    used += n;
    if (ec == bhttp::error::need_more) break;
    if (ec) {
      request_header dummy;
      dummy.version(11);
      auto status = ec == bhttp::error::body_limit ? bhttp::status::payload_too_large
                    : ec == bhttp::error::header_limit
                        ? bhttp::status::request_header_fields_too_large
                        : bhttp::status::bad_request;
      done_reading_ = true;
      parser_.reset();
      push_ready(text_response(dummy, status, ec.message() + "\n"), false);
      return data.size();
    }
    if (parser_->is_header_done() && !head_checked_) {
      head_checked_ = true;
      size_t limit = default_body_bytes;
      if (router_.on_head) {
        auto verdict = router_.on_head(parser_->get().base(), context());
        if (auto* refusal = std::get_if<response>(&verdict)) {
          // Answered from the head alone: the body is not read, so the stream cannot be
          // resynchronised; the connection closes after this response.
          done_reading_ = true;
          parser_.reset();
          push_ready(std::move(*refusal), false);
          return data.size();
        }
        limit = std::min(std::get<size_t>(verdict), max_body_bytes);
      }
      auto length = parser_->content_length();
      if (length && *length > limit) {
        request_header h = parser_->get().base();
        done_reading_ = true;
        parser_.reset();
        push_ready(text_response(h, bhttp::status::payload_too_large,
                                 "request body larger than " + std::to_string(limit) + " bytes\n"),
                   false);
        return data.size();
      }
      parser_->body_limit(limit);  // chunked bodies are counted as they come
      // A client waiting for "100 Continue" before its body (curl does for large uploads) gets
      // it at once when no earlier answer is pending, else it sends after its own time-out.
      if (slots_.empty() && !parser_->is_done() &&
          boost::beast::iequals(parser_->get()[bhttp::field::expect], "100-continue")) {
        conn().out() += "HTTP/1.1 100 Continue\r\n\r\n";
        conn().flush();
      }
    }
    if (!parser_->is_done()) {
      if (n == 0) break;
      continue;
    }
    request req = parser_->release();
    parser_.reset();
    bool keep = req.keep_alive();
    if (!keep) done_reading_ = true;
    uint64_t seq = next_seq_++;
    slots_.push_back(slot{seq, std::nullopt, keep});
    net::worker* home = &conn().owner();
    responder done = [l = link_, home, seq](response res) {
      home->run_or_post([l, seq, res = std::move(res)]() mutable {
        if (l->handler) l->handler->complete(seq, std::move(res));
      });
    };
    router_.handle(std::move(req), context(), std::move(done));
  }
  return conn().closing() ? data.size() : used;
}

void http_handler::push_ready(response res, bool keep_alive) {
  uint64_t seq = next_seq_++;
  slots_.push_back(slot{seq, std::nullopt, keep_alive});
  complete(seq, std::move(res));
}

void http_handler::complete(uint64_t seq, response res) {
  if (conn().closed() || slots_.empty() || seq < slots_.front().seq) return;
  size_t i = seq - slots_.front().seq;
  if (i >= slots_.size() || slots_[i].res) return;  // not ours, or answered twice
  slots_[i].res = std::move(res);
  write_ready();
}

void http_handler::write_ready() {
  bool wrote = false;
  while (!slots_.empty() && slots_.front().res && !conn().closing()) {
    slot s = std::move(slots_.front());
    slots_.pop_front();
    s.res->keep_alive(s.keep_alive);
    std::ostringstream os;
    os << *s.res;
    conn().out() += os.str();
    wrote = true;
    if (!s.keep_alive) {
      slots_.clear();
      conn().close_gracefully(std::chrono::seconds(1));
      return;
    }
  }
  if (wrote) conn().flush();
  if (paused_ && slots_.size() < max_in_flight && !conn().closing()) {
    paused_ = false;
    conn().pause_reading(false);
  }
}

void http_handler::on_tick(std::chrono::steady_clock::time_point now) {
  if (parser_ && !done_reading_ && !conn().closing()) {
    // A request is partly in (the parser is made at its first byte and released when it is whole).
    auto limit = parser_->is_header_done() ? deadlines_.request : deadlines_.head;
    if (now - request_started_ > limit) {
      request_header dummy;
      dummy.version(11);
      done_reading_ = true;
      parser_.reset();
      push_ready(text_response(dummy, bhttp::status::request_timeout,
                               "the request was not sent in time\n"),
                 false);
    }
    return;
  }
  if (slots_.empty() && now - last_activity_ > idle_timeout) conn().close_now();
}

}  // namespace warren::http
