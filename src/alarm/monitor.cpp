// The resource monitor's sampling loop and its hysteresis.
#include "alarm/monitor.hpp"

#include <pthread.h>
#include <signal.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>

#include "alarm/limits.hpp"

namespace warren::alarm {

bool high_watch::update(uint64_t value) {
  bool was = on_;
  on_ = above(value);
  return on_ != was;
}

low_watch::low_watch(uint64_t limit) : limit_(limit) {
  uint64_t band = limit / 20;
  clear_at_ = limit > std::numeric_limits<uint64_t>::max() - band ? limit : limit + band;
}

bool low_watch::update(uint64_t value) {
  bool was = on_;
  on_ = on_ ? value < clear_at_ : value < limit_;
  return on_ != was;
}

resource_monitor::resource_monitor(monitor_settings s, probes p, listener on_change)
    : settings_(std::move(s)),
      probes_(std::move(p)),
      listener_(std::move(on_change)),
      disk_(settings_.disk_free_limit),
      next_wait_(settings_.memory_interval) {
  if (settings_.memory_limit && probes_.rss) memory_.emplace(*settings_.memory_limit);
  auto now = clock::now();
  check_memory(now);
  check_disk();
  next_disk_ = now + settings_.disk_interval;
  state_ = {memory_ && memory_->on(), disk_.on()};
}

resource_monitor::~resource_monitor() {
  stop();
}

void resource_monitor::on_paging(double ratio, std::function<void(bool)> fn) {
  paging_ratio_ = ratio;
  paging_listener_ = std::move(fn);
  if (memory_) paging_.emplace(uint64_t(double(memory_->limit()) * ratio));
}

void resource_monitor::set_memory_limit(uint64_t bytes) {
  {
    std::lock_guard lock(mutex_);
    new_memory_limit_ = bytes;
  }
  wake_.notify_all();
}

void resource_monitor::apply_memory_limit() {
  std::optional<uint64_t> limit;
  {
    std::lock_guard lock(mutex_);
    limit.swap(new_memory_limit_);
  }
  if (!limit || !probes_.rss) return;
  spdlog::info("memory high watermark changed to {}", describe_size(*limit));
  memory_.emplace(*limit, memory_ && memory_->on());
  if (paging_listener_)
    paging_.emplace(uint64_t(double(*limit) * paging_ratio_), paging_ && paging_->on());
  last_rss_at_ = {};  // the growth estimate was against the old limit
}

bool resource_monitor::check_memory(clock::time_point now) {
  if (!memory_) return false;
  auto rss = probes_.rss();
  if (!rss) {
    if (!warned_rss_) spdlog::warn("cannot read this process's memory use; memory alarm paused");
    warned_rss_ = true;
    return false;
  }
  warned_rss_ = false;
  // Freed memory that malloc still holds is not the broker's: give it back before deciding.
  // Above half the watermark it is also given back every settle_release_interval with no
  // alarm near: after a flood of 1 MB messages glibc kept 680 MB of freed heap for good.
  bool alarm_near =
      memory_->above(*rss) && (!memory_->on() || now - last_release_ >= settings_.release_interval);
  bool settling =
      *rss > memory_->limit() / 2 && now - last_release_ >= settings_.settle_release_interval;
  if ((alarm_near || settling) && probes_.release_memory) {
    probes_.release_memory();
    last_release_ = now;
    if (auto again = probes_.rss()) rss = again;
  }
  if (paging_ && paging_->update(*rss)) {
    if (paging_->on())
      spdlog::info(
          "resident memory {} is above the paging mark {}: queues page their backlogs "
          "to disk",
          describe_size(*rss), describe_size(paging_->limit()));
    else
      spdlog::info("resident memory {} is below the paging mark {} again", describe_size(*rss),
                   describe_size(paging_->limit()));
    if (paging_listener_) paging_listener_(paging_->on());
  }
  bool changed = memory_->update(*rss);
  next_wait_ = memory_wait(*rss, now);
  if (!changed) return false;
  if (memory_->on())
    spdlog::warn(
        "memory resource limit alarm set: resident memory {} is above the high watermark {}; "
        "publishers are blocked until it clears",
        describe_size(*rss), describe_size(memory_->limit()));
  else
    spdlog::info("memory resource limit alarm cleared: resident memory {}, high watermark {}",
                 describe_size(*rss), describe_size(memory_->limit()));
  return true;
}

bool resource_monitor::check_disk() {
  if (!probes_.disk_free) return false;
  auto free = probes_.disk_free();
  if (!free) {
    if (!warned_disk_)
      spdlog::warn("cannot read the free space of {}; disk alarm paused", settings_.disk_path);
    warned_disk_ = true;
    return false;
  }
  warned_disk_ = false;
  if (!disk_.update(*free)) return false;
  if (disk_.on())
    spdlog::warn(
        "disk resource limit alarm set: {} free in {} is below the limit {}; publishers are "
        "blocked until it clears",
        describe_size(*free), settings_.disk_path, describe_size(disk_.limit()));
  else
    spdlog::info("disk resource limit alarm cleared: {} free in {}, limit {}", describe_size(*free),
                 settings_.disk_path, describe_size(disk_.limit()));
  return true;
}

std::chrono::nanoseconds resource_monitor::memory_wait(uint64_t rss, clock::time_point now) {
  std::chrono::nanoseconds wait = settings_.memory_interval;
  if (last_rss_at_ != clock::time_point{} && rss > last_rss_ && !memory_->on()) {
    auto elapsed =
        std::max<std::chrono::nanoseconds>(now - last_rss_at_, std::chrono::milliseconds(1));
    double rate = double(rss - last_rss_) / double(elapsed.count());  // bytes per ns
    uint64_t limit = memory_->limit();
    // Growth kept up crosses the watermark before the next regular sample: come back after
    // about a twentieth of the watermark's worth of growth instead.
    // (In doubles: a scripted reading may be any size, and float-to-integer overflow is UB.)
    if (double(rss) + rate * double(wait.count()) > double(limit)) {
      double step = std::min(double(limit / 20 + 1) / rate, double(wait.count()));
      wait = std::max<std::chrono::nanoseconds>(std::chrono::nanoseconds(int64_t(step)),
                                                settings_.min_memory_interval);
    }
  }
  last_rss_ = rss;
  last_rss_at_ = now;
  return wait;
}

void resource_monitor::poll(clock::time_point now) {
  apply_memory_limit();
  bool changed = check_memory(now);
  if (now >= next_disk_) {
    changed |= check_disk();
    next_disk_ = now + settings_.disk_interval;
  }
  if (!changed) return;
  state_ = {memory_ && memory_->on(), disk_.on()};
  if (listener_) listener_(state_);
}

void resource_monitor::start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] {
    // Shutdown signals are for the main thread's sigwait.
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    pthread_setname_np(pthread_self(), "monitor");
    run();
  });
}

void resource_monitor::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void resource_monitor::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    poll(clock::now());
    lock.lock();
    wake_.wait_for(lock, next_wait_, [this] { return stopping_ || new_memory_limit_; });
  }
}

}  // namespace warren::alarm
