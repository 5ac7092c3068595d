// An asynchronous AMQP 0-9-1 client connection with one channel, built on Warren's codec, for the
// load generator. Each instance lives on one I/O thread (one io_context) and is touched only there;
// roles (producer, consumer, setup) derive from it and react to its hooks.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "amqp/protocol/frame.hpp"
#include "amqp/protocol/frame_buffer.hpp"

namespace boost::asio::ssl {
class context;
}
#include "warren-perf/stats.hpp"

namespace warren::perf {

namespace protocol = amqp::protocol;

struct broker_address {
  std::string host = "127.0.0.1";
  uint16_t port = 5672;
  std::string user = "guest";
  std::string password = "guest";
  std::string vhost = "/";
  // AMQPS when set (amqps:// URIs, --tls): shared by every client of the run.
  std::shared_ptr<boost::asio::ssl::context> tls;
};

// Reported once per client, from its I/O thread, when it is ready, fails or has closed.
struct client_events {
  std::function<void()> ready;
  std::function<void(const std::string& who, const std::string& error)> failed;
  std::function<void()> closed;
};

class client : public std::enable_shared_from_this<client> {
 public:
  static constexpr uint16_t channel = 1;

  client(boost::asio::io_context& io, std::string name, broker_address addr, client_events events);
  client(const client&) = delete;
  client& operator=(const client&) = delete;
  virtual ~client();

  // I/O thread: connects, does the handshake, opens channel 1, then sends the role's setup methods
  // (all pipelined) and reports ready once every one of them has its -ok.
  void start();
  // I/O thread: connection.close, then the socket closes on close-ok (or after a time-out).
  void close();
  const std::string& name() const { return name_; }
  boost::asio::io_context& io() { return io_; }
  counters& stats() { return stats_; }
  bool failed() const { return failed_.load(std::memory_order_relaxed); }

 protected:
  using reply_handler = std::function<void(const protocol::method&)>;

  // Methods the role sends after channel.open and waits for (queue.declare, basic.qos, ...).
  virtual void setup() {}
  // Role hooks, all on the I/O thread.
  virtual void on_ready() {}
  virtual void on_write_done() {}
  virtual void on_blocked(bool /*blocked*/) {}
  virtual void on_confirm(uint64_t /*tag*/, bool /*multiple*/, bool /*ack*/) {}
  // basic.deliver, then its body: first_bytes holds up to the first 8 body bytes.
  virtual void on_delivery(uint64_t /*tag*/, std::span<const uint8_t> /*first_bytes*/) {}
  // The broker cancelled our consumer (basic.cancel), e.g. because its queue was deleted.
  virtual void on_cancelled() { fail("the broker cancelled the consumer"); }

  // Sends a synchronous method; `on_reply` gets its -ok. Replies arrive in request order.
  template <typename M>
  void call(const M& m, reply_handler on_reply = nullptr) {
    protocol::write_method(out_, channel, m);
    pending_.push_back(std::move(on_reply));
    flush();
  }
  template <typename M>
  void send(const M& m) {
    protocol::write_method(out_, channel, m);
  }
  // Starts a write of everything in out_ unless one is in flight (it is then sent when that ends).
  void flush();
  void fail(const std::string& error);

  boost::asio::io_context& io_;
  std::string out_;  // frames waiting for the next write
  uint32_t frame_max_ = 131072;
  counters stats_;

 private:
  enum class state { connecting, handshake, setup, running, closing, closed };
  enum class content_kind { none, delivery, ignored };

  void on_connected();
  void begin_handshake();
  void read();
  void on_read(size_t n);
  void handle_frame(const protocol::frame_view& f);
  void handle_method(uint16_t ch, const protocol::method& m);
  void handle_body(std::span<const uint8_t> payload);
  void reply_arrived(const protocol::method& m);
  void shut_socket();

  std::string name_;
  broker_address addr_;
  client_events events_;
  boost::asio::ip::tcp::socket socket_;
  struct tls_stream;
  std::unique_ptr<tls_stream> tls_;  // over socket_, with addr_.tls
  boost::asio::ip::tcp::resolver resolver_;
  boost::asio::steady_timer close_timer_;
  state state_ = state::connecting;
  std::atomic<bool> failed_{false};  // also read by the main thread
  bool closed_reported_ = false;

  protocol::frame_buffer in_;  // received bytes, cut into frames
  std::string writing_;        // the buffer async_write is sending
  bool write_in_flight_ = false;
  std::deque<reply_handler> pending_;

  // The content (header + body frames) that follows a basic.deliver or basic.return.
  content_kind content_ = content_kind::none;
  uint64_t content_left_ = 0;
  uint64_t delivery_tag_ = 0;
  uint8_t first_bytes_[8] = {};
  size_t first_len_ = 0;
};

}  // namespace warren::perf
