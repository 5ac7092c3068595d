// The broker's resource alarms: resolves the configured memory watermark and disk free limit
// against this machine, runs the resource monitor, and connects it to the AMQP connections
// through the alarm board. Owned by run() in main.cpp; built after the worker pool and
// destroyed before it.
#pragma once

#include <atomic>
#include <optional>
#include <variant>

#include "alarm/monitor.hpp"
#include "amqp/server/alarm_board.hpp"
#include "app/config.hpp"
#include "broker/vhost.hpp"
#include "net/worker.hpp"

namespace warren::app {

class resource_alarms {
 public:
  // Logs the limits and takes the first readings: alarms already on are on for every worker
  // from its start. Call before the workers start.
  resource_alarms(const config& cfg, net::worker_pool& pool);
  ~resource_alarms() { monitor_.stop(); }  // before board_ goes: the monitor's thread uses it
  // For server_context::alarms.
  const amqp::server::alarm_board& board() const { return board_; }
  // Past `ratio` of the watermark (--vm-memory-high-watermark-paging-ratio, 0.5) every vhost
  // pages its queues' new arrivals to disk (on its home worker) and, a few MiB at a time, what
  // they hold in memory beyond their read-ahead; it stops when memory is back under. Call
  // before start().
  void page_vhosts(broker::vhost_registry& vhosts, double ratio);
  // Starts sampling (after the workers have started).
  void start() { monitor_.start(); }
  // The memory watermark in bytes (0: none). Any thread.
  uint64_t memory_limit() const { return memory_limit_.load(std::memory_order_relaxed); }
  // Changes the memory watermark at run time (rabbitmqctl's set_vm_memory_high_watermark): a
  // fraction of the total memory, or a number of bytes. Any thread. The limit in bytes, or
  // nullopt for a fraction when the total memory cannot be read.
  std::optional<uint64_t> set_memory_high_watermark(std::variant<double, uint64_t> limit);

 private:
  net::worker_pool& pool_;
  std::atomic<uint64_t> memory_limit_ = 0;
  alarm::resource_monitor monitor_;
  amqp::server::alarm_board board_;
};

}  // namespace warren::app
