// A stream connection (TCP, or a Unix socket such as the control socket) owned by one worker:
// non-blocking reads into the worker's shared buffer, a write queue with backpressure, graceful
// and immediate close, and optionally TLS (net/tls.hpp) under all of it. Protocols plug in as a
// connection_handler and see plaintext; this file knows no protocol.
#pragma once

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <list>
#include <memory>
#include <span>
#include <string>

#include "net/output_queue.hpp"

namespace warren::net {

class worker;
class connection;
class tls_context;
class tls_session;

// "a.b.c.d:port", or "[v6]:port" for an IPv6 address (as RabbitMQ writes them in names and logs).
std::string host_port(const boost::asio::ip::address& a, uint16_t port);

// Implemented by each protocol (AMQP, HTTP). Owned by its connection; every call is made on the
// owning worker's thread.
class connection_handler {
 public:
  virtual ~connection_handler() = default;
  // Bytes arrived. Returns how many it consumed; the rest is kept and offered again, in front of
  // the next bytes (a partial frame).
  virtual size_t on_data(std::span<const uint8_t> data) = 0;
  // About every worker::tick_interval while open (heartbeats, time-outs).
  virtual void on_tick(std::chrono::steady_clock::time_point /*now*/) {}
  // The broker is shutting down: say goodbye in the protocol's words and close.
  virtual void on_shutdown();
  // Everything queued for the peer has been handed to the kernel.
  virtual void on_output_drained() {}
  // The socket is closed; no further calls follow.
  virtual void on_closed() {}

  connection& conn() { return *conn_; }

 private:
  friend class connection;
  connection* conn_ = nullptr;
};

class connection : public std::enable_shared_from_this<connection> {
 public:
  // Writes queued beyond this stop reads from the peer until they drain: a peer that does not
  // read cannot make us buffer without bound.
  static constexpr size_t write_high_watermark = 4 * 1024 * 1024;
  // Bytes one flush hands to the kernel before the connection goes to the back of its worker's
  // flush queue: a connection with megabytes to write does not hold the loop while others (a
  // small confirm, a small delivery) wait behind it.
  static constexpr size_t write_quantum = 256 * 1024;

  // The socket type is Asio's generic stream socket, so one connection class serves TCP and
  // Unix sockets alike: the same system calls, no virtual dispatch on the hot path.
  using socket_type = boost::asio::generic::stream_protocol::socket;

  // A TCP socket converts to socket_type (connection::socket_type(std::move(tcp_socket))).
  connection(worker& owner, socket_type socket);
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection();

  // Before start(): the connection speaks TLS as the server, with `ctx`'s certificate; the
  // handshake runs on the first reads, and the handler sees only plaintext. False if OpenSSL
  // could not make a session (logged): drop the connection.
  bool use_tls(std::shared_ptr<const tls_context> ctx);
  // Adopts the connection into its worker and starts reading.
  void start(std::unique_ptr<connection_handler> handler);

  // Append bytes to out() and call flush() once per batch.
  std::string& out() { return out_.text(); }
  // Puts `data` on the output after what out() holds now, without copying it: `keep` holds it
  // alive until written (a message body shared by many consumers). Then out() continues after it.
  void append_shared(std::shared_ptr<const void> keep, std::string_view data) {
    out_.append_shared(std::move(keep), data);
  }
  void flush();
  // Flushes after the worker finishes what it is running now: output produced by a batch of
  // mailbox tasks (deliveries from other workers) goes out in one write. The worker flushes its
  // scheduled connections a slice at a time (worker::run_flushes), so output added before a
  // connection's turn joins the same write.
  void flush_soon();
  // Output not yet written, shared slices included.
  size_t queued_bytes() const { return out_.size(); }
  // Writes handed to the kernel so far (each write system call or SSL_write): output per write.
  uint64_t write_calls() const { return write_calls_; }
  // Traffic so far, for the management API.
  uint64_t bytes_received() const { return bytes_received_; }
  uint64_t bytes_sent() const { return bytes_sent_; }
  uint64_t read_calls() const { return read_calls_; }
  // Reads that found the socket empty (EAGAIN): a wake-up that brought nothing. A read that comes
  // back short ends the loop, so these are rare (on_readable).
  uint64_t empty_reads() const { return empty_reads_; }
  // This end's address and port (unspecified if the socket has none).
  boost::asio::ip::tcp::endpoint local_endpoint() const;
  // Memory the connection's buffers hold, used or not (released once a burst has drained).
  size_t buffer_capacity() const { return out_.capacity() + pending_.capacity(); }

  // Sends what is queued, then half-closes and discards input until the peer closes or `linger_for`
  // passes. The handler gets no more data.
  void close_gracefully(std::chrono::milliseconds linger_for = std::chrono::seconds(3));
  // Sends what is queued and discards input until the peer closes or `deadline` passes, without
  // half-closing: for a protocol whose peer is expected to close first (AMQP after a client's
  // connection.close), where our end of stream arriving before the peer is done reads as an error.
  void await_peer_close(std::chrono::milliseconds deadline);
  // Closes at once; queued output is dropped.
  void close_now();
  bool closed() const { return state_ == state::closed; }
  bool closing() const { return state_ != state::open; }

  // Stops or resumes reading from the peer (flow control). Bytes already received but not
  // consumed are offered again on resume.
  void pause_reading(bool paused);

  // The peer's IP address and port; for a Unix socket, the unspecified address and 0.
  const boost::asio::ip::address& peer_address() const { return peer_address_; }
  uint16_t peer_port() const { return peer_port_; }
  // True for a Unix stream socket (the peer is a process on this machine).
  bool unix_socket() const { return unix_socket_; }
  // The TLS session (protocol, cipher, peer certificate), or nullptr on a plain connection.
  const tls_session* tls() const { return tls_.get(); }
  worker& owner() { return owner_; }
  connection_handler* handler() { return handler_.get(); }

  // Called by the worker's tick.
  void tick(std::chrono::steady_clock::time_point now);

 private:
  friend class worker;
  enum class state : uint8_t { open, lingering, closed };

  void arm_read();
  void on_readable();
  void yield_reading();
  void deliver(std::span<const uint8_t> bytes);
  void arm_write_wait();
  void after_drain();
  void update_read_state();
  void linger(std::chrono::milliseconds deadline, bool half_close);
  // TLS (connection_tls.cpp): the same steps through OpenSSL. The plain path pays one test of
  // tls_ per readiness event and per flush, no virtual call.
  void on_readable_tls();
  void flush_tls();
  void arm_tls_write_wait();
  void on_tls_writable();
  void discard_input_tls();
  void send_close_notify();
  bool tls_has_pending() const;

  worker& owner_;
  socket_type socket_;
  std::unique_ptr<connection_handler> handler_;
  std::unique_ptr<tls_session> tls_;  // null: plain
  std::string pending_;  // received bytes the handler has not consumed yet (partial frame)
  output_queue out_;     // queued for writing
  std::list<std::shared_ptr<connection>>::iterator worker_slot_;
  std::chrono::steady_clock::time_point linger_deadline_;
  boost::asio::ip::address peer_address_;
  uint16_t peer_port_ = 0;
  uint64_t write_calls_ = 0;
  uint64_t read_calls_ = 0;
  uint64_t empty_reads_ = 0;
  uint64_t bytes_received_ = 0;
  uint64_t bytes_sent_ = 0;
  uint64_t sent_at_last_tick_ = 0;  // bytes_sent_ at the previous tick: idle since?
  state state_ = state::open;
  bool unix_socket_ = false;
  bool writing_ = false;  // waiting for the socket (or OpenSSL) to take more
  bool flush_scheduled_ = false;
  bool read_armed_ = false;
  bool paused_by_handler_ = false;
  bool paused_by_writes_ = false;
  bool half_close_ = false;  // lingering: shut down our sending side once the output is out
};

}  // namespace warren::net
