// A connection's TLS path: the handshake, reads and writes through OpenSSL on the connection's
// own non-blocking socket, driven by the same readiness waits as the plain path. OpenSSL reads
// and writes the descriptor itself, so there is no ciphertext buffer of ours: decrypted bytes go
// to the worker's shared read buffer as plain ones do, output is encrypted straight from out_.
//
//   OpenSSL says          on a read (or handshake)          on a write
//   WANT_READ             wait for readability              wait for readability, then retry
//   WANT_WRITE            wait for writability, then read   wait for writability, then retry
//   ZERO_RETURN, SYSCALL  the peer is gone: close           close
//   SSL (bad record...)   log, close                        log, close
//
// A write that waits is retried with the same length (OpenSSL's rule); output added meanwhile
// waits behind it in out_, whose text may move (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER). Output is
// written piece by piece from the output queue (net/output_queue.hpp), shared bodies included.
#include <boost/asio/post.hpp>

#include <algorithm>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <spdlog/spdlog.h>

#include "net/connection.hpp"
#include "net/tls.hpp"
#include "net/worker.hpp"

namespace warren::net {

namespace {
// As the plain path (connection.cpp): per readiness event, then yield to other connections; one
// small step once the worker's budget for the turn is spent; a small output is written whole.
constexpr size_t read_budget = 64 * 1024;
constexpr size_t small_read = 4 * 1024;
constexpr size_t small_output = 64 * 1024;
}  // namespace

bool connection::use_tls(std::shared_ptr<const tls_context> ctx) {
  try {
    tls_ = std::make_unique<tls_session>(std::move(ctx), socket_.native_handle());
    return true;
  } catch (const std::exception& e) {
    spdlog::error("{}:{}: {}", peer_address_.to_string(), peer_port_, e.what());
    return false;
  }
}

bool connection::tls_has_pending() const {
  return SSL_has_pending(tls_->native()) == 1;
}

void connection::on_readable_tls() {
  tls_session& t = *tls_;
  SSL* ssl = t.native();
  // SSL_get_error reads this thread's error queue: nothing else's errors may linger in it.
  ERR_clear_error();
  if (!t.established_) {
    // Also while lingering: an early refusal queued before the handshake (429 from the gateway)
    // still goes out once it is done.
    int r = SSL_do_handshake(ssl);
    if (r != 1) {
      int e = SSL_get_error(ssl, r);
      if (e == SSL_ERROR_WANT_READ) {
        arm_read();
      } else if (e == SSL_ERROR_WANT_WRITE) {
        t.read_wants_write_ = true;
        arm_tls_write_wait();
      } else {
        // Not TLS at all (plain AMQP or HTTP on this port), a version or cipher we refuse, a
        // client certificate that does not verify: worth a line in the log. A peer that went
        // away mid-handshake (a port probe, a health check) only at debug level.
        if (e == SSL_ERROR_SSL)
          spdlog::info("TLS handshake with {}:{} failed: {}", peer_address_.to_string(), peer_port_,
                       tls_error_text());
        else
          spdlog::debug("TLS handshake with {}:{}: the peer went away", peer_address_.to_string(),
                        peer_port_);
        ERR_clear_error();
        close_now();
      }
      return;
    }
    t.established_ = true;
    note_handshake_done();
    if (!out_.empty()) flush();  // written before the handshake ended
    if (state_ == state::closed) return;
  }
  if (state_ == state::lingering) {
    discard_input_tls();
    return;
  }
  auto buf = owner_.read_buffer();
  size_t total = 0;
  while (state_ == state::open && !paused_by_handler_ && !paused_by_writes_) {
    size_t want = buf.size();
    if (owner_.read_budget() < want) {
      if (total > 0) {
        yield_reading();  // OpenSSL may hold decrypted bytes: come back without waiting
        return;
      }
      want = std::max(owner_.read_budget(), small_read);
    }
    size_t n = 0;
    if (SSL_read_ex(ssl, buf.data(), want, &n) != 1) {
      int e = SSL_get_error(ssl, 0);
      if (e == SSL_ERROR_WANT_READ) break;
      if (e == SSL_ERROR_WANT_WRITE) {
        t.read_wants_write_ = true;
        arm_tls_write_wait();
        flush();
        return;
      }
      // close_notify, EOF, a reset, or a record that does not decrypt: the stream is over.
      if (e == SSL_ERROR_SSL)
        spdlog::debug("TLS read from {}:{}: {}", peer_address_.to_string(), peer_port_,
                      tls_error_text());
      ERR_clear_error();
      close_now();
      return;
    }
    ++read_calls_;
    bytes_received_ += n;
    owner_.spend_read_budget(n);
    deliver(buf.subspan(0, n));
    total += n;
    if (total >= read_budget) {
      yield_reading();
      return;
    }
  }
  if (t.write_wants_read_ && writing_) {
    t.write_wants_read_ = false;
    writing_ = false;
  }
  flush();
  arm_read();
}

void connection::discard_input_tls() {
  // After close_notify the peer's last bytes do not matter: read them raw, as the plain path.
  auto buf = owner_.read_buffer();
  for (;;) {
    boost::system::error_code ec;
    size_t n = socket_.read_some(boost::asio::buffer(buf.data(), buf.size()), ec);
    if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) break;
    if (ec || n == 0) {
      close_now();
      return;
    }
  }
  arm_read();
}

void connection::flush_tls() {
  tls_session& t = *tls_;
  if (!t.established_) return;  // the handshake flushes when it ends
  SSL* ssl = t.native();
  ERR_clear_error();
  // One SSL_write per contiguous piece of the output (encoded text, or a slice of a shared body):
  // OpenSSL has no gather write. The piece at the front only grows (text appended) until written.
  // A retried SSL_write must be retried whatever the budget (OpenSSL expects the same write).
  const bool small = out_.size() <= small_output;
  size_t written = 0;
  while (!out_.empty()) {
    if (!t.write_len_ && !small && (written >= write_quantum || owner_.write_budget() == 0)) {
      update_read_state();
      flush_soon();  // the rest after the other connections' turn, as the plain path
      return;
    }
    boost::asio::const_buffer front;
    out_.gather(&front, 1, SIZE_MAX);
    size_t len = t.write_len_ ? t.write_len_ : std::min(front.size(), write_quantum);
    size_t n = 0;
    ++write_calls_;
    if (SSL_write_ex(ssl, front.data(), len, &n) == 1) {
      t.write_len_ = 0;
      bytes_sent_ += n;
      written += n;
      owner_.spend_write_budget(n);
      out_.consume(n);
      continue;
    }
    int e = SSL_get_error(ssl, 0);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
      t.write_len_ = len;
      writing_ = true;
      update_read_state();
      if (e == SSL_ERROR_WANT_WRITE) {
        arm_tls_write_wait();
      } else {
        t.write_wants_read_ = true;
        arm_read();
      }
      return;
    }
    if (e == SSL_ERROR_SSL)
      spdlog::debug("TLS write to {}:{}: {}", peer_address_.to_string(), peer_port_,
                    tls_error_text());
    ERR_clear_error();
    close_now();
    return;
  }
  out_.release_if_large();
  after_drain();
}

void connection::arm_tls_write_wait() {
  if (tls_->write_wait_armed_ || state_ == state::closed) return;
  tls_->write_wait_armed_ = true;
  socket_.async_wait(socket_type::wait_write,
                     [self = shared_from_this()](const boost::system::error_code& ec) {
                       self->tls_->write_wait_armed_ = false;
                       if (ec || self->state_ == state::closed) return;
                       self->on_tls_writable();
                     });
}

void connection::on_tls_writable() {
  tls_session& t = *tls_;
  if (!t.established_ || t.read_wants_write_) {
    t.read_wants_write_ = false;
    on_readable_tls();
    if (state_ == state::closed) return;
  }
  if (writing_ && !t.write_wants_read_) {
    writing_ = false;
    flush_tls();
  }
}

void connection::send_close_notify() {
  tls_session& t = *tls_;
  if (!t.established_ || t.close_notify_sent_) return;
  t.close_notify_sent_ = true;
  // One attempt: if the socket is full the peer misses the alert and sees the TCP close; either
  // way it has had every byte of output (we shut down only after the output drained).
  SSL_shutdown(t.native());
  ERR_clear_error();
}

}  // namespace warren::net
