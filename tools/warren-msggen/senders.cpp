// HTTP pipelining with Beast's response parser, and AMQP publishing.
#include "warren-msggen/senders.hpp"

#include <boost/asio/write.hpp>

#include <chrono>
#include <cstdio>

namespace warren::msggen {
namespace {

namespace protocol = amqp::protocol;

constexpr size_t read_chunk = 64 * 1024;
constexpr size_t amqp_window_bytes = 1 << 20;  // output queued before an AMQP sender says "full"

uint64_t steady_us() {
  return uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count());
}

}  // namespace

http_sender::http_sender(boost::asio::io_context& io, http_target t, tally& tally,
                         std::function<void()> on_answer)
    : socket_(io), t_(std::move(t)), tally_(tally), on_answer_(std::move(on_answer)) {}

void http_sender::start() {
  socket_.async_connect(t_.server, [self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec) return self->fail("connect: " + ec.message());
    boost::system::error_code ignored;
    self->socket_.set_option(boost::asio::ip::tcp::no_delay(true), ignored);
    self->connected_ = true;
    self->in_.resize(read_chunk);
    self->read();
    self->on_answer_();
  });
}

size_t http_sender::room() const {
  return ready() && sent_at_.size() < t_.pipeline ? t_.pipeline - sent_at_.size() : 0;
}

void http_sender::send(const std::string& target, const std::string& data) {
  std::string path, body;
  if (t_.nchan) {
    path = "/pub/" + target;
    body = data;
  } else if (!t_.room.empty()) {
    path = "/api/rooms/" + target + "/publish";
    body = "{\"data\":" + data + "}";
  } else {
    path = "/api/send";
    body = "{\"user\":\"" + target + "\",\"data\":" + data + "}";
  }
  out_ += "POST " + path + " HTTP/1.1\r\n" + t_.host_header;
  if (!t_.nchan) out_ += t_.authorization;
  out_ += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
          "\r\n\r\n";
  out_ += body;
  sent_at_.push_back(steady_us());
  ++tally_.sent;
  flush();
}

void http_sender::flush() {
  if (writing_now_ || out_.empty() || closed_) return;
  writing_.swap(out_);
  out_.clear();
  writing_now_ = true;
  boost::asio::async_write(socket_, boost::asio::buffer(writing_),
                           [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
                             self->writing_now_ = false;
                             self->writing_.clear();
                             if (self->closed_) return;
                             if (ec) return self->fail("write: " + ec.message());
                             self->flush();
                           });
}

void http_sender::read() {
  if (in_.size() - in_len_ < read_chunk / 4) in_.resize(in_len_ + read_chunk);
  socket_.async_read_some(boost::asio::buffer(in_.data() + in_len_, in_.size() - in_len_),
                          [self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
                            if (self->closed_) return;
                            if (ec)
                              return self->fail(ec == boost::asio::error::eof
                                                    ? "the server closed the connection"
                                                    : "read: " + ec.message());
                            self->on_read(n);
                          });
}

void http_sender::on_read(size_t n) {
  namespace http = boost::beast::http;
  in_len_ += n;
  size_t pos = 0;
  while (pos < in_len_) {
    if (!parser_) {
      parser_.emplace();
      parser_->eager(true);
      parser_->body_limit(1 << 20);
    }
    boost::beast::error_code ec;
    size_t used = parser_->put(boost::asio::buffer(in_.data() + pos, in_len_ - pos), ec);
    pos += used;
    if (ec == http::error::need_more) break;
    if (ec) return fail("bad HTTP response: " + ec.message());
    if (!parser_->is_done()) {
      if (used == 0) break;
      continue;
    }
    const auto& res = parser_->get();
    int status = int(res.result_int());
    ++tally_.answered;
    if (!sent_at_.empty()) {
      tally_.response_us.record(steady_us() - sent_at_.front());
      sent_at_.pop_front();
    }
    if (status / 100 == 2) {
      ++tally_.ok;
      if (t_.nchan) {
        // nchan: 201 when the channel had subscribers, 202 when the message was only stored.
        ++(status == 201 ? tally_.routed : tally_.unroutable);
      } else if (res.body().find("\"routed\":true") != std::string::npos ||
                 res.body().find("\"routed\": true") != std::string::npos) {
        ++tally_.routed;
      } else if (res.body().find("\"routed\"") != std::string::npos) {
        ++tally_.unroutable;
      }
    } else {
      if (tally_.statuses[status]++ < 3)
        std::fprintf(stderr, "warren-msggen: HTTP %d: %.200s\n", status, res.body().c_str());
    }
    parser_.reset();
  }
  if (pos > 0) {
    std::memmove(in_.data(), in_.data() + pos, in_len_ - pos);
    in_len_ -= pos;
  }
  on_answer_();
  read();
}

void http_sender::fail(const std::string& what) {
  if (closed_) return;
  std::fprintf(stderr, "warren-msggen: %s (%zu requests unanswered)\n", what.c_str(),
               sent_at_.size());
  ++tally_.failed_connections;
  close();
}

void http_sender::close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ec;
  socket_.close(ec);
}

amqp_sender::amqp_sender(boost::asio::io_context& io, perf::broker_address addr,
                         perf::client_events events, std::string exchange, tally& tally)
    : client(io, "warren-msggen", std::move(addr), std::move(events)),
      exchange_(std::move(exchange)),
      tally_(tally) {}

size_t amqp_sender::room() const {
  return ready() && out_.size() < amqp_window_bytes ? 1024 : 0;
}

void amqp_sender::send(const std::string& target, const std::string& data) {
  protocol::basic_publish p;
  p.exchange = exchange_;
  p.routing_key = target;
  // A send no inbox takes (an anonymous user, a transient send to nobody) is unroutable: have it
  // returned, and count it.
  p.mandatory = exchange_ == "warren.users";
  protocol::write_method(out_, channel, p);
  protocol::content_header h;
  h.body_size = data.size();
  h.properties.content_type = "application/json";
  protocol::write_content_header_frame(out_, channel, h);
  protocol::write_body_frames(out_, channel, data, frame_max_);
  ++sent_;
  ++tally_.sent;
  flush();
}

void amqp_sender::setup() {
  call(protocol::confirm_select{});
}

void amqp_sender::on_confirm(uint64_t tag, bool multiple, bool ack) {
  // Delivery tags count this connection's publishes from 1, and Warren (like RabbitMQ)
  // confirms them in order: a multiple confirm settles everything above the highest so far.
  uint64_t n = multiple ? (tag > highest_ ? tag - highest_ : 0) : 1;
  highest_ = std::max(highest_, tag);
  if (n == 0) return;
  confirmed_ += n;
  tally_.answered += n;
  if (ack)
    tally_.ok += n;
  else
    tally_.statuses[0] += n;  // nacked
}

}  // namespace warren::msggen
