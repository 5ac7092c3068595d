// A worker's gateway counters: the latency histogram and the sum into gateway_stats.
#include "web/gateway_counters.hpp"

#include <algorithm>

namespace warren::web {

void worker_counters::observe_latency(double seconds, uint64_t n) {
  const auto& b = gateway_stats::latency_bounds;
  // Prometheus buckets are upper bounds, inclusive: the first bound >= the value.
  size_t i = size_t(std::lower_bound(b.begin(), b.end(), seconds) - b.begin());
  latency[i] += n;
  latency_sum_seconds += seconds * double(n);
}

void worker_counters::add_to(gateway_stats& s) const {
  s.websocket += websocket;
  s.sse += sse;
  s.stream += stream;
  s.longpoll += longpoll;
  s.events_delivered += events_delivered;
  s.slow_readers_cut += slow_readers_cut;
  uint64_t below = 0;
  for (size_t i = 0; i < s.latency_buckets.size(); ++i) {
    below += latency[i];
    s.latency_buckets[i] += below;
  }
  s.latency_count += below + latency.back();
  s.latency_sum_seconds += latency_sum_seconds;
}

}  // namespace warren::web
