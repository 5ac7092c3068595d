// Stream connection mechanics (TCP or Unix). Reads wait for readability and then read into the
// worker's shared buffer, so an idle connection owns no read buffer; writes are gather writes
// from the output queue, tried at once and again when the socket is writable once it was full.
#include "net/connection.hpp"

#include <boost/asio/post.hpp>

#include <algorithm>
#include <array>
#include <cstring>

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include "net/tls.hpp"
#include "net/worker.hpp"

namespace warren::net {

namespace {
// Bytes read per readiness event before yielding to other connections on the worker.
constexpr size_t read_budget = 64 * 1024;
// A read once the worker's turn budget is spent: a publish of a few KB still gets in.
constexpr size_t small_read = 4 * 1024;
// Output up to this size is written whole whatever is left of the worker's turn budget.
constexpr size_t small_output = 64 * 1024;
// Buffers above this capacity are released once empty, so a burst does not pin memory.
constexpr size_t keep_capacity = 4096;

void release_if_large(std::string& s) {
  if (s.empty() && s.capacity() > keep_capacity) std::string().swap(s);
}

// A generic endpoint of an IP socket as a TCP endpoint, an IPv4 client of a dual-stack listener
// (::ffff:a.b.c.d) as the IPv4 address it is, so that addresses read the same whichever socket
// accepted them (loopback rules, per-address limits, the management API).
boost::asio::ip::tcp::endpoint ip_endpoint(const connection::socket_type::endpoint_type& generic) {
  boost::asio::ip::tcp::endpoint ep;
  if (generic.size() > sizeof(sockaddr_storage)) return ep;
  std::memcpy(ep.data(), generic.data(), generic.size());
  ep.resize(generic.size());
  auto a = ep.address();
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    ep.address(boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6()));
  return ep;
}
}  // namespace

std::string host_port(const boost::asio::ip::address& a, uint16_t port) {
  std::string s = a.is_v6() ? "[" + a.to_string() + "]" : a.to_string();
  s += ':';
  s += std::to_string(port);
  return s;
}

void connection_handler::on_shutdown() {
  conn().close_gracefully(std::chrono::seconds(1));
}

connection::connection(worker& owner, socket_type socket)
    : owner_(owner), socket_(std::move(socket)) {
  boost::system::error_code ec;
  int family = socket_.is_open() ? socket_.local_endpoint(ec).protocol().family() : AF_UNSPEC;
  unix_socket_ = family == AF_UNIX;
  if (family == AF_INET || family == AF_INET6) {
    // The generic endpoint holds a sockaddr_in or sockaddr_in6: read it as a TCP endpoint.
    auto generic = socket_.remote_endpoint(ec);
    if (!ec) {
      auto ep = ip_endpoint(generic);
      peer_address_ = ep.address();
      peer_port_ = ep.port();
    }
    socket_.set_option(boost::asio::ip::tcp::no_delay(true), ec);
  }
  socket_.non_blocking(true, ec);
}

connection::~connection() = default;

boost::asio::ip::tcp::endpoint connection::local_endpoint() const {
  if (unix_socket_) return {};
  boost::system::error_code ec;
  auto generic = socket_.local_endpoint(ec);
  if (ec) return {};
  return ip_endpoint(generic);
}

void connection::start(std::unique_ptr<connection_handler> handler) {
  handler_ = std::move(handler);
  handler_->conn_ = this;
  owner_.adopt(shared_from_this());
  arm_read();
}

void connection::arm_read() {
  if (read_armed_ || state_ == state::closed) return;
  if (state_ == state::open && (paused_by_handler_ || paused_by_writes_)) return;
  read_armed_ = true;
  socket_.async_wait(socket_type::wait_read,
                     [self = shared_from_this()](const boost::system::error_code& ec) {
                       self->read_armed_ = false;
                       if (ec || self->state_ == state::closed) return;
                       self->on_readable();
                     });
}

void connection::on_readable() {
  if (tls_) [[unlikely]] {
    on_readable_tls();
    return;
  }
  auto buf = owner_.read_buffer();
  size_t total = 0;
  while (state_ != state::closed) {
    if (state_ == state::open && (paused_by_handler_ || paused_by_writes_)) break;
    // The worker's read budget for this turn spent: one small read still, then yield, so a small
    // publish gets in at once while a publisher of large messages takes a small step.
    size_t want = buf.size();
    if (owner_.read_budget() < want) {
      if (total > 0) {
        yield_reading();
        return;
      }
      want = std::max(owner_.read_budget(), small_read);
    }
    boost::system::error_code ec;
    size_t n = socket_.read_some(boost::asio::buffer(buf.data(), want), ec);
    if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) {
      ++empty_reads_;
      break;
    }
    if (ec || n == 0) {  // EOF or error: the peer is gone
      close_now();
      return;
    }
    if (state_ == state::lingering) continue;  // discard input while closing
    ++read_calls_;
    bytes_received_ += n;
    owner_.spend_read_budget(n);
    deliver(buf.subspan(0, n));
    total += n;
    if (total >= read_budget) {
      yield_reading();
      return;
    }
    // A short read took everything the socket held: another read would only say EAGAIN, a
    // system call that costs as much as a small read. Bytes arriving from now on make the
    // socket readable again, and this thread's next epoll_wait, after the wait armed below,
    // reports it (Asio's reactor registers sockets edge-triggered, and only this thread waits
    // on them).
    if (n < want) break;
  }
  flush();
  arm_read();
}

void connection::yield_reading() {
  // Come back through the loop, after the other connections' turn.
  if (state_ == state::open) {
    read_armed_ = true;
    boost::asio::post(owner_.io(), [self = shared_from_this()] {
      self->read_armed_ = false;
      if (self->state_ != state::closed) self->on_readable();
    });
  }
  flush();
}

void connection::deliver(std::span<const uint8_t> bytes) {
  if (pending_.empty()) {
    size_t used = handler_->on_data(bytes);
    if (state_ == state::open && used < bytes.size())
      pending_.assign(reinterpret_cast<const char*>(bytes.data()) + used, bytes.size() - used);
    return;
  }
  pending_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  size_t used = handler_->on_data(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(pending_.data()), pending_.size()));
  if (state_ != state::open) return;
  pending_.erase(0, used);
  release_if_large(pending_);
}

void connection::flush() {
  if (writing_ || out_.empty() || state_ == state::closed) return;
  if (tls_) [[unlikely]] {
    flush_tls();
    return;
  }
  // Gather writes straight from the queue: encoded frames and shared bodies go to the kernel
  // without being copied into a buffer of ours first. At most write_quantum per flush, and a
  // large output only within what is left of the worker's budget for this turn; a small one
  // goes out whole whatever is left: it is what a latency is made of, and costs little.
  const bool small = out_.size() <= small_output;
  size_t written = 0;
  while (!out_.empty()) {
    size_t allowed = small ? out_.size() : std::min(write_quantum - written, owner_.write_budget());
    if (allowed == 0) {
      update_read_state();
      flush_soon();  // the rest after the other connections' turn
      return;
    }
    // 64 is what Asio passes to one sendmsg (its buffer_sequence_adapter's max_buffers).
    std::array<boost::asio::const_buffer, 64> iov;
    size_t k = out_.gather(iov.data(), iov.size(), allowed);
    boost::system::error_code ec;
    ++write_calls_;
    size_t n = socket_.write_some(std::span<const boost::asio::const_buffer>(iov.data(), k), ec);
    if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) break;
    if (ec) {
      close_now();
      return;
    }
    bytes_sent_ += n;
    written += n;
    owner_.spend_write_budget(n);
    out_.consume(n);
  }
  if (out_.empty()) {
    out_.release_if_large();
    after_drain();
    return;
  }
  // The socket buffer is full: wait until it takes more. New output queues behind.
  writing_ = true;
  update_read_state();
  arm_write_wait();
}

void connection::arm_write_wait() {
  socket_.async_wait(socket_type::wait_write,
                     [self = shared_from_this()](const boost::system::error_code& ec) {
                       self->writing_ = false;
                       if (self->state_ == state::closed) return;
                       if (ec) {
                         self->close_now();
                         return;
                       }
                       self->flush();
                     });
}

void connection::flush_soon() {
  if (flush_scheduled_ || state_ == state::closed) return;
  flush_scheduled_ = true;
  owner_.schedule_flush(shared_from_this());
}

void connection::after_drain() {
  if (state_ == state::lingering && half_close_) {
    if (tls_) [[unlikely]]
      send_close_notify();
    boost::system::error_code ec;
    socket_.shutdown(socket_type::shutdown_send, ec);
  }
  update_read_state();
  if (state_ == state::open && handler_) handler_->on_output_drained();
}

void connection::update_read_state() {
  bool over = queued_bytes() > write_high_watermark;
  if (over != paused_by_writes_) {
    paused_by_writes_ = over;
    if (!over) pause_reading(paused_by_handler_);
  }
}

void connection::pause_reading(bool paused) {
  paused_by_handler_ = paused;
  if (paused || state_ != state::open) return;
  if (!paused_by_writes_ && !pending_.empty()) {
    // Offer what is already buffered before reading more.
    boost::asio::post(owner_.io(), [self = shared_from_this()] {
      if (self->state_ != state::open || self->paused_by_handler_ || self->paused_by_writes_)
        return;
      std::string again;
      again.swap(self->pending_);
      self->deliver(
          std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(again.data()), again.size()));
      self->flush();
      if (self->tls_)
        self->on_readable();  // OpenSSL may hold a record already read from the socket
      else
        self->arm_read();
    });
    return;
  }
  if (tls_ && tls_has_pending()) [[unlikely]] {
    // Bytes OpenSSL already took from the socket would not make it readable again.
    boost::asio::post(owner_.io(), [self = shared_from_this()] {
      if (self->state_ == state::open && !self->paused_by_handler_ && !self->paused_by_writes_)
        self->on_readable();
    });
    return;
  }
  arm_read();
}

void connection::close_gracefully(std::chrono::milliseconds linger_for) {
  linger(linger_for, true);
}

void connection::await_peer_close(std::chrono::milliseconds deadline) {
  linger(deadline, false);
}

void connection::linger(std::chrono::milliseconds deadline, bool half_close) {
  if (state_ != state::open) return;
  state_ = state::lingering;
  half_close_ = half_close;
  linger_deadline_ = std::chrono::steady_clock::now() + deadline;
  std::string().swap(pending_);
  if (!writing_ && out_.empty())
    after_drain();
  else
    flush();
  arm_read();  // keep reading (and discarding) so the peer's last bytes do not turn into a reset
}

void connection::close_now() {
  if (state_ == state::closed) return;
  auto self = shared_from_this();
  state_ = state::closed;
  boost::system::error_code ec;
  socket_.close(ec);
  std::string().swap(pending_);
  out_.clear();
  owner_.release(this);
  if (handler_) handler_->on_closed();
}

void connection::tick(std::chrono::steady_clock::time_point now) {
  // Nothing written since the last tick and nothing queued: the output's small buffer (kept
  // between writes so that a busy connection does not allocate per message) goes back, so an
  // idle connection holds no output buffer (the 480-byte connection.start's, for one).
  if (sent_at_last_tick_ == bytes_sent_ && !writing_) out_.release_all();
  sent_at_last_tick_ = bytes_sent_;
  if (state_ == state::lingering) {
    if (now >= linger_deadline_) close_now();
    return;
  }
  if (state_ == state::open && handler_) handler_->on_tick(now);
}

}  // namespace warren::net
