// The broker's outgoing AMQP 0-9-1 client: one connection with one channel, on Warren's codec
// and Boost.Asio, for federation links and shovels (src/federation/). Asynchronous: it lives on
// one worker's io_context and is touched only there; its events are called there too. It speaks
// PLAIN, negotiates heartbeats (and enforces them both ways), runs synchronous methods in order,
// publishes with confirms, consumes with basic.qos and acks. A channel or connection error from
// the peer, a missed heartbeat or a socket error ends the connection with `closed(error)`; the
// owner reconnects (with its backoff), as RabbitMQ's links do. TLS when the URI is amqps.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "amqp/client/uri.hpp"
#include "amqp/protocol/frame.hpp"
#include "amqp/protocol/frame_buffer.hpp"

namespace boost::asio::ssl {
class context;
}

namespace warren::amqp::client {

namespace protocol = amqp::protocol;

struct delivery {
  std::string consumer_tag;  // empty for a basic.get's message
  uint64_t tag = 0;
  bool redelivered = false;
  std::string exchange;
  std::string routing_key;
  protocol::basic_properties properties;
  std::string body;
};

struct events {
  std::function<void()> ready;  // connection and channel open
  // The connection is gone (after ready or not): the peer's or our error, empty after close().
  // Called once.
  std::function<void(const std::string& error)> closed;
  std::function<void(delivery&&)> delivered;
  // basic.ack / basic.nack from the peer for our publishes (confirm mode).
  std::function<void(uint64_t seq, bool multiple, bool ack)> confirmed;
  // basic.cancel from the peer (its queue went). Unset: the connection ends with an error, as a
  // federation link wants.
  std::function<void(const std::string& consumer_tag)> cancelled;
};

// The peer's channel or connection error in a `closed` event's text ("channel closed by the
// peer: 406 PRECONDITION_FAILED - text"): its code (400 and above) and text, or nullopt when the
// connection ended otherwise (a socket error, a 320, a close of ours).
struct peer_close {
  uint16_t code = 0;
  std::string text;
};
std::optional<peer_close> peer_error(const std::string& why);

class connection : public std::enable_shared_from_this<connection> {
 public:
  using reply = std::function<void(const protocol::method&)>;

  connection(boost::asio::io_context& io, uri u, std::string name, events ev);
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  void start();
  // connection.close; the socket goes at close-ok or after 3 s. `closed("")` follows.
  void close();
  bool open() const { return state_ == state::open; }

  // A synchronous method on the channel; `on_ok` gets its -ok (replies come in request order).
  template <typename M>
  void call(const M& m, reply on_ok = nullptr) {
    protocol::write_method(out_, channel, m);
    pending_.push_back(std::move(on_ok));
    flush();
  }
  // confirm.select: from now on every publish has a sequence number (from 1).
  void confirm_select(reply on_ok);
  // Returns the publish's sequence number in confirm mode, else 0.
  uint64_t publish(const std::string& exchange, const std::string& routing_key,
                   const protocol::basic_properties& props, std::string_view body);
  // The same, with the properties already encoded (a content header's property flags and list).
  uint64_t publish_encoded(std::string_view exchange, std::string_view routing_key,
                           std::string_view encoded_properties, std::string_view body);
  // basic.get: `done` gets the message, or nullopt for get-empty, and the message count.
  void get(const protocol::basic_get& g,
           std::function<void(std::optional<delivery>, uint32_t message_count)> done);
  void ack(uint64_t tag, bool multiple);
  void nack(uint64_t tag, bool multiple, bool requeue);

  // Of connection.start: cluster_name and the like.
  const protocol::field_table& server_properties() const { return server_properties_; }
  // Bytes waiting to be written: a producer stops feeding above a mark.
  size_t backlog() const { return out_.size() + writing_.size(); }
  const uri& where() const { return uri_; }

 private:
  static constexpr uint16_t channel = 1;
  enum class state { connecting, handshake, open, closing, closed };

  void on_connected();
  void read();
  void on_read(size_t n);
  void handle_frame(const protocol::frame_view& f);
  void handle_method(uint16_t ch, protocol::method&& m);
  void flush();
  void fail(const std::string& error);
  void shut();
  void arm_heartbeat();

  uri uri_;
  std::string name_;
  events events_;
  boost::asio::ip::tcp::resolver resolver_;
  boost::asio::ip::tcp::socket socket_;
  struct tls_stream;
  std::shared_ptr<boost::asio::ssl::context> tls_context_;
  std::unique_ptr<tls_stream> tls_;
  boost::asio::steady_timer timer_;  // heartbeats and the close time-out
  state state_ = state::connecting;
  bool reported_ = false;

  protocol::frame_buffer in_;  // received bytes, cut into frames
  std::string out_;
  std::string writing_;
  bool writing_now_ = false;
  std::deque<reply> pending_;
  uint32_t frame_max_ = 131072;
  uint16_t heartbeat_ = 0;  // seconds, negotiated
  std::chrono::steady_clock::time_point last_read_, last_write_;
  protocol::field_table server_properties_;
  bool confirming_ = false;
  uint64_t next_seq_ = 1;

  // The content after a basic.deliver (or a basic.return, dropped).
  bool in_content_ = false;
  bool content_is_delivery_ = false;
  bool content_is_get_ = false;
  uint32_t get_count_ = 0;
  std::deque<std::function<void(std::optional<delivery>, uint32_t)>> gets_;
  uint64_t content_left_ = 0;
  delivery current_;
};

}  // namespace warren::amqp::client
