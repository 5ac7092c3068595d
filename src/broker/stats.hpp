// Statistics kept by the objects they count, on the object's worker, and gathered when the
// management API or Prometheus asks. There is no central collector fed by events (RabbitMQ's
// stats database is its users' most common management complaint): a queue counts its own
// deliveries and keeps a short history of samples; a worker counts the broker-wide totals of
// what ran on it; a request adds them up.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace warren::broker {

// Wall-clock milliseconds since the epoch: the timestamps the API shows.
int64_t wall_ms();

// The last `Capacity` samples of `Series` values (cumulative counters or gauges), taken every
// interval_ms. Each sample keeps the low 32 bits of each value and the newest sample its full
// values, so a sample costs 4 bytes a series: an older value is the newest minus the signed
// 32-bit difference, exact while values move by less than 2^31 between the two samples.
// Nothing is allocated until a sample has a non-zero value, so an idle object costs only the
// fixed members (a 100 000-queue broker mostly holds idle queues).
template <size_t Series, size_t Capacity>
class sample_history {
 public:
  static constexpr int64_t interval_ms = 5000;
  using values = std::array<uint64_t, Series>;

  // Takes a sample at `now` (wall ms), aligned down to the interval. A sample in an interval
  // already sampled replaces it; intervals missed since the last one repeat its values.
  void record(int64_t now, const values& v) {
    int64_t t = now - now % interval_ms;
    if (!ring_) {
      bool any = false;
      for (uint64_t x : v) any = any || x != 0;
      if (!any) return;
      ring_ = std::make_unique<std::array<uint32_t, Series * Capacity>>();
    }
    if (count_ > 0 && t <= newest_ms_) {
      store(head_, v);
      newest_ = v;
      return;
    }
    if (count_ > 0) {
      int64_t gaps = (t - newest_ms_) / interval_ms - 1;
      for (int64_t i = 0; i < gaps && i < int64_t(Capacity); ++i) push(newest_);
    }
    push(v);
    newest_ = v;
    newest_ms_ = t;
  }
  // A deep copy (a request takes one to render samples on another worker).
  void copy_from(const sample_history& o) {
    ring_ = o.ring_ ? std::make_unique<std::array<uint32_t, Series * Capacity>>(*o.ring_) : nullptr;
    newest_ = o.newest_;
    newest_ms_ = o.newest_ms_;
    head_ = o.head_;
    count_ = o.count_;
  }
  size_t size() const { return count_; }
  int64_t newest_time() const { return newest_ms_; }
  // The value of series s in the sample `back` intervals before the newest (0: the newest).
  uint64_t value(size_t s, size_t back) const {
    size_t slot = (head_ + Capacity - back) % Capacity;
    uint32_t low = (*ring_)[slot * Series + s];
    int32_t diff = int32_t(uint32_t(newest_[s]) - low);
    return uint64_t(int64_t(newest_[s]) - diff);
  }
  // Per second over the newest interval; 0 with fewer than two samples.
  double rate(size_t s) const {
    if (count_ < 2) return 0;
    return double(int64_t(value(s, 0) - value(s, 1))) * 1000.0 / double(interval_ms);
  }
  // fn(timestamp, value) for the samples of series s within `age_ms` of the newest, one every
  // `incr_ms` (rounded to intervals), newest first.
  template <typename F>
  void for_each_sample(size_t s, int64_t age_ms, int64_t incr_ms, F&& fn) const {
    size_t step = size_t(std::max<int64_t>(1, incr_ms / interval_ms));
    for (size_t back = 0; back < count_; back += step) {
      int64_t t = newest_ms_ - int64_t(back) * interval_ms;
      if (newest_ms_ - t > age_ms) break;
      fn(t, value(s, back));
    }
  }
  // Bytes this history holds beyond sizeof(*this).
  size_t heap_bytes() const { return ring_ ? sizeof(*ring_) : 0; }

 private:
  void store(size_t slot, const values& v) {
    for (size_t s = 0; s < Series; ++s) (*ring_)[slot * Series + s] = uint32_t(v[s]);
  }
  void push(const values& v) {
    head_ = count_ == 0 ? 0 : (head_ + 1) % Capacity;
    store(head_, v);
    if (count_ < Capacity) ++count_;
  }

  std::unique_ptr<std::array<uint32_t, Series * Capacity>> ring_;
  values newest_{};
  int64_t newest_ms_ = 0;
  uint16_t head_ = 0;
  uint16_t count_ = 0;
};

// What happened to a queue's messages, counted on its worker (RabbitMQ's message_stats).
struct queue_counters {
  uint64_t publish = 0;         // messages enqueued
  uint64_t deliver = 0;         // to consumers that acknowledge
  uint64_t deliver_no_ack = 0;  // to consumers that do not
  uint64_t get = 0;             // basic.get that acknowledge
  uint64_t get_no_ack = 0;
  uint64_t get_empty = 0;
  uint64_t redeliver = 0;  // deliveries and gets of redelivered messages
  uint64_t ack = 0;
  uint64_t deliver_get() const { return deliver + deliver_no_ack + get + get_no_ack; }
};

// A queue's history: ready, unacknowledged, publish, deliver_get, ack, redeliver. 32 samples
// (160 s) keep a busy queue's stats within 1 KB; the broker-wide history keeps 120 (10 min).
enum queue_series : size_t {
  qs_ready,
  qs_unacked,
  qs_publish,
  qs_deliver_get,
  qs_ack,
  qs_redeliver
};
using queue_history = sample_history<6, 32>;

// An exchange's message_stats: publish_in (published to it), publish_out (routed onwards).
struct exchange_counters {
  uint64_t publish_in = 0;
  uint64_t publish_out = 0;
};
using exchange_history = sample_history<2, 32>;

// Broker-wide counters with RabbitMQ's global metric names. Each thread that counts has its own
// block (a worker's thread, whatever vhost or connection it serves), written by that thread
// only, so an increment is a plain load and store; readers on other threads add the blocks up.
struct global_counters {
  enum id : size_t {
    // publishing (the channel's worker)
    received,
    received_confirm,
    confirmed,
    unroutable_returned,
    // routing and delivery (the vhost's worker)
    routed,
    unroutable_dropped,
    delivered_consume_manual_ack,
    delivered_consume_auto_ack,
    delivered_get_manual_ack,
    delivered_get_auto_ack,
    get_empty,
    redelivered,
    acknowledged,
    dead_lettered_expired,
    dead_lettered_rejected,
    dead_lettered_maxlen,
    // churn
    connections_opened,
    connections_closed,
    channels_opened,
    channels_closed,
    queues_declared,
    queues_created,
    queues_deleted,
    // rabbitmq_message_size_bytes: buckets <= 100, 1e3, 1e4, 1e5, 1e6, 1e7, 5e7, 1e8, +Inf
    size_le_100,
    size_le_1e3,
    size_le_1e4,
    size_le_1e5,
    size_le_1e6,
    size_le_1e7,
    size_le_5e7,
    size_le_1e8,
    size_le_inf,
    size_sum,
    auth_attempts,
    auth_failed,
    count_
  };
  std::array<std::atomic<uint64_t>, count_> v{};

  void add(id i, uint64_t n = 1) {
    v[i].store(v[i].load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  // The calling thread's block (registered on first use, kept until the process exits).
  static global_counters& local();
  // The sum of every thread's block.
  static std::array<uint64_t, count_> total();
  // A published message's size into the histogram.
  void observe_size(uint64_t bytes);
};

inline void count(global_counters::id i, uint64_t n = 1) {
  global_counters::local().add(i, n);
}

// The broker-wide history the overview charts: lengths and rates summed over every vhost and
// thread. Sampled every interval by the broker's stats timer (see app/main.cpp); read by requests.
enum overview_series : size_t {
  os_ready,
  os_unacked,
  os_publish,
  os_confirm,
  os_deliver_get,
  os_deliver,
  os_deliver_no_ack,
  os_get,
  os_get_no_ack,
  os_get_empty,
  os_ack,
  os_redeliver,
  os_return_unroutable,
  os_drop_unroutable,
  os_count_
};
using overview_history = sample_history<os_count_, 120>;

}  // namespace warren::broker
