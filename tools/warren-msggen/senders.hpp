// The two ways warren-msggen sends: HTTP requests pipelined on keep-alive connections, and AMQP
// publishes (warren-perf's client). Both live on the generator's one thread and report into the
// shared tally.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "warren-perf/client.hpp"
#include "warren-perf/stats.hpp"

namespace warren::msggen {

struct tally {
  uint64_t sent = 0;
  uint64_t answered = 0;    // HTTP responses; AMQP publisher confirms
  uint64_t ok = 0;          // 2xx
  uint64_t routed = 0;      // {"routed": true}; nchan: 201 (it had subscribers)
  uint64_t unroutable = 0;  // {"routed": false}; nchan: 202; AMQP: basic.return
  uint64_t failed_connections = 0;
  std::map<int, uint64_t> statuses;  // non-2xx answers
  perf::latency_histogram response_us;  // request written -> response read, HTTP only
};

// What every sender offers the generator.
class sender {
 public:
  virtual ~sender() = default;
  virtual void start() = 0;
  virtual bool ready() const = 0;
  // Messages it can take now without queueing past its window.
  virtual size_t room() const = 0;
  // target: a user id or a room name; data: the message's JSON data.
  virtual void send(const std::string& target, const std::string& data) = 0;
  // Requests sent and not answered (HTTP), publishes not confirmed (AMQP).
  virtual size_t in_flight() const = 0;
  virtual void close() = 0;
};

struct http_target {
  boost::asio::ip::tcp::endpoint server;
  std::string host_header;
  std::string authorization;  // "Basic ..."
  bool nchan = false;
  std::string room;  // non-empty: room publishes
  size_t pipeline = 16;
};

class http_sender : public sender, public std::enable_shared_from_this<http_sender> {
 public:
  http_sender(boost::asio::io_context& io, http_target t, tally& tally,
              std::function<void()> on_answer);
  void start() override;
  bool ready() const override { return connected_ && !closed_; }
  size_t room() const override;
  void send(const std::string& target, const std::string& data) override;
  size_t in_flight() const override { return sent_at_.size(); }
  void close() override;

 private:
  void flush();
  void read();
  void on_read(size_t n);
  void fail(const std::string& what);

  boost::asio::ip::tcp::socket socket_;
  http_target t_;
  tally& tally_;
  std::function<void()> on_answer_;
  std::string out_, writing_;
  std::string in_;
  size_t in_len_ = 0;
  std::optional<boost::beast::http::response_parser<boost::beast::http::string_body>> parser_;
  std::deque<uint64_t> sent_at_;  // steady microseconds of the requests in flight
  bool connected_ = false, closed_ = false, writing_now_ = false;
};

class amqp_sender : public perf::client, public sender {
 public:
  amqp_sender(boost::asio::io_context& io, perf::broker_address addr, perf::client_events events,
              std::string exchange, tally& tally);
  void start() override { client::start(); }
  bool ready() const override { return ready_ && !failed(); }
  size_t room() const override;
  void send(const std::string& target, const std::string& data) override;
  // Publishes not confirmed yet: the run ends once the broker has taken every message.
  size_t in_flight() const override { return size_t(sent_ - confirmed_); }
  void close() override { client::close(); }

 protected:
  void setup() override;
  void on_ready() override { ready_ = true; }
  void on_confirm(uint64_t tag, bool multiple, bool ack) override;

 private:
  std::string exchange_;
  tally& tally_;
  uint64_t sent_ = 0;       // publishes on this connection: the last delivery tag
  uint64_t confirmed_ = 0;  // of which settled (acks and nacks)
  uint64_t highest_ = 0;    // the highest tag settled
  bool ready_ = false;
};

}  // namespace warren::msggen
