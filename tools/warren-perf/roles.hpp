// The three kinds of warren-perf connection: producer (publishes at a rate or flat out, with an
// optional confirm window), consumer (one queue, prefetch, acks every N or auto-ack) and admin
// (declares the topology before the run and deletes it after). Each lives on one I/O thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "warren-perf/client.hpp"

namespace warren::perf {

struct producer_options {
  std::string exchange;         // "" (default exchange) or the fanout exchange
  std::string routing_key;      // the queue name for the default exchange
  size_t size = 16;             // body bytes; the first 8 carry the send time
  double rate = 0;              // messages per second; 0 = as fast as the broker takes them
  uint32_t confirm_window = 0;  // 0 = no publisher confirms
  uint64_t messages = 0;        // stop after this many; 0 = no limit
  bool persistent = false;
  bool mandatory = false;
};

class producer : public client {
 public:
  producer(boost::asio::io_context& io, std::string name, broker_address addr, client_events events,
           producer_options opts);
  // I/O thread: publish from `start` on (the common start of all producers) until halt().
  void begin(std::chrono::steady_clock::time_point start);
  void halt();

 protected:
  void setup() override;
  void on_ready() override;
  void on_write_done() override { pump(); }
  void on_blocked(bool blocked) override;
  void on_confirm(uint64_t tag, bool multiple, bool ack) override;

 private:
  void pump();
  void publish(uint64_t now_ns);
  void settle(uint64_t tag, bool ack);

  producer_options opts_;
  boost::asio::steady_timer timer_;
  bool timer_armed_ = false;
  bool running_ = false;
  bool blocked_ = false;
  std::chrono::steady_clock::time_point start_;
  uint64_t start_ns_ = 0;
  uint64_t sent_ = 0;
  // One message's frames (method, header, body), encoded once and copied per message; the
  // timestamp is patched in at ts_offset_.
  std::string template_;
  size_t ts_offset_ = 0;
  // Confirm window: delivery tags [low_, next_tag_) are in flight; unsettled_ is a ring indexed by
  // tag (size a power of two >= the window) saying which of them still wait for their ack.
  uint64_t low_ = 1;
  uint64_t next_tag_ = 1;
  std::vector<uint8_t> unsettled_;
};

struct consumer_options {
  std::string queue;
  uint16_t prefetch = 0;  // 0 = no basic.qos
  uint32_t ack_every = 1;
  bool autoack = false;
};

class consumer : public client {
 public:
  consumer(boost::asio::io_context& io, std::string name, broker_address addr, client_events events,
           consumer_options opts, latency_histogram& latencies, const std::atomic<bool>& measuring);

 protected:
  void setup() override;
  void on_delivery(uint64_t tag, std::span<const uint8_t> first_bytes) override;
  // After the measured window the tool deletes the queues itself: a cancel is then expected.
  void on_cancelled() override {
    if (measuring_.load()) client::on_cancelled();
  }

 private:
  consumer_options opts_;
  latency_histogram& latencies_;  // owned by this consumer's I/O thread
  // Latencies count only inside the measured window: the backlog a broker delivers after the
  // producers stop would otherwise dominate the percentiles.
  const std::atomic<bool>& measuring_;
  uint64_t acked_upto_ = 0;
};

struct topology {
  std::vector<std::string> queues;
  std::string fanout_exchange;  // empty: none
  bool durable = false;
  bool keep = false;  // reuse the queues as they are (no purge) and leave them at the end
};

class admin : public client {
 public:
  admin(boost::asio::io_context& io, broker_address addr, client_events events, topology t);
  // I/O thread: deletes the queues and the exchange, then calls done (also on failure). Not
  // called with topology::keep.
  void remove_topology(std::function<void()> done);

 protected:
  void setup() override;

 private:
  topology topology_;
};

}  // namespace warren::perf
