// Producer pacing and confirm window, consumer acking and latency, admin topology.
#include "warren-perf/roles.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>

namespace warren::perf {

namespace {

// Publishing stops adding to the output buffer past this size until the write in flight ends:
// large enough for few syscalls, small enough that timestamps are not taken long before the send.
constexpr size_t batch_bytes = 64 * 1024;

uint64_t now_ns() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count());
}

}  // namespace

producer::producer(boost::asio::io_context& io, std::string name, broker_address addr,
                   client_events events, producer_options opts)
    : client(io, std::move(name), std::move(addr), std::move(events)),
      opts_(std::move(opts)),
      timer_(io) {
  if (opts_.confirm_window > 0) unsettled_.resize(std::bit_ceil(size_t(opts_.confirm_window)));
}

void producer::setup() {
  if (opts_.confirm_window > 0) call(protocol::confirm_select{});
}

void producer::on_ready() {
  // frame_max is known only after the handshake; the body may need several frames.
  protocol::basic_publish p;
  p.exchange = opts_.exchange;
  p.routing_key = opts_.routing_key;
  p.mandatory = opts_.mandatory;
  protocol::write_method(template_, channel, p);
  protocol::content_header h;
  h.body_size = opts_.size;
  if (opts_.persistent) h.properties.delivery_mode = 2;
  protocol::write_content_header_frame(template_, channel, h);
  ts_offset_ = template_.size() + protocol::frame_header_size;
  protocol::write_body_frames(template_, channel, std::string(opts_.size, 'x'), frame_max_);
}

void producer::begin(std::chrono::steady_clock::time_point start) {
  start_ = start;
  start_ns_ = uint64_t(
      std::chrono::duration_cast<std::chrono::nanoseconds>(start.time_since_epoch()).count());
  running_ = true;
  pump();
}

void producer::halt() {
  running_ = false;
  timer_.cancel();
}

void producer::on_blocked(bool blocked) {
  blocked_ = blocked;
  if (!blocked) pump();
}

// Publishes what the rate allows, within the confirm window and the batch size, then writes.
// Called whenever one of those limits may have moved: timer, write done, confirm, unblocked.
void producer::pump() {
  if (!running_ || blocked_ || failed()) return;
  uint64_t now = now_ns();
  uint64_t allowed = UINT64_MAX;
  if (opts_.rate > 0) {
    // Message k is due at start + k / rate.
    double elapsed = now > start_ns_ ? double(now - start_ns_) / 1e9 : 0;
    auto due = uint64_t(elapsed * opts_.rate) + 1;
    allowed = due > sent_ ? due - sent_ : 0;
  }
  if (opts_.messages > 0) allowed = std::min(allowed, opts_.messages - sent_);
  while (allowed > 0 && out_.size() < batch_bytes &&
         (opts_.confirm_window == 0 || next_tag_ - low_ < opts_.confirm_window)) {
    publish(now);
    --allowed;
  }
  flush();
  bool all_sent = opts_.messages > 0 && sent_ >= opts_.messages;
  if (opts_.rate > 0 && allowed == 0 && !all_sent && !timer_armed_) {
    timer_armed_ = true;
    timer_.expires_at(start_ +
                      std::chrono::nanoseconds(uint64_t(double(sent_) * 1e9 / opts_.rate)));
    timer_.async_wait([self = std::static_pointer_cast<producer>(shared_from_this())](
                          const boost::system::error_code& ec) {
      self->timer_armed_ = false;
      if (!ec) self->pump();
    });
  }
}

void producer::publish(uint64_t now) {
  size_t at = out_.size();
  out_.append(template_);
  if (opts_.size >= sizeof now) std::memcpy(out_.data() + at + ts_offset_, &now, sizeof now);
  ++sent_;
  bump(stats_.published);
  if (opts_.confirm_window > 0) unsettled_[next_tag_++ & (unsettled_.size() - 1)] = 1;
}

void producer::settle(uint64_t tag, bool ack) {
  uint8_t& u = unsettled_[tag & (unsettled_.size() - 1)];
  if (!u) return;
  u = 0;
  bump(ack ? stats_.confirmed : stats_.nacked);
}

void producer::on_confirm(uint64_t tag, bool multiple, bool ack) {
  if (opts_.confirm_window == 0 || tag < low_ || tag >= next_tag_) return;
  if (multiple) {
    for (uint64_t t = low_; t <= tag; ++t) settle(t, ack);
  } else {
    settle(tag, ack);
  }
  while (low_ < next_tag_ && !unsettled_[low_ & (unsettled_.size() - 1)]) ++low_;
  pump();
}

consumer::consumer(boost::asio::io_context& io, std::string name, broker_address addr,
                   client_events events, consumer_options opts, latency_histogram& latencies,
                   const std::atomic<bool>& measuring)
    : client(io, std::move(name), std::move(addr), std::move(events)),
      opts_(std::move(opts)),
      latencies_(latencies),
      measuring_(measuring) {
  // Acking every N with fewer than N unacked allowed would stall the consumer.
  if (opts_.ack_every == 0) opts_.ack_every = 1;
  if (opts_.prefetch > 0 && opts_.ack_every > opts_.prefetch) opts_.ack_every = opts_.prefetch;
}

void consumer::setup() {
  if (!opts_.autoack && opts_.prefetch > 0) call(protocol::basic_qos{0, opts_.prefetch, false});
  protocol::basic_consume c;
  c.queue = opts_.queue;
  c.consumer_tag = name();
  c.no_ack = opts_.autoack;
  call(c);
}

void consumer::on_delivery(uint64_t tag, std::span<const uint8_t> first_bytes) {
  uint64_t sent;
  if (first_bytes.size() == sizeof sent && measuring_.load(std::memory_order_relaxed)) {
    std::memcpy(&sent, first_bytes.data(), sizeof sent);
    uint64_t now = now_ns();
    // A body not written by warren-perf (or a clock from another run) gives nonsense: skip it.
    if (sent <= now && now - sent < uint64_t(3600) * 1'000'000'000) {
      latencies_.record(now - sent);
      bump(stats_.latency_sum_ns, now - sent);
      bump(stats_.latency_count);
    }
  }
  if (!opts_.autoack && tag - acked_upto_ >= opts_.ack_every) {
    send(protocol::basic_ack{tag, opts_.ack_every > 1});
    acked_upto_ = tag;
  }
}

admin::admin(boost::asio::io_context& io, broker_address addr, client_events events, topology t)
    : client(io, "warren-perf-admin", std::move(addr), std::move(events)),
      topology_(std::move(t)) {}

// Declares (and, unless kept, empties in case an earlier run left messages) every queue; with a
// fanout exchange, binds each queue to it. All pipelined: replies come back in order.
void admin::setup() {
  if (!topology_.fanout_exchange.empty()) {
    protocol::exchange_declare x;
    x.exchange = topology_.fanout_exchange;
    x.type = "fanout";
    x.durable = topology_.durable;
    call(x);
  }
  for (const auto& q : topology_.queues) {
    protocol::queue_declare d;
    d.queue = q;
    d.durable = topology_.durable;
    call(d);
    if (!topology_.keep) {
      protocol::queue_purge p;
      p.queue = q;
      call(p);
    }
    if (!topology_.fanout_exchange.empty()) {
      protocol::queue_bind b;
      b.queue = q;
      b.exchange = topology_.fanout_exchange;
      call(b);
    }
  }
}

void admin::remove_topology(std::function<void()> done) {
  if (failed()) return done();
  auto remaining = std::make_shared<size_t>(topology_.queues.size() +
                                            (topology_.fanout_exchange.empty() ? 0 : 1));
  auto one_done = [remaining, done](const protocol::method&) {
    if (--*remaining == 0) done();
  };
  for (const auto& q : topology_.queues) {
    protocol::queue_delete d;
    d.queue = q;
    call(d, one_done);
  }
  if (!topology_.fanout_exchange.empty()) {
    protocol::exchange_delete x;
    x.exchange = topology_.fanout_exchange;
    call(x, one_done);
  }
  if (*remaining == 0) done();
}

}  // namespace warren::perf
