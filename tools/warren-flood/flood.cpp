// Pacing of new connections, the per-second line, snapshots and the summary.
#include "warren-flood/flood.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "warren-flood/session.hpp"
#include "web/jwt.hpp"

namespace warren::flood {
namespace {

using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto pace_interval = 10ms;
constexpr size_t scratch_size = 256 * 1024;
constexpr int error_prints = 5;  // each distinct error is printed this often, then only counted

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
}

// Percentiles, and the histogram's non-empty buckets as [value, count] pairs so that a script
// can merge the latencies of several flood processes exactly.
nlohmann::json latency_json(const perf::latency_histogram& h, bool buckets = false) {
  nlohmann::json j{{"count", h.count()},
                   {"p50", h.quantile(0.50)},
                   {"p90", h.quantile(0.90)},
                   {"p99", h.quantile(0.99)},
                   {"max", h.max()}};
  if (buckets) {
    auto b = nlohmann::json::array();
    h.for_each_bucket([&](uint64_t v, uint64_t n) { b.push_back({v, n}); });
    j["buckets"] = std::move(b);
  }
  return j;
}

nlohmann::json counters_json(const counters& c) {
  return {{"launched", c.launched},
          {"connected", c.connected},
          {"open", c.open},
          {"pending", c.pending},
          {"connect_failed", c.connect_failed},
          {"refused", c.refused},
          {"timed_out", c.timed_out},
          {"lost", c.lost},
          {"broken", c.broken},
          {"events", c.events},
          {"messages", c.messages},
          {"history", c.history},
          {"resets", c.resets},
          {"presence", c.presence},
          {"replies", c.replies},
          {"other", c.other},
          {"timed", c.timed},
          {"seq_missing", c.seq_missing},
          {"seq_backwards", c.seq_backwards},
          {"joined", c.joined},
          {"join_errors", c.join_errors},
          {"pings", c.pings},
          {"bytes", c.bytes}};
}

double ms(uint64_t us) {
  return double(us) / 1000.0;
}

}  // namespace

flood::flood(boost::asio::io_context& io, options o)
    : io_(io),
      o_(std::move(o)),
      server_(boost::asio::ip::make_address(o_.host), o_.port),
      sources_(o_.source_base, o_.per_source),
      scratch_(scratch_size),
      pace_timer_(io),
      tick_timer_(io),
      end_timer_(io),
      stop_signals_(io, SIGINT, SIGTERM),
      snapshot_signal_(io, SIGUSR1) {
  // Fail now rather than halfway through: the last source address must exist.
  (void)sources_.for_connection(o_.users - 1);
}

flood::~flood() = default;

void flood::start() {
  start_ = clock::now();
  sessions_.reserve(o_.users);
  stop_signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
    if (!ec) stop(sig == SIGINT ? "interrupted" : "terminated");
  });
  snapshot_signal_.async_wait([this](const boost::system::error_code& ec, int) {
    if (!ec) snapshot();
  });
  end_timer_.expires_after(
      std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(o_.duration)));
  end_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) stop("duration reached");
  });
  tick_timer_.expires_at(start_ + 1s);
  tick_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) tick();
  });
  pace();
}

void flood::pace() {
  if (stopping_) return;
  auto now = clock::now();
  double elapsed = std::chrono::duration<double>(now - start_).count();
  uint64_t due = std::min<uint64_t>(o_.users, uint64_t(elapsed * o_.connect_rate) + 1);
  const auto exp =
      std::chrono::system_clock::now() +
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::duration<double>(o_.token_ttl));
  const int64_t exp_s =
      std::chrono::duration_cast<std::chrono::seconds>(exp.time_since_epoch()).count();
  const bool wants_token = o_.path.find("{token}") != std::string::npos;
  const std::string host_line = fmt::format("Host: {}:{}\r\n", o_.host, o_.port);
  while (sessions_.size() < due && c_.pending < o_.max_pending) {
    uint64_t number = o_.first_user + sessions_.size();
    std::string user = o_.user_prefix + std::to_string(number);
    std::string path = o_.path;
    replace_all(path, "{user}", user);
    replace_all(path, "{i}", std::to_string(number));
    if (wants_token)
      replace_all(path, "{token}",
                  web::jwt_sign_hs256({{"sub", user}, {"exp", exp_s}}, o_.jwt_secret));
    std::string request = "GET " + path + " HTTP/1.1\r\n" + host_line;
    sessions_.push_back(std::make_unique<session>(*this, number));
    sessions_.back()->start(std::move(request));
  }
  if (sessions_.size() < o_.users) {
    pace_timer_.expires_after(pace_interval);
    pace_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) pace();
    });
  }
}

void flood::record_latency(uint64_t us) {
  second_.record(us);
}

void flood::refused(int status) {
  ++refusals_[status];
}

void flood::error(const std::string& what) {
  uint64_t n = ++errors_[what];
  if (n <= error_prints) {
    std::fprintf(stderr, "warren-flood: %s%s\n", what.c_str(),
                 n == error_prints ? " (further ones only counted)" : "");
  }
}

void flood::tick() {
  auto now = clock::now();
  double elapsed = std::chrono::duration<double>(now - start_).count();
  // Handshakes that take too long: a server that accepts and never answers.
  if (c_.pending > 0) {
    auto limit = std::chrono::seconds(std::max<int64_t>(1, int64_t(o_.handshake_timeout)));
    for (auto& s : sessions_) s->check_timeout(now, limit);
  }
  if (connect_seconds_ == 0 &&
      c_.connected + c_.connect_failed + c_.refused + c_.timed_out >= o_.users)
    connect_seconds_ = elapsed;
  window_.merge(second_);
  total_.merge(second_);
  uint64_t msgs = c_.messages - last_tick_.messages;
  if (o_.json) {
    nlohmann::json j = counters_json(c_);
    j["type"] = "tick";
    j["elapsed"] = elapsed;
    j["messages_per_s"] = msgs;
    j["events_per_s"] = c_.events - last_tick_.events;
    j["latency_us"] = latency_json(second_);
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf(
        "%6.1fs open %llu (+%llu) failed %llu lost %llu | msgs %llu (+%llu/s) latency ms p50 %.2f "
        "p99 %.2f max %.2f | gaps %llu\n",
        elapsed, (unsigned long long)c_.open,
        (unsigned long long)(c_.connected - last_tick_.connected),
        (unsigned long long)(c_.connect_failed + c_.refused + c_.timed_out),
        (unsigned long long)c_.lost, (unsigned long long)c_.messages, (unsigned long long)msgs,
        ms(second_.quantile(0.5)), ms(second_.quantile(0.99)), ms(second_.max()),
        (unsigned long long)(c_.seq_missing + c_.seq_backwards));
  }
  std::fflush(stdout);
  second_ = perf::latency_histogram{};
  last_tick_ = c_;
  tick_timer_.expires_at(tick_timer_.expiry() + 1s);
  tick_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) tick();
  });
}

void flood::snapshot() {
  // Counts since the previous snapshot; latencies up to the last full second plus this one.
  perf::latency_histogram h = window_;
  h.merge(second_);
  nlohmann::json j = counters_json(c_);
  j["type"] = "snapshot";
  j["snapshot"] = ++snapshots_;
  j["elapsed"] = std::chrono::duration<double>(clock::now() - start_).count();
  j["messages_since"] = c_.messages - last_snapshot_.messages;
  j["events_since"] = c_.events - last_snapshot_.events;
  j["latency_us"] = latency_json(h, true);
  if (o_.json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("snapshot %d: %s\n", snapshots_, j.dump().c_str());
  }
  std::fflush(stdout);
  window_ = perf::latency_histogram{};
  total_.merge(second_);
  second_ = perf::latency_histogram{};
  last_snapshot_ = c_;
  snapshot_signal_.async_wait([this](const boost::system::error_code& ec, int) {
    if (!ec) snapshot();
  });
}

void flood::stop(const char* why) {
  if (stopping_) return;
  stopping_ = true;
  if (!o_.json) std::printf("stopping: %s\n", why);
  total_.merge(second_);
  second_ = perf::latency_histogram{};
  for (auto& s : sessions_) s->close();
  pace_timer_.cancel();
  tick_timer_.cancel();
  end_timer_.cancel();
  stop_signals_.cancel();
  snapshot_signal_.cancel();
  print_summary();
}

void flood::print_summary() {
  double elapsed = std::chrono::duration<double>(clock::now() - start_).count();
  nlohmann::json j = counters_json(c_);
  j["type"] = "summary";
  j["users"] = o_.users;
  j["transport"] = o_.transport;
  j["elapsed"] = elapsed;
  j["connect_seconds"] = connect_seconds_;
  j["latency_us"] = latency_json(total_, true);
  nlohmann::json ref = nlohmann::json::object();
  for (auto& [status, n] : refusals_) ref[std::to_string(status)] = n;
  j["refusals"] = ref;
  nlohmann::json errs = nlohmann::json::object();
  for (auto& [what, n] : errors_) errs[what] = n;
  j["errors"] = errs;
  if (o_.json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf(
        "users %llu: connected %llu in %.1f s, failed to connect %llu, refused %llu, timed out "
        "%llu, lost %llu\n"
        "events %llu: messages %llu, history %llu, resets %llu, replies %llu (joined %llu); "
        "sequence gaps %llu, backwards %llu\n"
        "latency of %llu timed messages, ms: p50 %.2f p90 %.2f p99 %.2f max %.2f\n",
        (unsigned long long)o_.users, (unsigned long long)c_.connected, connect_seconds_,
        (unsigned long long)c_.connect_failed, (unsigned long long)c_.refused,
        (unsigned long long)c_.timed_out, (unsigned long long)c_.lost,
        (unsigned long long)c_.events, (unsigned long long)c_.messages,
        (unsigned long long)c_.history, (unsigned long long)c_.resets,
        (unsigned long long)c_.replies, (unsigned long long)c_.joined,
        (unsigned long long)c_.seq_missing, (unsigned long long)c_.seq_backwards,
        (unsigned long long)total_.count(), ms(total_.quantile(0.5)), ms(total_.quantile(0.9)),
        ms(total_.quantile(0.99)), ms(total_.max()));
    for (auto& [status, n] : refusals_)
      std::printf("refused with status %d: %llu\n", status, (unsigned long long)n);
  }
  std::fflush(stdout);
}

}  // namespace warren::flood
