// A session's life: bind, connect, request, head, then frames (WebSocket) or an event stream
// (SSE, chunked or not), until the server or the flood closes it.
#include "warren-flood/session.hpp"

#include <boost/asio/write.hpp>

#include <cstring>
#include <nlohmann/json.hpp>

#include "load-common/event_scan.hpp"
#include "web/base64.hpp"
#include "web/ws_handshake.hpp"
#include "warren-flood/flood.hpp"

namespace warren::flood {
namespace {

constexpr size_t max_head = 16 * 1024;

uint32_t steady_seconds(std::chrono::steady_clock::time_point t) {
  return uint32_t(std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count());
}

web::ws_parser_options client_side() {
  web::ws_parser_options o;
  o.from_server = true;
  o.max_message_size = 16 * 1024 * 1024;
  return o;
}

}  // namespace

session::session(flood& f, uint64_t index)
    : f_(f),
      socket_(f.io()),
      parser_(client_side()),
      index_(uint32_t(index)),
      sse_(f.opts().transport == "sse") {}

std::string session::websocket_key() const {
  // Any 16 bytes will do (the server only echoes a digest): made from the index, so nothing
  // needs keeping until the answer is checked.
  char raw[16] = {'w', 'a', 'r', 'r', 'e', 'n', '-', 'f', 'l', 'o', 'o', 'd'};
  std::memcpy(raw + 12, &index_, 4);
  return web::base64_encode(std::string_view(raw, 16));
}

void session::start(std::string request) {
  auto& c = f_.count();
  ++c.launched;
  ++c.pending;
  started_s_ = steady_seconds(std::chrono::steady_clock::now());
  boost::system::error_code ec =
      load::bind_source(socket_, f_.sources().for_connection(index_ - f_.opts().first_user));
  if (ec) {
    f_.error("bind: " + ec.message());
    ++c.connect_failed;
    end_handshake();
    shut(false);
    return;
  }
  if (sse_) {
    request += "Accept: text/event-stream\r\n\r\n";
  } else {
    request += "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ";
    request += websocket_key();
    request += "\r\nSec-WebSocket-Version: 13\r\n\r\n";
  }
  pending_ = std::move(request);
  socket_.async_connect(f_.server(),
                        [this](const boost::system::error_code& e) { on_connected(e); });
}

void session::on_connected(const boost::system::error_code& ec) {
  if (state_ == state::closed) return;
  if (ec) {
    f_.error("connect: " + ec.message());
    ++f_.count().connect_failed;
    end_handshake();
    shut(false);
    return;
  }
  boost::system::error_code ignored;
  socket_.set_option(boost::asio::ip::tcp::no_delay(true), ignored);
  socket_.non_blocking(true, ignored);
  // A fresh socket's send buffer takes a request of a few hundred bytes whole.
  boost::system::error_code wec;
  boost::asio::write(socket_, boost::asio::buffer(pending_), wec);
  if (wec) {
    f_.error("write: " + wec.message());
    ++f_.count().connect_failed;
    end_handshake();
    shut(false);
    return;
  }
  std::string().swap(pending_);
  state_ = state::handshake;
  wait();
}

void session::wait() {
  socket_.async_wait(boost::asio::ip::tcp::socket::wait_read,
                     [this](const boost::system::error_code& ec) {
                       if (state_ == state::closed) return;
                       if (ec) {
                         f_.error("wait: " + ec.message());
                         return shut(state_ == state::open);
                       }
                       on_readable();
                     });
}

void session::on_readable() {
  auto scratch = f_.scratch();
  size_t have = pending_.size();
  if (have >= scratch.size() / 2) {
    f_.error("a frame or line larger than the read buffer");
    ++f_.count().broken;
    return shut(false);
  }
  std::memcpy(scratch.data(), pending_.data(), have);
  boost::system::error_code ec;
  size_t n = socket_.read_some(boost::asio::buffer(scratch.data() + have, scratch.size() - have), ec);
  if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) return wait();
  if (ec) {
    if (ec != boost::asio::error::eof && ec != boost::asio::error::connection_reset)
      f_.error("read: " + ec.message());
    if (state_ == state::handshake) {
      end_handshake();
      f_.error("the server closed the connection during the handshake");
      ++f_.count().refused;
      f_.refused(0);
      return shut(false);
    }
    return shut(true);
  }
  f_.count().bytes += n;
  std::span<uint8_t> data(scratch.data(), have + n);
  size_t used = 0;
  if (state_ == state::handshake) {
    used = handle_head(data);
    if (state_ == state::closed) return;
  }
  if (state_ == state::open) {
    if (sse_)
      used += handle_stream(data.subspan(used));
    else
      used += handle_frames(data.subspan(used));
    if (state_ == state::closed) return;
  }
  // Keep only what could not be used yet; an idle session holds nothing.
  if (used == data.size())
    std::string().swap(pending_);
  else
    pending_.assign(reinterpret_cast<const char*>(data.data() + used), data.size() - used);
  wait();
}

size_t session::handle_head(std::span<uint8_t> data) {
  std::string_view bytes(reinterpret_cast<const char*>(data.data()), data.size());
  auto head = load::parse_response_head(bytes);
  if (head.size == 0) {
    if (bytes.size() > max_head) {
      f_.error("response head too large");
      ++f_.count().refused;
      f_.refused(-1);
      end_handshake();
      shut(false);
    }
    return 0;
  }
  int expected = sse_ ? 200 : 101;
  if (head.status != expected) {
    ++f_.count().refused;
    f_.refused(head.status);
    end_handshake();
    shut(false);
    return 0;
  }
  if (!sse_ && head.websocket_accept != web::ws_accept_key(websocket_key())) {
    f_.error("wrong Sec-WebSocket-Accept");
    ++f_.count().refused;
    f_.refused(-1);
    end_handshake();
    shut(false);
    return 0;
  }
  chunked_ = head.chunked;
  end_handshake();
  state_ = state::open;
  auto& c = f_.count();
  ++c.connected;
  ++c.open;
  if (!f_.opts().room.empty()) {
    nlohmann::json op{{"op", "join"}, {"room", f_.opts().room}, {"id", 1}};
    send_frame(web::ws_opcode::text, op.dump());
  }
  return head.size;
}

size_t session::handle_frames(std::span<uint8_t> data) {
  size_t used = 0;
  for (;;) {
    auto r = parser_.parse(data.subspan(used));
    used += r.consumed;
    switch (r.event.kind) {
      case web::ws_event_kind::need_more:
        return used;
      case web::ws_event_kind::message:
        handle_event(r.event.data);
        break;
      case web::ws_event_kind::ping:
        ++f_.count().pings;
        send_frame(web::ws_opcode::pong, r.event.data);
        break;
      case web::ws_event_kind::pong:
        break;
      case web::ws_event_kind::close: {
        f_.error("the server closed with " + std::to_string(r.event.code) + " " +
                 std::string(r.event.data));
        std::string payload;
        payload += char(r.event.code >> 8);
        payload += char(r.event.code & 0xff);
        if (r.event.code != web::ws_close::no_status) send_frame(web::ws_opcode::close, payload);
        shut(true);
        return data.size();
      }
      case web::ws_event_kind::error:
        f_.error(std::string("bad frame from the server: ") + std::string(r.event.data));
        ++f_.count().broken;
        shut(true);
        return data.size();
    }
    if (state_ == state::closed) return data.size();
  }
}

size_t session::handle_stream(std::span<uint8_t> data) {
  std::span<char> bytes(reinterpret_cast<char*>(data.data()), data.size());
  size_t n = bytes.size();
  if (chunked_) {
    n = chunks_.decode(bytes);
    if (chunks_.failed()) {
      f_.error("bad chunked encoding from the server");
      ++f_.count().broken;
      shut(true);
      return data.size();
    }
  }
  events_.feed(std::string_view(bytes.data(), n), [this](std::string_view d) { handle_event(d); });
  if (chunked_ && chunks_.done()) {
    f_.error("the server ended the event stream");
    shut(true);
  }
  // The decoder and the line parser keep their own partial state.
  return data.size();
}

void session::handle_event(std::string_view json) {
  auto& c = f_.count();
  ++c.events;
  auto e = load::scan_event(json);
  bool timed = false;
  if (e.type.empty() || e.type == "message") {
    ++c.messages;
    timed = e.has_t;
  } else if (e.type == "history") {
    ++c.history;
  } else if (e.type == "reset") {
    ++c.resets;
  } else if (e.type == "presence") {
    ++c.presence;
  } else if (e.type == "ok" || e.type == "error") {
    ++c.replies;
    if (e.op == "join") ++(e.type == "ok" ? c.joined : c.join_errors);
    if (e.type == "error") f_.error("error reply: " + std::string(json.substr(0, 200)));
  } else {
    ++c.other;
  }
  if (timed) {
    uint64_t now = load::now_us();
    f_.record_latency(now > e.t ? now - e.t : 0);
    ++c.timed;
  }
  if (e.has_seq) {
    // Within one inbox, numbers are consecutive (docs/web-api.md), resets included.
    if (last_seq_ >= 0) {
      if (e.seq <= last_seq_)
        ++c.seq_backwards;
      else
        c.seq_missing += uint64_t(e.seq - last_seq_ - 1);
    }
    last_seq_ = e.seq;
  }
}

void session::send_frame(web::ws_opcode op, std::string_view payload) {
  uint8_t key[4];
  uint32_t k = index_ * 2654435761u + uint32_t(f_.count().events);
  std::memcpy(key, &k, 4);
  std::string frame;
  web::ws_append_client_frame(frame, op, payload, key);
  boost::system::error_code ec;
  boost::asio::write(socket_, boost::asio::buffer(frame), ec);
  if (ec) f_.error("write: " + ec.message());
}

void session::end_handshake() {
  if (state_ == state::connecting || state_ == state::handshake) f_.handshake_ended();
}

void session::close() {
  if (state_ == state::closed) return;
  if (state_ == state::open && !sse_) {
    std::string payload{char(web::ws_close::normal >> 8), char(web::ws_close::normal & 0xff)};
    send_frame(web::ws_opcode::close, payload);
  }
  end_handshake();
  shut(false);
}

bool session::check_timeout(std::chrono::steady_clock::time_point now, std::chrono::seconds limit) {
  if (state_ != state::connecting && state_ != state::handshake) return false;
  if (steady_seconds(now) - started_s_ < uint32_t(limit.count())) return false;
  ++f_.count().timed_out;
  f_.error("handshake timed out");
  end_handshake();
  shut(false);
  return true;
}

void session::shut(bool lost) {
  if (state_ == state::closed) return;
  auto& c = f_.count();
  if (state_ == state::open) {
    --c.open;
    if (lost) ++c.lost;
  }
  state_ = state::closed;
  boost::system::error_code ec;
  socket_.close(ec);
  std::string().swap(pending_);
}

}  // namespace warren::flood
