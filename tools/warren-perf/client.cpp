// The client's socket, handshake and frame dispatch. basic.deliver and basic.ack/nack are read by
// hand because the generic decoder allocates their strings, and the load generator must not be the
// bottleneck it measures; everything else goes through protocol::decode_method.
#include "warren-perf/client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>

#include <cstring>

#include "common/byte_io.hpp"
#include "common/overloaded.hpp"

namespace warren::perf {

namespace {

constexpr size_t read_chunk = 64 * 1024;
constexpr auto close_timeout = std::chrono::seconds(3);

uint16_t be16(const uint8_t* p) {
  return uint16_t(p[0] << 8 | p[1]);
}

std::string describe(uint16_t code, const std::string& text) {
  return std::to_string(code) + " " + text;
}

}  // namespace

struct client::tls_stream {
  boost::asio::ssl::stream<boost::asio::ip::tcp::socket&> stream;
};

client::client(boost::asio::io_context& io, std::string name, broker_address addr,
               client_events events)
    : io_(io),
      name_(std::move(name)),
      addr_(std::move(addr)),
      events_(std::move(events)),
      socket_(io),
      resolver_(io),
      close_timer_(io),
      in_(read_chunk) {}

client::~client() = default;

void client::start() {
  resolver_.async_resolve(
      addr_.host, std::to_string(addr_.port),
      [self = shared_from_this()](const boost::system::error_code& ec,
                                  const boost::asio::ip::tcp::resolver::results_type& results) {
        if (ec) return self->fail("resolve " + self->addr_.host + ": " + ec.message());
        boost::asio::async_connect(
            self->socket_, results,
            [self](const boost::system::error_code& ec2, const boost::asio::ip::tcp::endpoint&) {
              if (ec2) return self->fail("connect: " + ec2.message());
              self->on_connected();
            });
      });
}

void client::on_connected() {
  if (state_ != state::connecting) return;  // closed meanwhile
  boost::system::error_code ec;
  // Latency is measured per message: do not let Nagle hold small frames back.
  socket_.set_option(boost::asio::ip::tcp::no_delay(true), ec);
  if (!addr_.tls) return begin_handshake();
  tls_ = std::make_unique<tls_stream>(tls_stream{{socket_, *addr_.tls}});
  SSL_set_tlsext_host_name(tls_->stream.native_handle(), addr_.host.c_str());
  tls_->stream.set_verify_callback(boost::asio::ssl::host_name_verification(addr_.host));
  tls_->stream.async_handshake(boost::asio::ssl::stream_base::client,
                               [self = shared_from_this()](const boost::system::error_code& e) {
                                 if (self->state_ != state::connecting) return;
                                 if (e) return self->fail("TLS handshake: " + e.message());
                                 self->begin_handshake();
                               });
}

void client::begin_handshake() {
  state_ = state::handshake;
  out_.append(protocol::protocol_header);
  flush();
  read();
}

void client::close() {
  switch (state_) {
    case state::connecting:
      shut_socket();
      return;
    case state::closing:
    case state::closed:
      return;
    default:
      break;
  }
  state_ = state::closing;
  protocol::write_method(out_, 0, protocol::connection_close{200, "closing", 0, 0});
  flush();
  close_timer_.expires_after(close_timeout);
  close_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec) self->shut_socket();
  });
}

void client::fail(const std::string& error) {
  // Once we asked to close, the broker may drop the socket without ceremony: not a failure.
  if (!failed_ && state_ != state::closed && state_ != state::closing) {
    failed_ = true;
    if (events_.failed) events_.failed(name_, error);
  }
  shut_socket();
}

void client::shut_socket() {
  if (state_ == state::closed) return;
  state_ = state::closed;
  boost::system::error_code ec;
  socket_.close(ec);
  resolver_.cancel();
  close_timer_.cancel();
  if (!closed_reported_) {
    closed_reported_ = true;
    if (events_.closed) events_.closed();
  }
}

void client::flush() {
  if (write_in_flight_ || out_.empty() || state_ == state::closed || state_ == state::connecting)
    return;
  writing_.swap(out_);
  out_.clear();
  write_in_flight_ = true;
  auto done = [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
    self->write_in_flight_ = false;
    self->writing_.clear();
    if (self->state_ == state::closed) return;
    if (ec) return self->fail("write: " + ec.message());
    self->on_write_done();
    self->flush();
  };
  if (tls_)
    boost::asio::async_write(tls_->stream, boost::asio::buffer(writing_), std::move(done));
  else
    boost::asio::async_write(socket_, boost::asio::buffer(writing_), std::move(done));
}

void client::read() {
  if (state_ == state::closed) return;
  auto done = [self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
    if (self->state_ == state::closed) return;
    if (ec) {
      if (self->state_ == state::closing)
        self->shut_socket();
      else
        self->fail(ec == boost::asio::error::eof ? "the broker closed the socket"
                                                 : "read: " + ec.message());
      return;
    }
    self->on_read(n);
  };
  auto space = in_.space();
  auto buf = boost::asio::buffer(space.data(), space.size());
  if (tls_)
    tls_->stream.async_read_some(buf, std::move(done));
  else
    socket_.async_read_some(buf, std::move(done));
}

void client::on_read(size_t n) {
  in_.commit(n);
  auto error = in_.drain([this](const protocol::frame_view& f) {
    handle_frame(f);
    return state_ != state::closed;
  });
  if (error) return fail("framing error: " + *error);
  if (state_ == state::closed) return;
  flush();
  read();
}

void client::handle_frame(const protocol::frame_view& f) {
  const auto& p = f.payload;
  // After connection.close only close-ok (or the broker's own close) matters; deliveries that
  // cross our close are neither counted nor acked.
  if (state_ == state::closing && !(f.type == protocol::frame_method && f.channel == 0)) return;
  switch (f.type) {
    case protocol::frame_method: {
      if (p.size() >= 4 && be16(p.data()) == protocol::class_basic) {
        uint16_t id = be16(p.data() + 2);
        if (id == protocol::basic_deliver::amqp_method_id) {
          common::byte_reader r(p.subspan(4));
          r.bytes(r.u8());  // consumer tag
          delivery_tag_ = r.u64();
          if (!r.ok()) return fail("malformed basic.deliver");
          content_ = content_kind::delivery;
          content_left_ = 0;
          first_len_ = 0;
          return;
        }
        if (id == protocol::basic_ack::amqp_method_id ||
            id == protocol::basic_nack::amqp_method_id) {
          common::byte_reader r(p.subspan(4));
          uint64_t tag = r.u64();
          uint8_t bits = r.u8();
          if (!r.ok()) return fail("malformed basic.ack/nack");
          on_confirm(tag, bits & 1, id == protocol::basic_ack::amqp_method_id);
          return;
        }
      }
      protocol::method m;
      auto st = protocol::decode_method(p, m);
      if (st != protocol::decode_status::ok) return fail("cannot decode a method from the broker");
      return handle_method(f.channel, m);
    }
    case protocol::frame_header: {
      if (content_ == content_kind::none) return fail("content header without a method");
      common::byte_reader r(p);
      r.u16();  // class
      r.u16();  // weight
      content_left_ = r.u64();
      if (!r.ok()) return fail("malformed content header");
      if (content_left_ == 0) handle_body({});
      return;
    }
    case protocol::frame_body:
      if (content_ == content_kind::none) return fail("content body without a method");
      return handle_body(p);
    case protocol::frame_heartbeat:
      protocol::write_heartbeat_frame(out_);
      return;
    default:
      return fail("unknown frame type " + std::to_string(f.type));
  }
}

void client::handle_body(std::span<const uint8_t> payload) {
  if (content_ == content_kind::delivery && first_len_ < sizeof first_bytes_) {
    size_t take = std::min(payload.size(), sizeof first_bytes_ - first_len_);
    std::memcpy(first_bytes_ + first_len_, payload.data(), take);
    first_len_ += take;
  }
  content_left_ -= std::min<uint64_t>(content_left_, payload.size());
  if (content_left_ > 0) return;
  auto kind = content_;
  content_ = content_kind::none;
  if (kind == content_kind::delivery) {
    bump(stats_.received);
    on_delivery(delivery_tag_, {first_bytes_, first_len_});
  }
}

void client::handle_method(uint16_t ch, const protocol::method& m) {
  std::visit(
      common::overloaded{
          [&](const protocol::connection_start&) {
            protocol::connection_start_ok ok;
            protocol::field_table caps;
            caps.set("publisher_confirms", true);
            caps.set("basic.nack", true);
            caps.set("connection.blocked", true);
            caps.set("consumer_cancel_notify", true);
            caps.set("authentication_failure_close", true);
            ok.client_properties.set("product", "warren-perf");
            ok.client_properties.set("connection_name", name_);
            ok.client_properties.set("capabilities", caps);
            ok.mechanism = "PLAIN";
            ok.response = std::string(1, '\0') + addr_.user + std::string(1, '\0') + addr_.password;
            ok.locale = "en_US";
            protocol::write_method(out_, 0, ok);
          },
          [&](const protocol::connection_tune& t) {
            // Largest frame both accept, capped at 128 KiB; heartbeats off (runs are short and
            // every connection is busy), one channel is all we use.
            frame_max_ = t.frame_max == 0 ? 131072 : std::min<uint32_t>(t.frame_max, 131072);
            protocol::write_method(out_, 0, protocol::connection_tune_ok{1, frame_max_, 0});
            protocol::connection_open open;
            open.virtual_host = addr_.vhost;
            protocol::write_method(out_, 0, open);
          },
          [&](const protocol::connection_open_ok&) {
            protocol::write_method(out_, channel, protocol::channel_open{});
          },
          [&](const protocol::channel_open_ok&) {
            // A role that closed and reopens its channel (crowd's churners) waits for this -ok.
            if (state_ == state::running) return reply_arrived(m);
            state_ = state::setup;
            setup();
            if (pending_.empty()) reply_arrived(m);
          },
          [&](const protocol::connection_close& c) {
            protocol::write_method(out_, 0, protocol::connection_close_ok{});
            flush();
            fail("the broker closed the connection: " + describe(c.reply_code, c.reply_text));
          },
          [&](const protocol::connection_close_ok&) { shut_socket(); },
          [&](const protocol::channel_close& c) {
            protocol::write_method(out_, ch, protocol::channel_close_ok{});
            flush();
            fail("the broker closed the channel: " + describe(c.reply_code, c.reply_text));
          },
          [&](const protocol::connection_blocked&) {
            bump(stats_.blocked);
            on_blocked(true);
          },
          [&](const protocol::connection_unblocked&) { on_blocked(false); },
          [&](const protocol::basic_return&) {
            bump(stats_.returned);
            content_ = content_kind::ignored;
            content_left_ = 0;
          },
          [&](const protocol::basic_cancel&) { on_cancelled(); },
          [&](const protocol::channel_flow& f) {
            protocol::write_method(out_, ch, protocol::channel_flow_ok{f.active});
          },
          [&](const auto& other) {
            using M = std::decay_t<decltype(other)>;
            if constexpr (M::amqp_name.ends_with("-ok")) reply_arrived(m);
          },
      },
      m);
}

void client::reply_arrived(const protocol::method& m) {
  if (!pending_.empty()) {
    auto handler = std::move(pending_.front());
    pending_.pop_front();
    if (handler) handler(m);
  }
  if (state_ == state::setup && pending_.empty()) {
    state_ = state::running;
    on_ready();
    if (events_.ready) events_.ready();
  }
}

}  // namespace warren::perf
