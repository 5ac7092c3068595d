// Workers: one thread, one Boost.Asio io_context each. Every connection (and, with the broker
// model, every queue) belongs to exactly one worker and is touched only on its thread. Other
// threads reach a worker only through post(), which goes through its mailbox.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "net/mailbox.hpp"

namespace warren::net {

class connection;

class worker {
 public:
  // How often connections get on_tick (heartbeats, time-outs).
  static constexpr std::chrono::milliseconds tick_interval{250};

  explicit worker(size_t index);
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;
  ~worker();

  size_t index() const { return index_; }
  boost::asio::io_context& io() { return io_; }

  // Any thread: runs fn on this worker's thread. Wakes the loop only when the mailbox was idle.
  // Called on a worker's thread, first runs what that worker deferred (defer, below).
  template <typename F>
  void post(F&& fn) {
    run_deferred_here();
    mailbox_.push(std::forward<F>(fn));
    wake();
  }
  // Like post, for small control messages (acknowledgements, credit) that free resources: they
  // run before any ordinary task still waiting, so consumers are not starved by a publish flood.
  template <typename F>
  void post_urgent(F&& fn) {
    run_deferred_here();
    urgent_.push(std::forward<F>(fn));
    wake();
  }
  // Owner thread only: runs fn on this thread once the handler running now returns, or sooner,
  // just before this thread next posts to any worker, whichever comes first. For work gathered
  // during one handler (the hand-overs of the publishes of one socket read) and sent on as one
  // message per destination: it reaches its destination before anything this thread posts
  // afterwards, so a sender's order across workers is kept.
  void defer(std::function<void()> fn);
  // Any thread: like post, but from another worker's thread the task waits with the others that
  // thread sends here during its current handler, and they go as one mailbox message when the
  // handler returns (defer): one push and at most one wake-up for a batch of deliveries.
  void post_batched(std::function<void()> fn);
  // Runs fn now when called on this worker's thread, else posts it. Callers must not depend on
  // fn running after what they do next.
  template <typename F>
  void run_or_post(F&& fn) {
    if (on_own_thread())
      fn();
    else
      post(std::forward<F>(fn));
  }

  // Before start(): how long the loop keeps polling (handlers ready, sockets with epoll_wait and
  // a zero timeout) after its last handler before it sleeps in epoll_wait. 0: it sleeps at once.
  // Where waking a sleeping thread is dear (a virtual machine whose halted CPUs are woken by the
  // hypervisor), a busy wait saves more than it spends on a busy broker, and spends on a lightly
  // loaded one; Erlang's schedulers, and so RabbitMQ, busy-wait by default (docs/benchmarks.md,
  // "Busy waiting before sleeping").
  void set_busy_wait(std::chrono::microseconds d) { busy_wait_ = d; }
  void start();  // spawns the thread
  // Instead of start(), for tests and fuzzers that drive a worker by hand: runs the handlers that
  // are ready on the calling thread, which becomes the worker's own thread, until none is left,
  // and returns how many ran. No tick timer runs.
  size_t poll();
  void stop();  // any thread: stops the loop; pending work is dropped
  void join();
  // After join(): closes the remaining connections from the calling thread.
  void close_all_connections();
  bool on_own_thread() const { return std::this_thread::get_id() == thread_id_.load(); }

  // Scratch space for socket reads on this worker: one buffer per worker, not per connection, so
  // an idle connection holds no read buffer.
  std::span<uint8_t> read_buffer() { return read_buffer_; }

  // Owner thread only.
  void adopt(std::shared_ptr<connection> c);
  void release(connection* c);
  size_t connection_count() const { return connections_.size(); }
  // Calls fn for each live connection (fn may close the one it is given).
  void for_each_connection(const std::function<void(connection&)>& fn);
  // Owner thread only: c->flush() once the tasks already waiting have run (connection::flush_soon).
  void schedule_flush(std::shared_ptr<connection> c);

  // Bytes all of this worker's connections together may write to, and read from, their sockets
  // in one turn of the loop (from one epoll_wait to the next). Once spent, a connection with
  // more than a small output to write, or a reader past its first read, waits for the next turn
  // (connection::flush, connection::on_readable), so a turn stays short however many megabytes
  // the worker has to move, and a small output or a small publish (a confirm, a 256-byte
  // delivery) waits behind at most about this much bulk rather than behind every bulk
  // connection's quantum. Seed 000's flood (docs/benchmarks.md) had turns of 30-60 ms of CPU.
  static constexpr size_t turn_write_budget = 1024 * 1024;
  static constexpr size_t turn_read_budget = 1024 * 1024;
  // Owner thread only: what is left of this turn's budgets, and spending them.
  size_t write_budget() const { return write_budget_; }
  size_t read_budget() const { return read_budget_; }
  void spend_write_budget(size_t n);
  void spend_read_budget(size_t n);

 private:
  void arm_tick();
  void on_tick();
  // On a worker's thread with deferred work: runs it (defer).
  static void run_deferred_here() {
    if (worker* w = current_; w && !w->deferred_.empty()) w->run_deferred();
  }
  void run_deferred();
  void run_flushes();
  void wake();
  void drain();
  void renew_budgets_next_turn();

  void run_loop();

  size_t index_;
  std::chrono::microseconds busy_wait_{0};
  mailbox mailbox_;  // declared before io_: outlives the handlers io_ destroys
  mailbox urgent_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::atomic<bool> wake_pending_{false};
  std::thread thread_;
  std::atomic<std::thread::id> thread_id_{};
  std::vector<uint8_t> read_buffer_;
  boost::asio::steady_timer tick_timer_;
  std::list<std::shared_ptr<connection>> connections_;
  std::vector<std::shared_ptr<connection>> flush_queue_;  // from flush_head_ on: not flushed yet
  size_t flush_head_ = 0;
  bool flush_posted_ = false;
  size_t write_budget_ = turn_write_budget;
  size_t read_budget_ = turn_read_budget;
  bool renewal_posted_ = false;
  std::vector<std::function<void()>> deferred_;
  bool deferred_scheduled_ = false;
  // Tasks this worker's thread sends other workers with post_batched, by destination (a null
  // worker: none), not sent yet.
  std::vector<std::pair<worker*, std::vector<std::function<void()>>>> outbox_;
  bool outbox_armed_ = false;
  void send_outbox();
  // The worker whose thread this is (null on other threads): start() and poll() set it.
  static thread_local worker* current_;
};

class worker_pool {
 public:
  explicit worker_pool(size_t n);
  // Stops and joins, then closes every worker's connections before any worker is destroyed
  // (a closing connection may post to another worker).
  ~worker_pool();
  size_t size() const { return workers_.size(); }
  worker& at(size_t i) { return *workers_[i]; }
  void set_busy_wait(std::chrono::microseconds d);
  void start();
  void stop();
  void join();

 private:
  std::vector<std::unique_ptr<worker>> workers_;
};

}  // namespace warren::net
