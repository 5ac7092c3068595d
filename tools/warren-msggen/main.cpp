// warren-msggen: sends messages to random users (or a room) at a set rate over HTTP or AMQP,
// each with its send time in its data, prints rates every second and a summary at the end.
// One thread: at the rates it is made for (thousands a second), one core is plenty.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "load-common/event_scan.hpp"
#include "web/base64.hpp"
#include "warren-msggen/options.hpp"
#include "warren-msggen/senders.hpp"

namespace warren::msggen {
namespace {

using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto pace_interval = 1ms;

class generator {
 public:
  generator(boost::asio::io_context& io, options o)
      : io_(io),
        o_(std::move(o)),
        rng_(o_.seed),
        pick_(o_.first_user, o_.first_user + o_.users - 1),
        pace_timer_(io),
        tick_timer_(io),
        end_timer_(io),
        signals_(io, SIGINT, SIGTERM) {}

  void start() {
    for (int i = 0; i < o_.connections; ++i) senders_.push_back(make_sender());
    for (auto& s : senders_) s->start();
    signals_.async_wait([this](const boost::system::error_code& ec, int) {
      if (!ec) finish("interrupted");
    });
    // The clock starts once every connection is ready (or after 5 s, with those that are).
    start_ = clock::now();
    wait_ready();
  }

  int exit_code() const {
    return tally_.failed_connections == 0 && tally_.sent > 0 && tally_.statuses.empty() &&
                   tally_.answered == tally_.sent
               ? 0
               : 1;
  }

 private:
  std::shared_ptr<sender> make_sender() {
    if (o_.via == "amqp") {
      perf::broker_address a;
      a.host = o_.host;
      a.port = o_.amqp_port;
      a.user = o_.user;
      a.password = o_.password;
      a.vhost = o_.vhost;
      perf::client_events ev;
      ev.failed = [this](const std::string& who, const std::string& e) {
        std::fprintf(stderr, "warren-msggen: %s: %s\n", who.c_str(), e.c_str());
        ++tally_.failed_connections;
      };
      return std::make_shared<amqp_sender>(io_, a, ev,
                                           o_.room.empty() ? "warren.users" : "warren.rooms",
                                           tally_);
    }
    http_target t;
    t.server = {boost::asio::ip::make_address(o_.host), o_.port};
    t.host_header = "Host: " + o_.host + ":" + std::to_string(o_.port) + "\r\n";
    t.authorization =
        "Authorization: Basic " + web::base64_encode(o_.user + ":" + o_.password) + "\r\n";
    t.nchan = o_.api == "nchan";
    t.room = o_.room;
    t.pipeline = size_t(o_.pipeline);
    return std::make_shared<http_sender>(io_, t, tally_, [this] { pump(); });
  }

  void wait_ready() {
    bool all = std::all_of(senders_.begin(), senders_.end(), [](auto& s) { return s->ready(); });
    bool any = std::any_of(senders_.begin(), senders_.end(), [](auto& s) { return s->ready(); });
    if (all || (any && clock::now() - start_ > 5s)) return begin();
    if (tally_.failed_connections >= senders_.size() || clock::now() - start_ > 10s)
      return finish("no connection");
    pace_timer_.expires_after(10ms);
    pace_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) wait_ready();
    });
  }

  void begin() {
    sending_ = true;
    start_ = clock::now();
    end_timer_.expires_after(std::chrono::duration_cast<clock::duration>(
        std::chrono::duration<double>(o_.duration)));
    end_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) stop_sending("duration reached");
    });
    tick_timer_.expires_at(start_ + 1s);
    tick_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) tick();
    });
    pace();
  }

  void pace() {
    pump();
    if (!sending_) return;
    pace_timer_.expires_after(pace_interval);
    pace_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) pace();
    });
  }

  // Sends what is due, spread over the senders with room, round robin.
  void pump() {
    if (draining_) return maybe_done();
    if (!sending_) return;
    uint64_t due = UINT64_MAX;
    if (o_.rate > 0) {
      double elapsed = std::chrono::duration<double>(clock::now() - start_).count();
      due = uint64_t(elapsed * o_.rate) + 1;
    }
    if (o_.messages > 0) due = std::min(due, o_.messages);
    size_t tried = 0;
    while (tally_.sent < due && tried < senders_.size()) {
      auto& s = senders_[next_ % senders_.size()];
      if (s->room() == 0) {
        ++next_;
        ++tried;
        continue;
      }
      tried = 0;
      ++next_;
      s->send(target(), data());
    }
    if (o_.rate > 0 && tally_.sent + 1 < due) behind_ = std::max(behind_, due - tally_.sent);
    if (o_.messages > 0 && tally_.sent >= o_.messages) stop_sending("all messages sent");
  }

  std::string target() {
    if (!o_.room.empty()) return o_.room;
    return o_.user_prefix + std::to_string(pick_(rng_));
  }

  std::string data() {
    std::string d = "{\"t\":" + std::to_string(load::now_us());
    if (o_.pad > 0) d += ",\"pad\":\"" + std::string(o_.pad, 'x') + "\"";
    d += "}";
    return d;
  }

  void tick() {
    double elapsed = std::chrono::duration<double>(clock::now() - start_).count();
    uint64_t sent = tally_.sent - last_sent_;
    uint64_t unroutable = tally_.unroutable + returned();
    if (o_.json) {
      nlohmann::json j{{"type", "tick"},          {"elapsed", elapsed},
                       {"sent", tally_.sent},     {"sent_per_s", sent},
                       {"answered", tally_.answered}, {"routed", tally_.routed},
                       {"unroutable", unroutable}, {"errors", errors()},
                       {"behind", behind_}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf(
          "%6.1fs sent %llu (+%llu/s) answered %llu routed %llu unroutable %llu errors %llu "
          "behind %llu | response ms p50 %.2f p99 %.2f\n",
          elapsed, (unsigned long long)tally_.sent, (unsigned long long)sent,
          (unsigned long long)tally_.answered, (unsigned long long)tally_.routed,
          (unsigned long long)unroutable, (unsigned long long)errors(),
          (unsigned long long)behind_, tally_.response_us.quantile(0.5) / 1000.0,
          tally_.response_us.quantile(0.99) / 1000.0);
    }
    std::fflush(stdout);
    last_sent_ = tally_.sent;
    behind_ = 0;
    tick_timer_.expires_at(tick_timer_.expiry() + 1s);
    tick_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) tick();
    });
  }

  uint64_t errors() const {
    uint64_t n = 0;
    for (auto& [status, count] : tally_.statuses) n += count;
    return n;
  }

  uint64_t returned() const {
    uint64_t n = 0;
    for (auto& s : senders_)
      if (auto* a = dynamic_cast<amqp_sender*>(s.get()))
        n += const_cast<amqp_sender*>(a)->stats().returned.load();
    return n;
  }

  void stop_sending(const char* why) {
    if (!sending_) return;
    sending_ = false;
    draining_ = true;
    send_seconds_ = std::chrono::duration<double>(clock::now() - start_).count();
    why_ = why;
    drain_deadline_ = clock::now() + std::chrono::duration_cast<clock::duration>(
                                         std::chrono::duration<double>(o_.drain_timeout));
    end_timer_.cancel();
    maybe_done();
    if (!done_) {
      // Wait for the answers still due, at most --drain-timeout.
      pace_timer_.expires_after(10ms);
      pace_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) drain_wait();
      });
    }
  }

  void drain_wait() {
    maybe_done();
    if (done_) return;
    if (clock::now() > drain_deadline_) return finish("answers still missing at the end");
    pace_timer_.expires_after(10ms);
    pace_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) drain_wait();
    });
  }

  void maybe_done() {
    if (!draining_ || done_) return;
    for (auto& s : senders_)
      if (s->ready() && s->in_flight() > 0) return;
    finish(why_.c_str());
  }

  void finish(const char* why) {
    if (done_) return;
    done_ = true;
    draining_ = false;
    if (sending_) {
      sending_ = false;
      send_seconds_ = std::chrono::duration<double>(clock::now() - start_).count();
    }
    pace_timer_.cancel();
    tick_timer_.cancel();
    end_timer_.cancel();
    signals_.cancel();
    for (auto& s : senders_) s->close();
    const auto& h = tally_.response_us;
    uint64_t unroutable = tally_.unroutable + returned();
    // AMQP: a confirmed publish that did not come back was routed (rooms take every publish).
    if (o_.via == "amqp") tally_.routed = tally_.ok > returned() ? tally_.ok - returned() : 0;
    nlohmann::json j{{"type", "summary"},
                     {"why", why},
                     {"via", o_.via},
                     {"api", o_.api},
                     {"target", o_.room.empty() ? "users" : "room"},
                     {"seconds", send_seconds_},
                     {"sent", tally_.sent},
                     {"rate", send_seconds_ > 0 ? double(tally_.sent) / send_seconds_ : 0},
                     {"answered", tally_.answered},
                     {"ok", tally_.ok},
                     {"routed", tally_.routed},
                     {"unroutable", unroutable},
                     {"errors", errors()},
                     {"failed_connections", tally_.failed_connections},
                     {"response_us",
                      {{"count", h.count()},
                       {"p50", h.quantile(0.5)},
                       {"p99", h.quantile(0.99)},
                       {"max", h.max()}}}};
    nlohmann::json st = nlohmann::json::object();
    for (auto& [status, n] : tally_.statuses) st[std::to_string(status)] = n;
    j["statuses"] = st;
    if (o_.json) {
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf(
          "%s: sent %llu in %.1f s (%.0f/s), answered %llu, routed %llu, unroutable %llu, "
          "errors %llu; response ms p50 %.2f p99 %.2f max %.2f\n",
          why, (unsigned long long)tally_.sent, send_seconds_,
          send_seconds_ > 0 ? double(tally_.sent) / send_seconds_ : 0.0,
          (unsigned long long)tally_.answered, (unsigned long long)tally_.routed,
          (unsigned long long)unroutable, (unsigned long long)errors(), h.quantile(0.5) / 1000.0,
          h.quantile(0.99) / 1000.0, h.max() / 1000.0);
    }
    std::fflush(stdout);
  }

  boost::asio::io_context& io_;
  options o_;
  std::mt19937_64 rng_;
  std::uniform_int_distribution<uint64_t> pick_;
  std::vector<std::shared_ptr<sender>> senders_;
  tally tally_;
  boost::asio::steady_timer pace_timer_, tick_timer_, end_timer_;
  boost::asio::signal_set signals_;
  clock::time_point start_, drain_deadline_;
  size_t next_ = 0;
  uint64_t last_sent_ = 0;
  uint64_t behind_ = 0;  // most messages overdue at once in the last second
  double send_seconds_ = 0;
  std::string why_;
  bool sending_ = false, draining_ = false, done_ = false;
};

}  // namespace
}  // namespace warren::msggen

int main(int argc, char** argv) {
  using namespace warren::msggen;
  auto parsed = parse_options(argc, argv);
  if (auto* e = std::get_if<usage_exit>(&parsed)) return e->code;
  try {
    boost::asio::io_context io(1);
    generator g(io, std::get<options>(parsed));
    g.start();
    io.run();
    return g.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "warren-msggen: %s\n", e.what());
    return 2;
  }
}
