// The flood: every session of one warren-flood process, their pacing, and what they count.
// Everything runs on one thread and one io_context (one epoll set): a process holds at most
// about 19 000 connections (the file limit is 20 000), and more load means more processes.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "load-common/source_address.hpp"
#include "warren-flood/options.hpp"
#include "warren-perf/stats.hpp"

namespace warren::flood {

class session;

// What the sessions count. Single-threaded: plain integers.
struct counters {
  uint64_t launched = 0;    // connect() started
  uint64_t connected = 0;   // reached the open state (101, or 200 for SSE)
  uint64_t open = 0;        // open now
  uint64_t pending = 0;     // between connect() and the handshake's end
  uint64_t connect_failed = 0;  // bind or connect failed
  uint64_t refused = 0;     // the server answered the handshake with another status
  uint64_t timed_out = 0;   // no handshake within --handshake-timeout
  uint64_t lost = 0;        // the server closed (close frame, end of stream or EOF) once open
  uint64_t broken = 0;      // protocol errors from the server's side
  uint64_t events = 0;      // every event or reply received
  uint64_t messages = 0;    // "message" events (and bare nchan bodies)
  uint64_t history = 0, resets = 0, presence = 0, replies = 0, other = 0;
  uint64_t timed = 0;       // events with a send time, in the latencies
  uint64_t seq_missing = 0;   // sequence numbers skipped within a connection
  uint64_t seq_backwards = 0;  // a sequence number not above the previous one
  uint64_t joined = 0, join_errors = 0;
  uint64_t pings = 0;
  uint64_t bytes = 0;
};

class flood {
 public:
  flood(boost::asio::io_context& io, options o);
  ~flood();
  // Starts connecting; returns at once. The io_context's run() returns when the flood ends.
  void start();

  // For sessions.
  boost::asio::io_context& io() { return io_; }
  const options& opts() const { return o_; }
  const boost::asio::ip::tcp::endpoint& server() const { return server_; }
  const load::source_addresses& sources() const { return sources_; }
  counters& count() { return c_; }
  std::span<uint8_t> scratch() { return scratch_; }
  void record_latency(uint64_t us);
  void refused(int status);
  void error(const std::string& what);  // printed the first few times each
  void handshake_ended() { --c_.pending; }

 private:
  void pace();
  void tick();
  void snapshot();
  void stop(const char* why);
  void print_summary();

  boost::asio::io_context& io_;
  options o_;
  boost::asio::ip::tcp::endpoint server_;
  load::source_addresses sources_;
  std::vector<std::unique_ptr<session>> sessions_;
  std::vector<uint8_t> scratch_;
  counters c_;
  counters last_tick_;
  counters last_snapshot_;
  perf::latency_histogram second_, window_, total_;
  std::map<int, uint64_t> refusals_;  // by HTTP status
  std::map<std::string, uint64_t> errors_;
  boost::asio::steady_timer pace_timer_, tick_timer_, end_timer_;
  boost::asio::signal_set stop_signals_, snapshot_signal_;
  std::chrono::steady_clock::time_point start_;
  double connect_seconds_ = 0;  // until the last connection opened
  int snapshots_ = 0;
  bool stopping_ = false;
};

}  // namespace warren::flood
