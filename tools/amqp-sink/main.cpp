// amqp-sink: the cheapest AMQP 0-9-1 "broker" we can write, to measure the load generator's own
// ceiling. It completes the handshake, answers declare/bind/qos/consume/confirm.select and the like
// with their -ok, confirms every publish in confirm mode and discards messages. With --deliver it
// instead hands each message straight to a consumer of the queue it names (default exchange) or of
// every queue bound to the exchange it names (any exchange acts as fanout), ignoring prefetch and
// acks: the floor for end-to-end throughput and latency. One thread, async I/O.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/write.hpp>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "amqp/protocol/frame.hpp"
#include "common/byte_io.hpp"
#include "common/overloaded.hpp"

namespace warren::sink {

namespace protocol = amqp::protocol;
using boost::asio::ip::tcp;

constexpr uint32_t frame_max = 131072;
constexpr size_t read_chunk = 64 * 1024;

class session;

// Everything below is touched only by the one I/O thread.
uint64_t messages_total = 0;
uint64_t messages_dropped = 0;  // --deliver: no consumer, or its output backlog was full
bool deliver_mode = false;
// --deliver: consumers per queue (taken round-robin) and queues bound to each exchange.
struct consumer_ref {
  std::weak_ptr<session> s;
  uint16_t channel;
  std::string tag;
};
struct queue_consumers {
  std::vector<consumer_ref> consumers;
  size_t next = 0;
};
std::map<std::string, queue_consumers> queues;
std::map<std::string, std::vector<std::string>> bindings;

class session : public std::enable_shared_from_this<session> {
 public:
  explicit session(tcp::socket s) : socket_(std::move(s)), in_(read_chunk) {}
  void start() {
    boost::system::error_code ec;
    socket_.set_option(tcp::no_delay(true), ec);
    read();
  }

  // --deliver: queues one message for this consumer; false if its backlog is too large.
  bool deliver(uint16_t ch, const std::string& tag, const std::string& exchange,
               const std::string& routing_key, std::string_view header_payload,
               std::string_view body) {
    if (closing_ || out_.size() > max_backlog) return false;
    deliver_.consumer_tag = tag;
    deliver_.delivery_tag = ++delivery_tags_[ch];
    deliver_.exchange = exchange;
    deliver_.routing_key = routing_key;
    protocol::write_method(out_, ch, deliver_);
    common::byte_writer w(out_);
    w.u8(protocol::frame_header);
    w.u16(ch);
    w.u32(uint32_t(header_payload.size()));
    w.bytes(header_payload);
    w.u8(protocol::frame_end);
    protocol::write_body_frames(out_, ch, body, frame_max);
    flush();
    return true;
  }

 private:
  // Output queued beyond this makes --deliver drop messages for this consumer.
  static constexpr size_t max_backlog = 8 << 20;

  struct channel_state {
    bool confirm = false;
    uint64_t published = 0;  // publishes seen since confirm.select
    uint64_t acked = 0;      // highest delivery tag confirmed
    // --deliver: the message being received (publish, header, body frames).
    std::string exchange, routing_key, header, body;
    uint64_t body_left = 0;
    bool in_content = false;
  };

  void read() {
    if (in_.size() - len_ < read_chunk / 4) in_.resize(len_ + read_chunk);
    socket_.async_read_some(boost::asio::buffer(in_.data() + len_, in_.size() - len_),
                            [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                              if (ec || self->closing_) return;
                              self->len_ += n;
                              self->consume();
                            });
  }

  void consume() {
    size_t pos = 0;
    if (!header_seen_) {
      auto st = protocol::check_protocol_header({in_.data(), len_});
      if (st == protocol::header_status::need_more) return read();
      if (st == protocol::header_status::mismatch) {
        out_.append(protocol::protocol_header);
        return close_after_flush();
      }
      header_seen_ = true;
      pos = protocol::protocol_header.size();
      protocol::connection_start start;
      start.version_major = 0;
      start.version_minor = 9;
      protocol::field_table caps;
      for (const char* c : {"publisher_confirms", "basic.nack", "consumer_cancel_notify",
                            "exchange_exchange_bindings", "connection.blocked"})
        caps.set(c, true);
      start.server_properties.set("product", "amqp-sink");
      start.server_properties.set("capabilities", caps);
      start.mechanisms = "PLAIN AMQPLAIN";
      start.locales = "en_US";
      protocol::write_method(out_, 0, start);
    }
    for (;;) {
      auto r = protocol::parse_frame({in_.data() + pos, len_ - pos}, frame_max);
      if (r.status == protocol::parse_status::need_more) break;
      if (r.status == protocol::parse_status::error) return close_after_flush();
      handle(r.frame);
      pos += r.consumed;
      if (closing_) break;
    }
    std::memmove(in_.data(), in_.data() + pos, len_ - pos);
    len_ -= pos;
    // One multiple=true ack per channel per read batch covers every publish in the batch.
    for (auto& [ch, st] : channels_) {
      if (st.confirm && st.published > st.acked) {
        protocol::write_method(out_, ch, protocol::basic_ack{st.published, true});
        st.acked = st.published;
      }
    }
    flush();
    if (!closing_) read();
  }

  void handle(const protocol::frame_view& f) {
    const auto& p = f.payload;
    if (f.type == protocol::frame_header || f.type == protocol::frame_body) {
      if (deliver_mode) content(f);
      return;
    }
    if (f.type != protocol::frame_method) return;  // heartbeats
    // basic.publish is the hot path: counted without decoding (unless it must be routed).
    if (p.size() >= 4 && p[0] == 0 && p[1] == protocol::class_basic && p[2] == 0 &&
        p[3] == protocol::basic_publish::amqp_method_id) {
      ++messages_total;
      auto it = channels_.find(f.channel);
      if (it == channels_.end()) return;
      if (it->second.confirm) ++it->second.published;
      if (deliver_mode) {
        common::byte_reader r(p.subspan(4));
        r.u16();  // reserved
        auto x = r.bytes(r.u8());
        auto rk = r.bytes(r.u8());
        it->second.exchange.assign(x);
        it->second.routing_key.assign(rk);
        it->second.in_content = r.ok();
      }
      return;
    }
    protocol::method m;
    if (protocol::decode_method(p, m) != protocol::decode_status::ok) return;
    uint16_t ch = f.channel;
    auto reply = [&](const auto& r) { protocol::write_method(out_, ch, r); };
    std::visit(common::overloaded{
                   [&](const protocol::connection_start_ok&) {
                     protocol::write_method(out_, 0, protocol::connection_tune{2047, frame_max, 0});
                   },
                   [&](const protocol::connection_open&) { reply(protocol::connection_open_ok{}); },
                   [&](const protocol::connection_close&) {
                     reply(protocol::connection_close_ok{});
                     close_after_flush();
                   },
                   [&](const protocol::channel_open&) {
                     channels_[ch] = {};
                     reply(protocol::channel_open_ok{});
                   },
                   [&](const protocol::channel_close&) {
                     channels_.erase(ch);
                     reply(protocol::channel_close_ok{});
                   },
                   [&](const protocol::exchange_declare& x) {
                     if (!x.no_wait) reply(protocol::exchange_declare_ok{});
                   },
                   [&](const protocol::exchange_delete& x) {
                     if (!x.no_wait) reply(protocol::exchange_delete_ok{});
                   },
                   [&](const protocol::queue_declare& q) {
                     std::string name =
                         q.queue.empty() ? "amq.gen-sink-" + std::to_string(++names_) : q.queue;
                     if (!q.no_wait) reply(protocol::queue_declare_ok{name, 0, 0});
                   },
                   [&](const protocol::queue_bind& b) {
                     auto& bound = bindings[b.exchange];
                     if (std::find(bound.begin(), bound.end(), b.queue) == bound.end())
                       bound.push_back(b.queue);
                     if (!b.no_wait) reply(protocol::queue_bind_ok{});
                   },
                   [&](const protocol::queue_unbind&) { reply(protocol::queue_unbind_ok{}); },
                   [&](const protocol::queue_purge& q) {
                     if (!q.no_wait) reply(protocol::queue_purge_ok{0});
                   },
                   [&](const protocol::queue_delete& q) {
                     if (!q.no_wait) reply(protocol::queue_delete_ok{0});
                   },
                   [&](const protocol::basic_qos&) { reply(protocol::basic_qos_ok{}); },
                   [&](const protocol::basic_consume& c) {
                     std::string tag = c.consumer_tag.empty()
                                           ? "amq.ctag-sink-" + std::to_string(++names_)
                                           : c.consumer_tag;
                     queues[c.queue].consumers.push_back({weak_from_this(), ch, tag});
                     if (!c.no_wait) reply(protocol::basic_consume_ok{tag});
                   },
                   [&](const protocol::basic_cancel& c) {
                     if (!c.no_wait) reply(protocol::basic_cancel_ok{c.consumer_tag});
                   },
                   [&](const protocol::basic_get&) { reply(protocol::basic_get_empty{}); },
                   [&](const protocol::confirm_select& c) {
                     channels_[ch].confirm = true;
                     if (!c.nowait) reply(protocol::confirm_select_ok{});
                   },
                   [&](const protocol::tx_select&) { reply(protocol::tx_select_ok{}); },
                   [&](const protocol::tx_commit&) { reply(protocol::tx_commit_ok{}); },
                   [&](const protocol::tx_rollback&) { reply(protocol::tx_rollback_ok{}); },
                   [&](const auto&) {},  // acks, tune-ok, close-ok, ...: nothing to answer
               },
               m);
  }

  void content(const protocol::frame_view& f) {
    auto it = channels_.find(f.channel);
    if (it == channels_.end() || !it->second.in_content) return;
    auto& c = it->second;
    std::string_view bytes(reinterpret_cast<const char*>(f.payload.data()), f.payload.size());
    if (f.type == protocol::frame_header) {
      common::byte_reader r(f.payload);
      r.u32();  // class, weight
      c.body_left = r.u64();
      c.header.assign(bytes);
      c.body.clear();
    } else {
      c.body.append(bytes);
      c.body_left -= std::min<uint64_t>(c.body_left, bytes.size());
    }
    if (c.body_left > 0) return;
    c.in_content = false;
    route(c);
  }

  static void route(const channel_state& c) {
    if (c.exchange.empty()) return route_to(c.routing_key, c);
    auto b = bindings.find(c.exchange);
    if (b == bindings.end()) {
      ++messages_dropped;
      return;
    }
    for (const auto& queue : b->second) route_to(queue, c);
  }

  // Round-robin over the queue's live consumers; consumers whose connection is gone are pruned.
  static void route_to(const std::string& queue, const channel_state& c) {
    auto q = queues.find(queue);
    if (q != queues.end()) {
      auto& list = q->second.consumers;
      while (!list.empty()) {
        size_t i = q->second.next++ % list.size();
        auto s = list[i].s.lock();
        if (!s || s->closing_) {
          list.erase(list.begin() + ptrdiff_t(i));
          continue;
        }
        if (s->deliver(list[i].channel, list[i].tag, c.exchange, c.routing_key, c.header, c.body))
          return;
        break;  // its backlog is full: drop rather than buffer without bound
      }
    }
    ++messages_dropped;
  }

  void flush() {
    if (writing_now_ || out_.empty()) return;
    writing_.swap(out_);
    out_.clear();
    writing_now_ = true;
    boost::asio::async_write(socket_, boost::asio::buffer(writing_),
                             [self = shared_from_this()](boost::system::error_code ec, size_t) {
                               self->writing_now_ = false;
                               self->writing_.clear();
                               if (ec) return self->shut();
                               if (self->closing_ && self->out_.empty()) return self->shut();
                               self->flush();
                             });
  }

  void close_after_flush() {
    closing_ = true;
    if (!writing_now_ && out_.empty()) return shut();
    flush();
  }

  void shut() {
    boost::system::error_code ec;
    socket_.close(ec);
  }

  tcp::socket socket_;
  std::vector<uint8_t> in_;
  size_t len_ = 0;
  std::string out_, writing_;
  bool writing_now_ = false;
  bool header_seen_ = false;
  bool closing_ = false;
  uint64_t names_ = 0;
  std::map<uint16_t, channel_state> channels_;
  std::map<uint16_t, uint64_t> delivery_tags_;
  protocol::basic_deliver deliver_;  // reused so its strings keep their capacity
};

void accept(tcp::acceptor& acceptor) {
  acceptor.async_accept([&acceptor](boost::system::error_code ec, tcp::socket s) {
    if (ec) return;
    std::make_shared<session>(std::move(s))->start();
    accept(acceptor);
  });
}

}  // namespace warren::sink

int main(int argc, char** argv) {
  std::string bind = "127.0.0.1";
  uint16_t port = 0;
  CLI::App app{
      "amqp-sink: accepts AMQP 0-9-1 connections, answers every setup method with its -ok, "
      "confirms and discards every publish (to measure a load generator's own ceiling)",
      "amqp-sink"};
  app.add_option("--bind", bind, "Address to listen on")->capture_default_str();
  app.add_option("--port", port, "Port (0: any free port, printed on stdout)")
      ->capture_default_str();
  app.add_flag("--deliver", warren::sink::deliver_mode,
               "Hand each message to a consumer of its queue (any exchange acts as fanout); "
               "prefetch and acks are ignored");
  CLI11_PARSE(app, argc, argv);

  boost::asio::io_context io{1};
  boost::asio::ip::tcp::acceptor acceptor(io);
  try {
    boost::asio::ip::tcp::endpoint ep(boost::asio::ip::make_address(bind), port);
    acceptor.open(ep.protocol());
    acceptor.set_option(boost::asio::socket_base::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "amqp-sink: cannot listen on %s:%u: %s\n", bind.c_str(), port, e.what());
    return 1;
  }
  std::printf("amqp-sink listening on %s:%u\n", bind.c_str(), acceptor.local_endpoint().port());
  std::fflush(stdout);
  warren::sink::accept(acceptor);
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int) { io.stop(); });
  io.run();
  std::printf("amqp-sink: %llu messages received, %llu dropped\n",
              static_cast<unsigned long long>(warren::sink::messages_total),
              static_cast<unsigned long long>(warren::sink::messages_dropped));
  return 0;
}
