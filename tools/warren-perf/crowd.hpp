// Connections that publish and consume nothing, for floods (bench/seed000_flood.py): idle ones
// (handshake, channel 1, then silence, like the browsers of seed 000 that left a chat tab open)
// and churning ones (open a connection and its channel, close and reopen the channel a few
// times, close the connection, start again, as fast as the broker answers). They load the
// broker's accept path, handshakes and per-connection memory, not its queues.
#pragma once

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <vector>

#include "warren-perf/client.hpp"

namespace warren::perf {

struct crowd_counts {
  std::atomic<uint64_t> idle_open{0};  // idle connections that completed their handshake
  std::atomic<uint64_t> idle_failed{
      0};  // idle connections that failed or were closed by the broker
  std::atomic<uint64_t> churn_cycles{0};  // churn connections opened, used and closed cleanly
  std::atomic<uint64_t> churn_failed{
      0};  // churn connections that failed (refused, closed, timed out)
};

class crowd {
 public:
  // `ios`: the I/O threads' loops, used round-robin. `channel_cycles`: channel.close +
  // channel.open pairs per churn connection.
  crowd(std::vector<boost::asio::io_context*> ios, broker_address addr, int idle, int churn,
        int channel_cycles);
  ~crowd();
  // Main thread. Opens the idle connections at `rate` per second (0: all at once) and returns
  // once they are all up, or one failed, or `timeout` passed; false unless all are up.
  bool open_idle(double rate, std::chrono::steady_clock::duration timeout);
  // Main thread: the churners start.
  void start_churn();
  // Main thread: churners stop after their current cycle, every idle connection closes; waits
  // at most `timeout`.
  void stop(std::chrono::steady_clock::duration timeout);
  const crowd_counts& counts() const { return counts_; }

 private:
  struct churner;

  std::vector<boost::asio::io_context*> ios_;
  broker_address addr_;
  int idle_;
  int churn_;
  int channel_cycles_;
  crowd_counts counts_;
  std::atomic<bool> churning_{false};
  std::atomic<int> live_{0};  // connections not yet closed, idle and churn
  std::vector<std::shared_ptr<client>> idle_clients_;
  std::vector<std::shared_ptr<churner>> churners_;
};

}  // namespace warren::perf
