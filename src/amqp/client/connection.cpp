// The client's socket, handshake, heartbeats and frame dispatch (tools/warren-perf's client is
// the load generator's own, tuned to count rather than keep messages; this one keeps them whole).
#include "amqp/client/connection.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>

#include <cstring>

#include "common/byte_io.hpp"
#include "common/overloaded.hpp"

namespace warren::amqp::client {

namespace {
constexpr size_t read_chunk = 64 * 1024;
constexpr auto close_timeout = std::chrono::seconds(3);
}  // namespace

struct connection::tls_stream {
  boost::asio::ssl::stream<boost::asio::ip::tcp::socket&> stream;
};

std::optional<peer_close> peer_error(const std::string& why) {
  for (std::string_view lead :
       {"channel closed by the peer: ", "connection closed by the peer: "}) {
    if (!why.starts_with(lead)) continue;
    std::string_view rest = std::string_view(why).substr(lead.size());
    int code = 0;
    size_t i = 0;
    while (i < rest.size() && i < 4 && rest[i] >= '0' && rest[i] <= '9')
      code = code * 10 + (rest[i++] - '0');
    if (code < 400 || i == rest.size()) return std::nullopt;
    rest.remove_prefix(i + 1);
    if (auto dash = rest.find(" - "); dash != std::string_view::npos) rest.remove_prefix(dash + 3);
    return peer_close{uint16_t(code), std::string(rest)};
  }
  return std::nullopt;
}

connection::connection(boost::asio::io_context& io, uri u, std::string name, events ev)
    : uri_(std::move(u)),
      name_(std::move(name)),
      events_(std::move(ev)),
      resolver_(io),
      socket_(io),
      timer_(io),
      in_(read_chunk) {}

connection::~connection() = default;

void connection::start() {
  // Connecting and the handshake get a deadline: a peer that accepts and never answers (or a
  // black-holed address) must not keep a link "starting" for ever. Heartbeats take the timer over
  // once open.
  timer_.expires_after(uri_.connection_timeout);
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec || self->state_ == state::open || self->state_ == state::closed) return;
    if (self->state_ == state::closing) return self->fail("");
    self->fail("no connection and handshake within " +
               std::to_string(self->uri_.connection_timeout.count()) + " ms");
  });
  resolver_.async_resolve(
      uri_.host, std::to_string(uri_.port),
      [self = shared_from_this()](const boost::system::error_code& ec,
                                  const boost::asio::ip::tcp::resolver::results_type& results) {
        if (self->state_ != state::connecting) return;
        if (ec) return self->fail("cannot resolve " + self->uri_.host + ": " + ec.message());
        boost::asio::async_connect(
            self->socket_, results,
            [self](const boost::system::error_code& e, const boost::asio::ip::tcp::endpoint&) {
              if (self->state_ != state::connecting) return;
              if (e) return self->fail("cannot connect to " + self->uri_.safe + ": " + e.message());
              self->on_connected();
            });
      });
}

void connection::on_connected() {
  boost::system::error_code ec;
  socket_.set_option(boost::asio::ip::tcp::no_delay(true), ec);
  auto begin = [this] {
    state_ = state::handshake;
    last_read_ = last_write_ = std::chrono::steady_clock::now();
    out_.append(protocol::protocol_header);
    flush();
    read();
  };
  if (!uri_.tls) return begin();
  tls_context_ = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_client);
  tls_context_->set_default_verify_paths();
  tls_context_->set_verify_mode(uri_.verify_peer ? boost::asio::ssl::verify_peer
                                                 : boost::asio::ssl::verify_none);
  tls_ = std::make_unique<tls_stream>(tls_stream{{socket_, *tls_context_}});
  SSL_set_tlsext_host_name(tls_->stream.native_handle(), uri_.host.c_str());
  if (uri_.verify_peer)
    tls_->stream.set_verify_callback(boost::asio::ssl::host_name_verification(uri_.host));
  tls_->stream.async_handshake(
      boost::asio::ssl::stream_base::client,
      [self = shared_from_this(), begin](const boost::system::error_code& e) {
        if (self->state_ != state::connecting) return;
        if (e) return self->fail("TLS handshake: " + e.message());
        begin();
      });
}

void connection::close() {
  if (state_ == state::connecting) {
    reported_ = true;  // the owner asked: no error to report
    if (events_.closed) events_.closed("");
    return shut();
  }
  if (state_ == state::closing || state_ == state::closed) return;
  state_ = state::closing;
  protocol::write_method(out_, 0, protocol::connection_close{200, "Goodbye", 0, 0});
  flush();
  timer_.expires_after(close_timeout);
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec) self->fail("");
  });
}

void connection::fail(const std::string& error) {
  if (!reported_) {
    reported_ = true;
    if (events_.closed) events_.closed(state_ == state::closing ? std::string() : error);
  }
  shut();
}

void connection::shut() {
  if (state_ == state::closed) return;
  state_ = state::closed;
  boost::system::error_code ec;
  socket_.close(ec);
  resolver_.cancel();
  timer_.cancel();
  pending_.clear();
  gets_.clear();
}

void connection::confirm_select(reply on_ok) {
  confirming_ = true;
  next_seq_ = 1;
  call(protocol::confirm_select{}, std::move(on_ok));
}

uint64_t connection::publish(const std::string& exchange, const std::string& routing_key,
                             const protocol::basic_properties& props, std::string_view body) {
  protocol::basic_publish p;
  p.exchange = exchange;
  p.routing_key = routing_key;
  protocol::write_method(out_, channel, p);
  protocol::content_header h;
  h.body_size = body.size();
  h.properties = props;
  protocol::write_content_header_frame(out_, channel, h);
  protocol::write_body_frames(out_, channel, body, frame_max_);
  flush();
  return confirming_ ? next_seq_++ : 0;
}

uint64_t connection::publish_encoded(std::string_view exchange, std::string_view routing_key,
                                     std::string_view encoded_properties, std::string_view body) {
  protocol::basic_publish p;
  p.exchange = exchange;
  p.routing_key = routing_key;
  protocol::write_method(out_, channel, p);
  protocol::write_encoded_content_header_frame(out_, channel, body.size(), encoded_properties);
  protocol::write_body_frames(out_, channel, body, frame_max_);
  flush();
  return confirming_ ? next_seq_++ : 0;
}

void connection::get(const protocol::basic_get& g,
                     std::function<void(std::optional<delivery>, uint32_t)> done) {
  gets_.push_back(std::move(done));
  // get-empty is a reply like any; get-ok is answered once its content is in (handle_frame).
  call(g, [this](const protocol::method& m) {
    if (!std::holds_alternative<protocol::basic_get_empty>(m) || gets_.empty()) return;
    auto fn = std::move(gets_.front());
    gets_.pop_front();
    if (fn) fn(std::nullopt, 0);
  });
}

void connection::ack(uint64_t tag, bool multiple) {
  protocol::write_method(out_, channel, protocol::basic_ack{tag, multiple});
  flush();
}

void connection::nack(uint64_t tag, bool multiple, bool requeue) {
  protocol::write_method(out_, channel, protocol::basic_nack{tag, multiple, requeue});
  flush();
}

void connection::flush() {
  if (writing_now_ || out_.empty() || state_ == state::closed || state_ == state::connecting)
    return;
  writing_.swap(out_);
  out_.clear();
  writing_now_ = true;
  last_write_ = std::chrono::steady_clock::now();
  auto done = [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
    self->writing_now_ = false;
    self->writing_.clear();
    if (self->state_ == state::closed) return;
    if (ec) return self->fail("write: " + ec.message());
    self->flush();
  };
  if (tls_)
    boost::asio::async_write(tls_->stream, boost::asio::buffer(writing_), std::move(done));
  else
    boost::asio::async_write(socket_, boost::asio::buffer(writing_), std::move(done));
}

void connection::read() {
  auto done = [self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
    if (self->state_ == state::closed) return;
    if (ec)
      return self->fail(ec == boost::asio::error::eof ? "the peer closed the socket"
                                                      : "read: " + ec.message());
    self->on_read(n);
  };
  auto space = in_.space();
  auto buf = boost::asio::buffer(space.data(), space.size());
  if (tls_)
    tls_->stream.async_read_some(buf, std::move(done));
  else
    socket_.async_read_some(buf, std::move(done));
}

void connection::on_read(size_t n) {
  last_read_ = std::chrono::steady_clock::now();
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

// Heartbeats (spec 4.2.7): a frame at least every half interval from us; the peer is dead after
// two intervals of silence.
void connection::arm_heartbeat() {
  if (heartbeat_ == 0) return;
  timer_.expires_after(std::chrono::milliseconds(heartbeat_ * 500));
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec || self->state_ != state::open) return;
    auto now = std::chrono::steady_clock::now();
    auto interval = std::chrono::seconds(self->heartbeat_);
    if (now - self->last_read_ > 2 * interval) return self->fail("missed heartbeats from the peer");
    if (now - self->last_write_ >= interval / 2) {
      protocol::write_heartbeat_frame(self->out_);
      self->flush();
    }
    self->arm_heartbeat();
  });
}

void connection::handle_frame(const protocol::frame_view& f) {
  const auto& p = f.payload;
  if (state_ == state::closing && !(f.type == protocol::frame_method && f.channel == 0)) return;
  switch (f.type) {
    case protocol::frame_method: {
      protocol::method m;
      if (protocol::decode_method(p, m) != protocol::decode_status::ok)
        return fail("cannot decode a method from the peer");
      return handle_method(f.channel, std::move(m));
    }
    case protocol::frame_header: {
      if (!in_content_) return fail("content header without a method");
      protocol::content_header h;
      if (!protocol::decode_content_header(p, h)) return fail("malformed content header");
      current_.properties = std::move(h.properties);
      content_left_ = h.body_size;
      current_.body.clear();
      current_.body.reserve(h.body_size);
      break;
    }
    case protocol::frame_body:
      if (!in_content_) return fail("content body without a method");
      current_.body.append(reinterpret_cast<const char*>(p.data()), p.size());
      content_left_ -= std::min<uint64_t>(content_left_, p.size());
      break;
    case protocol::frame_heartbeat:
      return;
    default:
      return fail("unknown frame type " + std::to_string(f.type));
  }
  if (in_content_ && f.type != protocol::frame_method && content_left_ == 0) {
    in_content_ = false;
    if (content_is_get_) {
      content_is_get_ = false;
      if (!pending_.empty()) pending_.pop_front();  // the get's reply slot
      if (!gets_.empty()) {
        auto fn = std::move(gets_.front());
        gets_.pop_front();
        if (fn) fn(std::move(current_), get_count_);
      }
    } else if (content_is_delivery_ && events_.delivered) {
      events_.delivered(std::move(current_));
    }
    current_ = delivery{};
  }
}

void connection::handle_method(uint16_t ch, protocol::method&& m) {
  auto reply_arrived = [&] {
    if (pending_.empty()) return;
    auto fn = std::move(pending_.front());
    pending_.pop_front();
    if (fn) fn(m);
  };
  std::visit(
      common::overloaded{
          [&](protocol::connection_start& s) {
            server_properties_ = std::move(s.server_properties);
            protocol::connection_start_ok ok;
            protocol::field_table caps;
            caps.set("publisher_confirms", true);
            caps.set("basic.nack", true);
            caps.set("consumer_cancel_notify", true);
            caps.set("authentication_failure_close", true);
            caps.set("exchange_exchange_bindings", true);
            ok.client_properties.set("product", "Warren");
            ok.client_properties.set("connection_name", name_);
            ok.client_properties.set("capabilities", caps);
            ok.mechanism = "PLAIN";
            ok.response = std::string(1, '\0') + uri_.user + std::string(1, '\0') + uri_.password;
            ok.locale = "en_US";
            protocol::write_method(out_, 0, ok);
          },
          [&](const protocol::connection_tune& t) {
            frame_max_ = t.frame_max == 0 ? 131072 : std::min<uint32_t>(t.frame_max, 131072);
            // The smaller non-zero of the two asks; zero only if both are zero.
            uint16_t ours = uri_.heartbeat;
            heartbeat_ = (ours == 0 || t.heartbeat == 0) ? std::max(ours, t.heartbeat)
                                                         : std::min(ours, t.heartbeat);
            protocol::write_method(
                out_, 0, protocol::connection_tune_ok{t.channel_max, frame_max_, heartbeat_});
            protocol::connection_open open;
            open.virtual_host = uri_.vhost;
            protocol::write_method(out_, 0, open);
          },
          [&](const protocol::connection_open_ok&) {
            protocol::write_method(out_, channel, protocol::channel_open{});
          },
          [&](const protocol::channel_open_ok&) {
            state_ = state::open;
            arm_heartbeat();
            if (events_.ready) events_.ready();
          },
          [&](const protocol::connection_close& c) {
            protocol::write_method(out_, 0, protocol::connection_close_ok{});
            flush();
            fail("connection closed by the peer: " + std::to_string(c.reply_code) + " " +
                 c.reply_text);
          },
          [&](const protocol::connection_close_ok&) { fail(""); },
          [&](const protocol::channel_close& c) {
            protocol::write_method(out_, ch, protocol::channel_close_ok{});
            flush();
            fail("channel closed by the peer: " + std::to_string(c.reply_code) + " " +
                 c.reply_text);
          },
          [&](protocol::basic_deliver& d) {
            in_content_ = true;
            content_is_delivery_ = true;
            content_is_get_ = false;
            content_left_ = 0;
            current_ = delivery{};
            current_.consumer_tag = std::move(d.consumer_tag);
            current_.tag = d.delivery_tag;
            current_.redelivered = d.redelivered;
            current_.exchange = std::move(d.exchange);
            current_.routing_key = std::move(d.routing_key);
          },
          [&](protocol::basic_get_ok& g) {
            in_content_ = true;
            content_is_delivery_ = false;
            content_is_get_ = true;
            content_left_ = 0;
            get_count_ = g.message_count;
            current_ = delivery{};
            current_.tag = g.delivery_tag;
            current_.redelivered = g.redelivered;
            current_.exchange = std::move(g.exchange);
            current_.routing_key = std::move(g.routing_key);
          },
          [&](const protocol::basic_get_empty&) { reply_arrived(); },
          [&](const protocol::basic_return&) {
            in_content_ = true;
            content_is_delivery_ = false;
            content_is_get_ = false;
            content_left_ = 0;
          },
          [&](const protocol::basic_ack& a) {
            if (events_.confirmed) events_.confirmed(a.delivery_tag, a.multiple, true);
          },
          [&](const protocol::basic_nack& n) {
            if (events_.confirmed) events_.confirmed(n.delivery_tag, n.multiple, false);
          },
          [&](const protocol::basic_cancel& c) {
            if (!events_.cancelled) return fail("the peer cancelled the consumer");
            events_.cancelled(c.consumer_tag);
          },
          [&](const protocol::channel_flow& f) {
            protocol::write_method(out_, ch, protocol::channel_flow_ok{f.active});
          },
          [&](const auto& other) {
            using M = std::decay_t<decltype(other)>;
            if constexpr (M::amqp_name.ends_with("-ok")) reply_arrived();
          },
      },
      m);
}

}  // namespace warren::amqp::client
