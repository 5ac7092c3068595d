// What the web gateway reports about itself: open connections per transport, users, inboxes and
// rooms it holds, and how many events it delivered and how fast. Read by the management API
// (GET /api/warren/gateway) and by the Prometheus endpoint (warren_gateway_* families); a plain
// value gathered on request, so neither of those modules depends on the gateway's classes.
#pragma once

#include <array>
#include <cstdint>

namespace warren::web {

struct gateway_stats {
  // Open connections per transport.
  uint64_t websocket = 0;
  uint64_t sse = 0;
  uint64_t stream = 0;    // chunked HTTP stream
  uint64_t longpoll = 0;  // long-polls waiting at this moment
  uint64_t online_users = 0;  // users with at least one open connection
  uint64_t inboxes = 0;
  uint64_t held_events = 0;  // events kept in all inboxes
  uint64_t rooms = 0;
  // Counters since start.
  uint64_t events_delivered = 0;  // events written to a connection (live or replayed)
  uint64_t replays = 0;           // resumes answered with the events missed
  uint64_t resets = 0;            // resumes answered with a reset (position no longer held)
  uint64_t slow_readers_cut = 0;  // connections that stopped taking live events to catch up later
  // Delivery latency, from the event reaching the hub to its write on a connection: a Prometheus
  // histogram (cumulative counts per upper bound in seconds, then +Inf = latency_count).
  static constexpr std::array<double, 12> latency_bounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                         0.05,   0.1,   0.25,   0.5,   1.0,  2.5};
  std::array<uint64_t, latency_bounds.size()> latency_buckets{};
  uint64_t latency_count = 0;
  double latency_sum_seconds = 0;
};

}  // namespace warren::web
