// warren-perf: starts the I/O threads, declares the topology, connects consumers then producers,
// prints rates every second, stops after --duration and prints the summary (text or one JSON line).
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <thread>

#include "warren-perf/crowd.hpp"
#include "warren-perf/options.hpp"
#include "warren-perf/roles.hpp"

namespace warren::perf {
namespace {

using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::atomic<bool> interrupted{false};
void on_signal(int) {
  interrupted = true;
}

// One event loop and its thread. Connections on it record latencies into its histogram, so no
// histogram is shared between threads.
struct io_thread {
  boost::asio::io_context io{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard{io.get_executor()};
  latency_histogram latencies;
  std::thread thread;
};

// Collects the clients' ready/failed/closed events (from the I/O threads) for the main thread.
class tracker {
 public:
  client_events events() {
    return {[this] { update([&] { ++ready_; }); },
            [this](const std::string& who, const std::string& error) {
              std::fprintf(stderr, "warren-perf: %s: %s\n", who.c_str(), error.c_str());
              update([&] { ++failed_; });
            },
            [this] { update([&] { ++closed_; }); }};
  }
  void notify() {
    update([] {});
  }
  // Waits until pred() holds (under the lock) or the time-out passes; returns pred().
  template <typename P>
  bool wait(P pred, clock::duration timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return pred(*this); });
  }
  // For wait() predicates only (they run under the lock).
  int ready() const { return ready_; }
  int failed() const { return failed_; }
  int closed() const { return closed_; }
  bool any_failed() {
    std::lock_guard lock(mu_);
    return failed_ > 0;
  }

 private:
  template <typename F>
  void update(F f) {
    {
      std::lock_guard lock(mu_);
      f();
    }
    cv_.notify_all();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  int ready_ = 0, failed_ = 0, closed_ = 0;
};

struct totals {
  uint64_t published = 0, confirmed = 0, nacked = 0, returned = 0, received = 0;
  uint64_t latency_sum_ns = 0, latency_count = 0, blocked = 0;
};

totals sum(const std::vector<std::shared_ptr<client>>& clients) {
  totals t;
  auto r = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  for (const auto& c : clients) {
    auto& s = c->stats();
    t.published += r(s.published);
    t.confirmed += r(s.confirmed);
    t.nacked += r(s.nacked);
    t.returned += r(s.returned);
    t.received += r(s.received);
    t.latency_sum_ns += r(s.latency_sum_ns);
    t.latency_count += r(s.latency_count);
    t.blocked += r(s.blocked);
  }
  return t;
}

double seconds(clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

int run(const options& o) {
  const bool confirms = o.confirm > 0;
  const bool timed = o.size >= 8 && o.consumers > 0;
  std::FILE* progress = o.json ? stderr : stdout;

  int connections = o.producers + o.consumers;
  int threads = o.threads > 0 ? o.threads
                              : std::clamp(int(std::thread::hardware_concurrency()), 1,
                                           std::max(1, connections));
  std::vector<std::unique_ptr<io_thread>> io;
  for (int i = 0; i < threads; ++i) {
    io.push_back(std::make_unique<io_thread>());
    io.back()->thread = std::thread([t = io.back().get()] { t->io.run(); });
  }
  auto stop_threads = [&] {
    for (auto& t : io) t->guard.reset();
    for (auto& t : io) {
      // Anything still pending after the clients closed (a stuck socket) is abandoned.
      t->io.stop();
      t->thread.join();
    }
  };

  tracker tr;
  std::atomic<bool> measuring{false};
  topology topo;
  for (int i = 0; i < o.queues; ++i) topo.queues.push_back(o.prefix + "q-" + std::to_string(i));
  if (o.fanout > 0) topo.fanout_exchange = o.prefix + "fanout";
  topo.durable = o.durable;
  topo.keep = o.keep_queues;

  auto adm = std::make_shared<admin>(io[0]->io, o.address, tr.events(), topo);
  boost::asio::post(io[0]->io, [adm] { adm->start(); });
  auto close_admin = [&] {
    boost::asio::post(io[0]->io, [adm] { adm->close(); });
    tr.wait([](tracker& t) { return t.closed() >= 1; }, 5s);
  };
  if (!tr.wait([](tracker& t) { return t.ready() == 1 || t.failed() > 0; }, 30s) ||
      tr.any_failed()) {
    if (!tr.any_failed())
      std::fprintf(stderr, "warren-perf: no answer from %s:%u within 30 s\n",
                   o.address.host.c_str(), o.address.port);
    close_admin();
    stop_threads();
    return 1;
  }

  // Consumers first, so that nothing published is dropped for want of a queue or consumer.
  // Connections go round-robin over the threads, so 1 producer + 1 consumer use two threads.
  std::vector<std::shared_ptr<client>> clients;
  std::vector<std::shared_ptr<producer>> producers;
  for (int i = 0; i < o.consumers; ++i) {
    auto& t = *io[size_t(i) % io.size()];
    consumer_options co{topo.queues[size_t(i) % topo.queues.size()], o.prefetch, o.multi_ack_every,
                        o.autoack};
    clients.push_back(std::make_shared<consumer>(t.io, "consumer-" + std::to_string(i), o.address,
                                                 tr.events(), co, t.latencies, measuring));
  }
  for (int i = 0; i < o.producers; ++i) {
    auto& t = *io[size_t(o.consumers + i) % io.size()];
    producer_options po;
    if (o.fanout > 0) {
      po.exchange = topo.fanout_exchange;
    } else {
      po.routing_key = topo.queues[size_t(i) % topo.queues.size()];
    }
    po.size = o.size;
    po.rate = o.rate;
    po.confirm_window = o.confirm;
    po.messages = o.pmessages;
    po.persistent = o.persistent;
    po.mandatory = o.mandatory;
    producers.push_back(std::make_shared<producer>(t.io, "producer-" + std::to_string(i), o.address,
                                                   tr.events(), po));
    clients.push_back(producers.back());
  }
  for (auto& c : clients) boost::asio::post(c->io(), [c] { c->start(); });
  int expected = 1 + connections;
  bool started =
      tr.wait([expected](tracker& t) { return t.ready() == expected || t.failed() > 0; }, 60s);

  // Idle and churning connections (--idle, --churn): the idle ones are all up before the measured
  // window; the churners run during it.
  std::vector<boost::asio::io_context*> loops;
  for (auto& t : io) loops.push_back(&t->io);
  crowd crowd_(loops, o.address, o.idle, o.churn, o.channel_cycles);
  const bool has_crowd = o.idle > 0 || o.churn > 0;
  if (started && !tr.any_failed() && o.idle > 0) {
    auto limit = std::chrono::seconds(30) +
                 std::chrono::seconds(o.connect_rate > 0 ? int64_t(o.idle / o.connect_rate) : 0);
    if (!crowd_.open_idle(o.connect_rate, limit)) {
      std::fprintf(stderr, "warren-perf: %llu of %d idle connections open (%llu failed)\n",
                   static_cast<unsigned long long>(crowd_.counts().idle_open.load()), o.idle,
                   static_cast<unsigned long long>(crowd_.counts().idle_failed.load()));
      started = false;
    } else {
      std::fprintf(progress, "%d idle connections open\n", o.idle);
    }
  }

  // A run with no consumers whose producers each have a message count ends once every producer
  // has sent it and, with confirms, had it settled: the broker then holds all of them.
  auto all_sent = [&] {
    if (o.pmessages == 0 || o.consumers > 0) return false;
    for (const auto& p : producers) {
      const auto& s = p->stats();
      if (s.published.load(std::memory_order_relaxed) < o.pmessages) return false;
      if (confirms &&
          s.confirmed.load(std::memory_order_relaxed) + s.nacked.load(std::memory_order_relaxed) <
              o.pmessages)
        return false;
    }
    return true;
  };

  std::vector<double> sent_rates, confirmed_rates, received_rates;
  totals final_totals;
  double elapsed = 0;
  if (started && !tr.any_failed()) {
    auto t0 = clock::now() + 10ms;
    measuring = true;
    crowd_.start_churn();
    for (auto& p : producers) boost::asio::post(p->io(), [p, t0] { p->begin(t0); });
    std::this_thread::sleep_until(t0);
    auto end =
        t0 + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(o.duration));
    totals prev;
    auto prev_time = t0;
    uint64_t prev_cycles = 0;
    for (int second = 1;; ++second) {
      auto deadline = std::min(t0 + std::chrono::seconds(second), end);
      bool finished = false;
      while (clock::now() < deadline && !interrupted && !tr.any_failed() &&
             !(finished = all_sent()))
        std::this_thread::sleep_until(std::min(deadline, clock::now() + 50ms));
      auto now = clock::now();
      totals cur = sum(clients);
      double dt = seconds(now - prev_time);
      bool full = deadline == t0 + std::chrono::seconds(second) && dt > 0.5;
      if (full) {
        double sent = double(cur.published - prev.published) / dt;
        double conf = double(cur.confirmed - prev.confirmed) / dt;
        double recv = double(cur.received - prev.received) / dt;
        sent_rates.push_back(sent);
        confirmed_rates.push_back(conf);
        received_rates.push_back(recv);
        std::string line =
            fmt::format("time {:6.1f} s, sent {:9.0f} msg/s", seconds(now - t0), sent);
        if (confirms) line += fmt::format(", confirmed {:9.0f} msg/s", conf);
        line += fmt::format(", received {:9.0f} msg/s", recv);
        uint64_t lc = cur.latency_count - prev.latency_count;
        if (timed && lc > 0)
          line += fmt::format(", latency mean {:.0f} us",
                              double(cur.latency_sum_ns - prev.latency_sum_ns) / double(lc) / 1e3);
        if (cur.blocked > prev.blocked) line += ", BLOCKED";
        if (has_crowd) {
          uint64_t cycles = crowd_.counts().churn_cycles.load();
          line += fmt::format(", idle {}, churn {:.0f} conn/s",
                              crowd_.counts().idle_open.load() - crowd_.counts().idle_failed.load(),
                              double(cycles - prev_cycles) / dt);
          prev_cycles = cycles;
        }
        std::fprintf(progress, "%s\n", line.c_str());
        std::fflush(progress);
      }
      prev = cur;
      prev_time = now;
      if (now >= end || interrupted || tr.any_failed() || finished) {
        measuring = false;
        elapsed = seconds(now - t0);
        final_totals = cur;
        break;
      }
    }
  }

  crowd_.stop(10s);
  // Tear down in the order that ends an overloaded broker's work soonest: stop publishing and
  // close the producers; delete the queues (dropping any backlog; consumers get basic.cancel, which
  // is expected now) unless they are kept; then close the consumers and the admin connection.
  // Every step is bounded.
  for (auto& p : producers)
    boost::asio::post(p->io(), [p] {
      p->halt();
      p->close();
    });
  size_t n_producers = producers.size();
  tr.wait([n_producers](tracker& t) { return size_t(t.closed()) >= n_producers; }, 10s);
  // With confirms and consumers, every confirmed message must reach a consumer: wait (at most
  // 15 s) for the consumers to catch up, then count what did not arrive. With a fanout each
  // message is expected once per queue. A redelivery counts twice, so this can only err towards
  // "nothing lost" when messages are redelivered, which no broker does without a failure.
  uint64_t expected_deliveries = 0, unreceived = 0;
  if (confirms && o.consumers > 0 && started) {
    uint64_t copies = o.fanout > 0 ? uint64_t(o.fanout) : 1;
    auto deadline = clock::now() + 15s;
    totals t;
    do {
      t = sum(clients);
      expected_deliveries = t.confirmed * copies;
      if (t.received >= expected_deliveries) break;
      std::this_thread::sleep_for(50ms);
    } while (clock::now() < deadline && !tr.any_failed());
    unreceived = t.received >= expected_deliveries ? 0 : expected_deliveries - t.received;
    if (unreceived > 0)
      std::fprintf(stderr, "warren-perf: %llu confirmed deliveries never arrived\n",
                   static_cast<unsigned long long>(unreceived));
  }
  if (!o.keep_queues) {
    std::atomic<bool> removed{false};
    boost::asio::post(io[0]->io, [&] {
      adm->remove_topology([&] {
        removed = true;
        tr.notify();
      });
    });
    tr.wait([&](tracker&) { return removed.load() || adm->failed(); }, 30s);
    if (!removed) std::fprintf(stderr, "warren-perf: could not delete the perf-q-* queues\n");
  }
  for (auto& c : clients) boost::asio::post(c->io(), [c] { c->close(); });
  size_t n_clients = clients.size();
  tr.wait([n_clients](tracker& t) { return size_t(t.closed()) >= n_clients; }, 10s);
  boost::asio::post(io[0]->io, [adm] { adm->close(); });
  tr.wait([n_clients](tracker& t) { return size_t(t.closed()) >= n_clients + 1; }, 5s);
  stop_threads();
  if (!started || elapsed == 0) return 1;

  latency_histogram lat;
  for (auto& t : io) lat.merge(t->latencies);
  auto us = [](uint64_t ns) { return double(ns) / 1e3; };
  const auto& t = final_totals;
  if (o.json) {
    nlohmann::json j = {
        {"scenario", o.scenario},
        {"producers", o.producers},
        {"consumers", o.consumers},
        {"queues", o.queues},
        {"fanout", o.fanout},
        {"size", o.size},
        {"rate", o.rate},
        {"confirm", o.confirm},
        {"persistent", o.persistent},
        {"duration_s", elapsed},
        {"sent", t.published},
        {"confirmed", t.confirmed},
        {"nacked", t.nacked},
        {"returned", t.returned},
        {"received", t.received},
        {"blocked", t.blocked},
        {"sent_rate", double(t.published) / elapsed},
        {"confirmed_rate", double(t.confirmed) / elapsed},
        {"received_rate", double(t.received) / elapsed},
        {"sent_rate_median", median(sent_rates)},
        {"confirmed_rate_median", median(confirmed_rates)},
        {"received_rate_median", median(received_rates)},
        {"latency_us",
         {{"samples", lat.count()},
          {"p50", us(lat.quantile(0.50))},
          {"p95", us(lat.quantile(0.95))},
          {"p99", us(lat.quantile(0.99))},
          {"max", us(lat.max())}}},
        {"confirmed_expected", expected_deliveries},
        {"confirmed_unreceived", unreceived},
        {"idle", o.idle},
        {"idle_open", crowd_.counts().idle_open.load()},
        {"idle_failed", crowd_.counts().idle_failed.load()},
        {"churn", o.churn},
        {"churn_cycles", crowd_.counts().churn_cycles.load()},
        {"churn_failed", crowd_.counts().churn_failed.load()},
        {"errors", tr.any_failed() ? 1 : 0},
    };
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("summary: %.1f s, %d producer(s), %d consumer(s), %zu B messages\n", elapsed,
                o.producers, o.consumers, o.size);
    auto row = [&](const char* what, uint64_t n, const std::vector<double>& rates) {
      std::printf("  %-9s %12llu msgs, %10.0f msg/s average, %10.0f msg/s median per second\n",
                  what, static_cast<unsigned long long>(n), double(n) / elapsed, median(rates));
    };
    row("sent", t.published, sent_rates);
    if (confirms) row("confirmed", t.confirmed, confirmed_rates);
    row("received", t.received, received_rates);
    std::printf("  nacked %llu, returned %llu, connection.blocked %llu time(s)\n",
                static_cast<unsigned long long>(t.nacked),
                static_cast<unsigned long long>(t.returned),
                static_cast<unsigned long long>(t.blocked));
    if (confirms && o.consumers > 0)
      std::printf("  confirmed and never received: %llu (of %llu expected)\n",
                  static_cast<unsigned long long>(unreceived),
                  static_cast<unsigned long long>(expected_deliveries));
    if (has_crowd)
      std::printf("  idle %llu open, %llu failed; churn %llu connections (%.0f/s), %llu failed\n",
                  static_cast<unsigned long long>(crowd_.counts().idle_open.load()),
                  static_cast<unsigned long long>(crowd_.counts().idle_failed.load()),
                  static_cast<unsigned long long>(crowd_.counts().churn_cycles.load()),
                  double(crowd_.counts().churn_cycles.load()) / elapsed,
                  static_cast<unsigned long long>(crowd_.counts().churn_failed.load()));
    if (timed && lat.count() > 0)
      std::printf("  latency   p50 %.0f us, p95 %.0f us, p99 %.0f us, max %.0f us (%llu samples)\n",
                  us(lat.quantile(0.50)), us(lat.quantile(0.95)), us(lat.quantile(0.99)),
                  us(lat.max()), static_cast<unsigned long long>(lat.count()));
  }
  return tr.any_failed() ? 1 : 0;
}

}  // namespace
}  // namespace warren::perf

int main(int argc, char** argv) {
  auto parsed = warren::perf::parse_options(argc, argv);
  if (auto* u = std::get_if<warren::perf::usage_exit>(&parsed)) return u->code;
  std::signal(SIGINT, warren::perf::on_signal);
  std::signal(SIGTERM, warren::perf::on_signal);
  return warren::perf::run(std::get<warren::perf::options>(parsed));
}
