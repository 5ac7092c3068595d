// The resource monitor: one thread that samples the process's resident memory (every 20 ms,
// sooner while it grows fast) and the data directory's free space (every second), decides
// whether the memory and disk alarms are on, logs each change in one line, and reports the new
// set to a listener (the broker's wiring tells every worker). Owned by the application; knows
// no workers or protocol.
//
//   alarm   goes on when                 goes off when
//   memory  RSS > high watermark         RSS < watermark - watermark/20
//   disk    free < disk_free_limit       free >= limit + limit/20
//
// The 5 % band keeps an alarm from flapping on every sample while usage hovers at the limit.
// Before raising the memory alarm, and about twice a second while it is on, the monitor first
// asks malloc to return its free memory to the kernel (release_memory) and samples again, so
// that memory the broker has already freed counts neither for raising nor for keeping it.
//
// A publisher on loopback can bring 1 GB/s (measured: 64 KiB messages from pika), so between two
// samples 100 ms apart a flood that starts right after one overshot a 40 MiB headroom by 70 MiB;
// reading /proc/self/statm 50 times a second costs about 0.1 % of a core. And a flood can fill
// memory faster than even that notices: when the last interval's
// growth, kept up, would cross the watermark before the next sample, the next one comes as soon
// as the growth reaches about 1/20 of the watermark (not sooner than min_memory_interval). The
// overshoot past the watermark is then about 1/20 of it plus what arrives while the workers
// apply the block.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace warren::alarm {

struct alarm_set {
  bool memory = false;
  bool disk = false;
  bool any() const { return memory || disk; }
  friend bool operator==(const alarm_set&, const alarm_set&) = default;
};

// Hysteresis for "too high" (memory) and "too low" (disk) readings. Pure: tests feed numbers.
class high_watch {
 public:
  explicit high_watch(uint64_t limit, bool on = false)
      : limit_(limit), clear_below_(limit - limit / 20), on_(on) {}
  // True when the state changed.
  bool update(uint64_t value);
  bool on() const { return on_; }
  // Whether `value` would keep the alarm on, or raise it.
  bool above(uint64_t value) const { return on_ ? value >= clear_below_ : value > limit_; }
  uint64_t limit() const { return limit_; }

 private:
  uint64_t limit_;
  uint64_t clear_below_;
  bool on_ = false;
};

class low_watch {
 public:
  explicit low_watch(uint64_t limit);
  bool update(uint64_t value);
  bool on() const { return on_; }
  uint64_t limit() const { return limit_; }

 private:
  uint64_t limit_;
  uint64_t clear_at_;
  bool on_ = false;
};

struct monitor_settings {
  std::optional<uint64_t> memory_limit;  // bytes of RSS; nullopt: no memory alarm
  uint64_t disk_free_limit = 50'000'000;
  std::string disk_path;  // the data directory, for log lines
  std::chrono::milliseconds memory_interval{20};
  std::chrono::milliseconds min_memory_interval{5};
  std::chrono::milliseconds disk_interval{1000};
  std::chrono::milliseconds release_interval{500};  // malloc_trim while the memory alarm is on
  // malloc_trim above half the watermark, alarm or not
  std::chrono::milliseconds settle_release_interval{10'000};
};

// Where readings come from: the real system in the broker, scripted values in tests.
struct probes {
  std::function<std::optional<uint64_t>()> rss;
  std::function<std::optional<uint64_t>()> disk_free;  // empty: no disk alarm
  std::function<void()> release_memory;                // may be empty
};

class resource_monitor {
 public:
  using clock = std::chrono::steady_clock;
  using listener = std::function<void(alarm_set)>;

  // Takes the first readings at once (logging any alarm that is on), without calling the
  // listener: state() is what the broker starts with.
  resource_monitor(monitor_settings s, probes p, listener on_change);
  ~resource_monitor();
  resource_monitor(const resource_monitor&) = delete;
  resource_monitor& operator=(const resource_monitor&) = delete;

  // Samples on a thread of its own until stop() (or destruction). All signals are blocked on it.
  void start();
  void stop();

  // One round of sampling as the thread does it; calls the listener when the set changed.
  // For tests (without start()).
  void poll(clock::time_point now);
  // How long the thread waits after the last poll.
  std::chrono::nanoseconds next_wait() const { return next_wait_; }
  // The current set. Safe before start(), after stop(), or from the listener.
  alarm_set state() const { return state_; }
  // Memory above `ratio` of the watermark (RabbitMQ's vm_memory_high_watermark_paging_ratio,
  // 0.5): queues should page their backlogs to disk before the alarm has to block publishers.
  // fn(on) is called on the monitor's thread when that changes. Set before start().
  void on_paging(double ratio, std::function<void(bool)> fn);
  // Changes the memory watermark (and the paging mark with it) from any thread, as
  // rabbitmqctl's set_vm_memory_high_watermark does; the alarm keeps its state and the next
  // sample, taken at once, decides against the new limit (logging any change).
  void set_memory_limit(uint64_t bytes);

 private:
  void apply_memory_limit();  // what set_memory_limit() left, on the sampling thread
  bool check_memory(clock::time_point now);
  // When to sample memory next, given the growth since the previous sample.
  std::chrono::nanoseconds memory_wait(uint64_t rss, clock::time_point now);
  bool check_disk();
  void run();

  monitor_settings settings_;
  probes probes_;
  listener listener_;
  std::optional<high_watch> memory_;
  std::optional<high_watch> paging_;
  double paging_ratio_ = 0;
  std::function<void(bool)> paging_listener_;
  low_watch disk_;
  alarm_set state_;
  clock::time_point next_disk_{};
  clock::time_point last_release_{};
  uint64_t last_rss_ = 0;
  clock::time_point last_rss_at_{};
  std::chrono::nanoseconds next_wait_;
  bool warned_rss_ = false;
  bool warned_disk_ = false;

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::optional<uint64_t> new_memory_limit_;  // guarded by mutex_
  std::thread thread_;
};

}  // namespace warren::alarm
