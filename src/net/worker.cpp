// Worker threads and their loops.
#include "net/worker.hpp"

#include <pthread.h>

#include <boost/asio/post.hpp>

#include <algorithm>
#include <cstdlib>

#include <spdlog/spdlog.h>

#include "net/connection.hpp"
#include "net/tls.hpp"

namespace warren::net {

namespace {
constexpr size_t read_buffer_size = 64 * 1024;
}

worker::worker(size_t index)
    : index_(index),
      io_(1),
      work_(boost::asio::make_work_guard(io_)),
      read_buffer_(read_buffer_size),
      tick_timer_(io_) {}

worker::~worker() {
  stop();
  join();
  close_all_connections();
}

void worker::close_all_connections() {
  // Connections still open (a pool torn down without the broker's shutdown sequence, as in tests)
  // are closed while the mailboxes they may post their goodbyes to still exist; what they post
  // is freed with the mailbox, after the io_context has dropped its handlers.
  for_each_connection([](connection& c) { c.close_now(); });
}

void worker::wake() {
  // Only the first post after a drain wakes the loop; the drain clears the flag before running
  // tasks, so a task pushed during a drain is never stranded. That takes a sequentially
  // consistent fence on both sides (store the task, fence, read the flag; clear the flag, fence,
  // read the mailbox): either the drain sees the task or this post sees the flag clear. With a
  // plain store to clear it, the CPU may let the drain read an empty mailbox before its store is
  // visible (x86 reorders a store with later loads), and the post then reads the old flag: the
  // task waits for the next post to this worker, forever if none comes (a shutdown waiting on
  // every worker would hang).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!wake_pending_.exchange(true, std::memory_order_acq_rel))
    boost::asio::post(io_, [this] { drain(); });
}

void worker::drain() {
  wake_pending_.store(false, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);  // see wake()
  // Urgent tasks first and between batches; ordinary tasks in batches, and past a few batches
  // the rest waits for the next turn of the loop so that socket events are served meanwhile.
  constexpr size_t batch = 64, batches_per_turn = 8;
  //
  // Urgent tasks are also run after an ordinary task is taken and before it runs. A producer
  // that posts an urgent task and then an ordinary one (a channel's basic.ack, then its
  // queue.declare) must see them run in that order; had the urgent queue been checked only
  // between batches, the ordinary task could slip in first when both arrive during a batch.
  // Once the ordinary task is taken, the urgent one posted before it is visible.
  auto urgent_first = [this] {
    if (!urgent_.empty()) urgent_.drain();
  };
  for (size_t i = 0; i < batches_per_turn; ++i) {
    urgent_.drain();
    if (mailbox_.drain(batch, urgent_first) < batch) {
      urgent_.drain();
      return;
    }
  }
  wake();  // more is waiting
}

void worker::start() {
  arm_tick();
  thread_ = std::thread([this] {
    // Named for top -H, perf and the benchmarks' per-thread CPU (at most 15 bytes).
    pthread_setname_np(pthread_self(), ("worker-" + std::to_string(index_)).c_str());
    thread_id_.store(std::this_thread::get_id());
    current_ = this;
    run_loop();
  });
}

void worker::run_loop() {
  if (busy_wait_.count() <= 0) {
    io_.run();
    return;
  }
  // poll() runs the ready handlers after an epoll_wait that does not block; run_one() sleeps
  // until one is ready. A clock read per empty poll costs nothing next to its epoll_wait.
  auto last_work = std::chrono::steady_clock::now();
  while (!io_.stopped()) {
    if (io_.poll() > 0) {
      last_work = std::chrono::steady_clock::now();
    } else if (std::chrono::steady_clock::now() - last_work >= busy_wait_) {
      io_.run_one();
      last_work = std::chrono::steady_clock::now();
    }
  }
}

size_t worker::poll() {
  thread_id_.store(std::this_thread::get_id());
  // Tests may drive several workers from one thread: this one is the poster while it polls.
  worker* before = current_;
  current_ = this;
  size_t n = io_.poll();
  current_ = before;
  return n;
}

thread_local worker* worker::current_ = nullptr;

void worker::defer(std::function<void()> fn) {
  // Another thread's deferred work would race with this one's: a caller's bug, never a state.
  if (!on_own_thread()) {
    spdlog::critical("worker {}: defer called from another thread", index_);
    std::abort();
  }
  deferred_.push_back(std::move(fn));
  if (deferred_scheduled_) return;
  deferred_scheduled_ = true;
  // Posted from the worker's own thread: Asio queues it without waking anything, and it runs
  // after the handler running now.
  boost::asio::post(io_, [this] {
    deferred_scheduled_ = false;
    run_deferred();
  });
}

void worker::post_batched(std::function<void()> fn) {
  worker* from = current_;
  if (!from || from == this) return post(std::move(fn));
  auto it = std::find_if(from->outbox_.begin(), from->outbox_.end(),
                         [this](const auto& o) { return o.first == this; });
  if (it == from->outbox_.end()) {
    from->outbox_.emplace_back(this, std::vector<std::function<void()>>{});
    it = std::prev(from->outbox_.end());
  }
  it->second.push_back(std::move(fn));
  if (from->outbox_armed_) return;
  from->outbox_armed_ = true;
  from->defer([from] { from->send_outbox(); });
}

void worker::send_outbox() {
  outbox_armed_ = false;
  for (auto& [to, tasks] : outbox_) {
    if (tasks.empty()) continue;
    std::vector<std::function<void()>> batch;
    batch.swap(tasks);
    tasks.reserve(batch.size());
    to->post([batch = std::move(batch)]() mutable {
      for (auto& fn : batch) fn();
    });
  }
}

void worker::run_deferred() {
  if (deferred_.empty()) return;
  // Taken out first: what the deferred work posts must not run it again.
  std::vector<std::function<void()>> now;
  now.swap(deferred_);
  for (auto& fn : now) fn();
}

void worker::stop() {
  work_.reset();
  io_.stop();
}

void worker::join() {
  if (thread_.joinable()) thread_.join();
}

void worker::adopt(std::shared_ptr<connection> c) {
  connections_.push_back(c);
  c->worker_slot_ = std::prev(connections_.end());
}

void worker::release(connection* c) {
  // Keep the object alive until the caller returns: it may be running one of its own methods.
  auto keep = *c->worker_slot_;
  connections_.erase(c->worker_slot_);
  boost::asio::post(io_, [keep] {});
}

void worker::for_each_connection(const std::function<void(connection&)>& fn) {
  for (auto it = connections_.begin(); it != connections_.end();) {
    auto keep = *it++;  // fn may release this one
    fn(*keep);
  }
}

void worker::schedule_flush(std::shared_ptr<connection> c) {
  flush_queue_.push_back(std::move(c));
  if (flush_posted_) return;
  flush_posted_ = true;
  boost::asio::post(io_, [this] { run_flushes(); });
}

void worker::spend_write_budget(size_t n) {
  write_budget_ -= std::min(n, write_budget_);
  renew_budgets_next_turn();
}

void worker::spend_read_budget(size_t n) {
  read_budget_ -= std::min(n, read_budget_);
  renew_budgets_next_turn();
}

void worker::renew_budgets_next_turn() {
  // A handler posted from inside a turn runs after the loop's next epoll_wait, at the head of the
  // next turn (Asio's scheduler queues it behind its reactor marker, and the events the wait
  // returns behind it): so the budgets are renewed once a turn while bytes move, and not at all
  // while the worker is idle.
  if (renewal_posted_) return;
  renewal_posted_ = true;
  boost::asio::post(io_, [this] {
    renewal_posted_ = false;
    write_budget_ = turn_write_budget;
    read_budget_ = turn_read_budget;
  });
}

void worker::run_flushes() {
  // A slice of connections at a time, then whatever was posted meanwhile runs first. A connection
  // that gets more output before its turn (the next message of a room with thousands of members
  // on this worker, say) sends it in the same write: when fan-out outgrows what the worker can
  // write one message at a time, each write carries several messages instead of the worker
  // falling further behind with one system call per message per connection.
  constexpr size_t slice = 64;
  const size_t end = std::min(flush_queue_.size(), flush_head_ + slice);
  while (flush_head_ < end) {
    // flush() may reach handlers that schedule other connections: the vector may grow.
    std::shared_ptr<connection> c = std::move(flush_queue_[flush_head_++]);
    c->flush_scheduled_ = false;
    c->flush();
  }
  if (flush_head_ < flush_queue_.size()) {
    boost::asio::post(io_, [this] { run_flushes(); });
    return;
  }
  flush_queue_.clear();
  if (flush_queue_.capacity() > 4096) flush_queue_.shrink_to_fit();
  flush_head_ = 0;
  flush_posted_ = false;
}

void worker::arm_tick() {
  tick_timer_.expires_after(tick_interval);
  tick_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    on_tick();
    arm_tick();
  });
}

void worker::on_tick() {
  auto now = std::chrono::steady_clock::now();
  for_each_connection([now](connection& c) { c.tick(now); });
  trim_after_handshakes();
}

worker_pool::worker_pool(size_t n) {
  for (size_t i = 0; i < n; ++i) workers_.push_back(std::make_unique<worker>(i));
}

worker_pool::~worker_pool() {
  stop();
  join();
  for (auto& w : workers_) w->close_all_connections();
}

void worker_pool::set_busy_wait(std::chrono::microseconds d) {
  for (auto& w : workers_) w->set_busy_wait(d);
}

void worker_pool::start() {
  for (auto& w : workers_) w->start();
}

void worker_pool::stop() {
  for (auto& w : workers_) w->stop();
}

void worker_pool::join() {
  for (auto& w : workers_) w->join();
}

}  // namespace warren::net
