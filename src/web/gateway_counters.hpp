// What one worker counts for the web gateway: its open connections per transport, the events it
// wrote to them, slow readers cut off, and the delivery latency of live events. The gateway keeps
// one per worker; each is written and read only on its own worker's thread (plain fields, no
// atomics), and gateway::gather_stats adds them up by posting to every worker.
#pragma once

#include <array>
#include <cstdint>

#include "web/gateway_stats.hpp"

namespace warren::web {

// Aligned to a cache line so that two workers' counters never share one.
struct alignas(64) worker_counters {
  uint64_t websocket = 0;
  uint64_t sse = 0;
  uint64_t stream = 0;
  uint64_t longpoll = 0;  // waiting now
  uint64_t events_delivered = 0;
  uint64_t slow_readers_cut = 0;
  // Live deliveries per latency bucket (not cumulative): one per gateway_stats::latency_bounds,
  // then one for anything slower than the last bound.
  std::array<uint64_t, gateway_stats::latency_bounds.size() + 1> latency{};
  double latency_sum_seconds = 0;

  // `n` events written `seconds` after they were queued in the hub.
  void observe_latency(double seconds, uint64_t n);
  // Adds these counters to `s` (buckets made cumulative, as gateway_stats holds them).
  void add_to(gateway_stats& s) const;
};

}  // namespace warren::web
