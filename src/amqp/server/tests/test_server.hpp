// In-process AMQP server on 127.0.0.1:0 (real workers and sockets, no binary) and a small
// blocking client built on the codec, for tests that must reach into the broker (e.g. to drive
// alarms) while speaking real AMQP on the wire.
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "amqp/protocol/frame.hpp"
#include "amqp/server/alarm_board.hpp"
#include "amqp/server/connection.hpp"
#include "auth/password.hpp"
#include "net/listener.hpp"

namespace warren::amqp::server::testing {

class test_server {
 public:
  // `workers` > 1: the vhost's queues are spread over them (hash placement), as warren runs.
  // `fence`: the node's fence, as in a cluster (null: a single node).
  explicit test_server(size_t workers = 1, const common::node_fence* fence = nullptr)
      : pool_(workers), alarms_(workers, {}) {
    auth::user u{"guest", auth::hash_password("guest"), {}, {}};
    u.permissions["/"] = auth::permission{};
    users_.add_user(u);
    users_.set_loopback_networks(*auth::parse_ip_networks("127.0.0.0/8"));
    broker::vhost& v = vhosts_.add("/");
    if (workers > 1)
      v.enable_shards(
          workers, broker::vhost::placement::hash,
          [this](size_t i, std::function<void()> fn) { pool_.at(i).post(std::move(fn)); });
    ctx_.users = &users_;
    ctx_.vhosts = &vhosts_;
    ctx_.pool = &pool_;
    ctx_.alarms = &alarms_;
    ctx_.fence = fence;
    ctx_.server_properties = make_server_properties(ctx_.settings);
    listener_.emplace(
        pool_, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0),
        [this](std::shared_ptr<net::connection> c) {
          {
            std::lock_guard lk(accepted_mutex_);
            accepted_on_.push_back(c->owner().index());
          }
          c->start(std::make_unique<amqp_connection>(ctx_));
        },
        "amqp");
    v.start_shards();
    pool_.start();
    listener_->start();
  }
  ~test_server() {
    listener_->stop();
    pool_.stop();
    pool_.join();
  }
  uint16_t port() const { return listener_->port(); }
  // The users connections log in against; changing them is what the management API does.
  auth::user_store& users() { return users_; }
  // What the resource monitor does on a change; returns once the worker has applied it.
  void set_alarms(alarm::alarm_set s) {
    alarms_.broadcast(pool_, s);
    std::promise<void> done;
    pool_.at(0).post_urgent([&] { done.set_value(); });  // urgent tasks run in order
    done.get_future().wait();
  }
  // Keeps the worker busy for `d` (without waiting for it): what clients send meanwhile is read
  // in one go afterwards.
  void stall(std::chrono::milliseconds d, size_t worker = 0) {
    pool_.at(worker).post([d] { std::this_thread::sleep_for(d); });
  }
  // The worker of the connection accepted `n`-th (from 0), once it has been accepted.
  std::optional<size_t> accepted_on(size_t n) {
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard lk(accepted_mutex_);
        if (n < accepted_on_.size()) return accepted_on_[n];
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return std::nullopt;
  }
  // The worker whose shard holds the queue of that name (any thread).
  size_t queue_worker(std::string_view name) { return vhosts_.find("/")->locate_queue(name); }
  // Runs fn on every AMQP connection, on its worker, and waits.
  void for_each_amqp(const std::function<void(amqp_connection&)>& fn) {
    std::promise<void> done;
    pool_.at(0).post([&] {
      pool_.at(0).for_each_connection([&](net::connection& c) {
        if (auto* a = dynamic_cast<amqp_connection*>(c.handler())) fn(*a);
      });
      done.set_value();
    });
    done.get_future().wait();
  }

 private:
  auth::user_store users_;
  broker::vhost_registry vhosts_;
  server_context ctx_;
  net::worker_pool pool_;
  alarm_board alarms_;
  std::optional<net::listener> listener_;
  std::mutex accepted_mutex_;
  std::vector<size_t> accepted_on_;
};

struct frame {
  uint8_t type = 0;
  uint16_t channel = 0;
  std::string payload;
  std::optional<protocol::method> decoded() const {
    protocol::method m;
    if (type != protocol::frame_method ||
        protocol::decode_method({reinterpret_cast<const uint8_t*>(payload.data()), payload.size()},
                                m) != protocol::decode_status::ok)
      return std::nullopt;
    return m;
  }
};

class test_client {
 public:
  explicit test_client(uint16_t port) : socket_(io_) {
    socket_.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  }
  template <typename M>
  void send(uint16_t ch, const M& m) {
    std::string out;
    protocol::write_method(out, ch, m);
    boost::asio::write(socket_, boost::asio::buffer(out));
  }
  void send_raw(std::string_view bytes) { boost::asio::write(socket_, boost::asio::buffer(bytes)); }
  void publish(uint16_t ch, std::string_view rk, std::string_view body, bool mandatory) {
    std::string out;
    protocol::basic_publish p;
    p.routing_key = std::string(rk);
    p.mandatory = mandatory;
    protocol::write_method(out, ch, p);
    protocol::content_header h;
    h.body_size = body.size();
    protocol::write_content_header_frame(out, ch, h);
    protocol::write_body_frames(out, ch, body, 131072);
    boost::asio::write(socket_, boost::asio::buffer(out));
  }
  // Next frame within `timeout`, or nullopt (heartbeats are skipped).
  std::optional<frame> next(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto r =
          protocol::parse_frame({reinterpret_cast<const uint8_t*>(buf_.data()), buf_.size()}, 0);
      if (r.status == protocol::parse_status::frame) {
        frame f{r.frame.type, r.frame.channel,
                std::string(reinterpret_cast<const char*>(r.frame.payload.data()),
                            r.frame.payload.size())};
        buf_.erase(0, r.consumed);
        if (f.type == protocol::frame_heartbeat) continue;
        return f;
      }
      auto left = deadline - std::chrono::steady_clock::now();
      if (left <= std::chrono::milliseconds(0)) return std::nullopt;
      char tmp[4096];
      socket_.non_blocking(true);
      boost::system::error_code ec;
      size_t n = socket_.read_some(boost::asio::buffer(tmp), ec);
      if (ec == boost::asio::error::would_block) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        continue;
      }
      if (ec) return std::nullopt;
      buf_.append(tmp, n);
    }
  }
  template <typename M>
  std::optional<M> expect(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto f = next(timeout);
    if (!f) return std::nullopt;
    auto m = f->decoded();
    if (!m || !std::holds_alternative<M>(*m)) return std::nullopt;
    return std::get<M>(*m);
  }
  // Handshake as guest up to connection.open-ok; `blocked_capability` announces
  // connection.blocked; `heartbeat` is the client's choice in tune-ok.
  bool open_connection(bool blocked_capability, uint16_t heartbeat = 0) {
    if (!tune(blocked_capability, heartbeat)) return false;
    protocol::connection_open open;
    open.virtual_host = "/";
    send(0, open);
    return expect<protocol::connection_open_ok>().has_value();
  }
  // The handshake up to tune-ok: connection.open is still to be sent.
  bool tune(bool blocked_capability = false, uint16_t heartbeat = 0) {
    boost::asio::write(socket_, boost::asio::buffer(protocol::protocol_header));
    if (!expect<protocol::connection_start>()) return false;
    protocol::connection_start_ok ok;
    protocol::field_table caps;
    caps.set("connection.blocked", blocked_capability);
    ok.client_properties.set("capabilities", caps);
    ok.mechanism = "PLAIN";
    ok.response = std::string("\0guest\0guest", 12);
    ok.locale = "en_US";
    send(0, ok);
    auto tune = expect<protocol::connection_tune>();
    if (!tune) return false;
    send(0, protocol::connection_tune_ok{tune->channel_max, tune->frame_max, heartbeat});
    return true;
  }
  // Full handshake as guest, and channel 1 opened.
  bool handshake(bool blocked_capability, uint16_t heartbeat = 0) {
    if (!open_connection(blocked_capability, heartbeat)) return false;
    send(1, protocol::channel_open{});
    return expect<protocol::channel_open_ok>().has_value();
  }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket socket_;
  std::string buf_;
};

}  // namespace warren::amqp::server::testing
