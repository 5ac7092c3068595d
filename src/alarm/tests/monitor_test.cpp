// The alarms' decisions: thresholds, the hysteresis band, malloc's memory given back before a
// decision, both alarms at once, unreadable probes, and the sampling thread.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "alarm/monitor.hpp"

namespace warren::alarm {
namespace {

using namespace std::chrono_literals;
using clock = resource_monitor::clock;

TEST(HighWatch, OnAboveLimitOffBelowTheBand) {
  high_watch w(1000);  // clears below 950
  EXPECT_FALSE(w.update(1000));
  EXPECT_FALSE(w.on());
  EXPECT_TRUE(w.update(1001));
  EXPECT_TRUE(w.on());
  EXPECT_FALSE(w.update(990));  // under the limit, inside the band: still on
  EXPECT_FALSE(w.update(950));
  EXPECT_TRUE(w.on());
  EXPECT_TRUE(w.update(949));
  EXPECT_FALSE(w.on());
  EXPECT_FALSE(w.update(999));
}

TEST(HighWatch, ZeroLimitIsAlwaysOn) {
  high_watch w(0);  // RabbitMQ's way to stop all publishing: a watermark of 0
  EXPECT_TRUE(w.update(1));
  EXPECT_FALSE(w.update(0));
  EXPECT_TRUE(w.on());
}

TEST(LowWatch, OnBelowLimitOffAboveTheBand) {
  low_watch w(1000);  // clears at 1050
  EXPECT_FALSE(w.update(1000));
  EXPECT_TRUE(w.update(999));
  EXPECT_FALSE(w.update(1049));
  EXPECT_TRUE(w.on());
  EXPECT_TRUE(w.update(1050));
  EXPECT_FALSE(w.on());
}

TEST(LowWatch, HugeLimitDoesNotOverflow) {
  low_watch w(UINT64_MAX);
  EXPECT_TRUE(w.update(UINT64_MAX - 1));
  EXPECT_FALSE(w.update(UINT64_MAX - 1));
  EXPECT_TRUE(w.update(UINT64_MAX));
}

// Scripted readings and a record of what the listener heard.
struct script {
  uint64_t rss = 0;
  uint64_t rss_after_release = 0;  // what a release brings rss down to (0: no change)
  uint64_t free = 1'000'000;
  bool rss_readable = true;
  int releases = 0;
  std::vector<alarm_set> heard;

  probes make() {
    return probes{[this]() -> std::optional<uint64_t> {
                    if (!rss_readable) return std::nullopt;
                    return rss;
                  },
                  [this]() -> std::optional<uint64_t> { return free; },
                  [this] {
                    ++releases;
                    if (rss_after_release) rss = rss_after_release;
                  }};
  }
  resource_monitor::listener listener() {
    return [this](alarm_set s) { heard.push_back(s); };
  }
};

monitor_settings settings(uint64_t memory_limit, uint64_t disk_limit) {
  monitor_settings s;
  s.memory_limit = memory_limit;
  s.disk_free_limit = disk_limit;
  s.disk_path = "/data";
  return s;
}

TEST(Monitor, StartsWithTheFirstReadingsAndDoesNotCallTheListener) {
  script sc;
  sc.rss = 2000;
  sc.free = 10;
  resource_monitor m(settings(1000, 100), sc.make(), sc.listener());
  EXPECT_EQ(m.state(), (alarm_set{true, true}));
  EXPECT_TRUE(sc.heard.empty());
}

TEST(Monitor, ReportsEachChangeOnce) {
  script sc;
  sc.rss = 500;
  resource_monitor m(settings(1000, 100), sc.make(), sc.listener());
  auto t = clock::now();
  EXPECT_EQ(m.state(), alarm_set{});
  m.poll(t += 100ms);
  EXPECT_TRUE(sc.heard.empty());
  sc.rss = 1500;
  m.poll(t += 100ms);
  m.poll(t += 100ms);
  ASSERT_EQ(sc.heard.size(), 1u);
  EXPECT_EQ(sc.heard[0], (alarm_set{true, false}));
  sc.rss = 960;  // under the watermark but within 5 %: stays on
  m.poll(t += 100ms);
  EXPECT_EQ(sc.heard.size(), 1u);
  sc.rss = 900;
  m.poll(t += 100ms);
  ASSERT_EQ(sc.heard.size(), 2u);
  EXPECT_EQ(sc.heard[1], alarm_set{});
}

TEST(Monitor, PagingMarkAtHalfTheWatermarkIsReportedApart) {
  script sc;
  sc.rss = 400;
  resource_monitor m(settings(1000, 100), sc.make(), sc.listener());
  std::vector<bool> paging;
  m.on_paging(0.5, [&](bool on) { paging.push_back(on); });
  auto t = clock::now();
  m.poll(t += 100ms);
  EXPECT_TRUE(paging.empty());
  sc.rss = 600;  // above half the watermark, under the watermark: paging, no alarm
  m.poll(t += 100ms);
  ASSERT_EQ(paging, std::vector<bool>{true});
  EXPECT_TRUE(sc.heard.empty());
  EXPECT_EQ(m.state(), alarm_set{});
  sc.rss = 400;
  m.poll(t += 100ms);
  EXPECT_EQ(paging, (std::vector<bool>{true, false}));
}

TEST(Monitor, ALowerWatermarkAtRunTimeRaisesTheAlarmAndAHigherOneClearsIt) {
  script sc;
  sc.rss = 600;
  resource_monitor m(settings(1000, 100), sc.make(), sc.listener());
  std::vector<bool> paging;
  m.on_paging(0.5, [&](bool on) { paging.push_back(on); });
  auto t = clock::now();
  m.poll(t += 100ms);
  ASSERT_EQ(paging, std::vector<bool>{true});  // 600 is above the paging mark at 500
  m.set_memory_limit(500);
  m.poll(t += 100ms);
  ASSERT_EQ(sc.heard.size(), 1u);
  EXPECT_EQ(sc.heard[0], (alarm_set{true, false}));
  EXPECT_EQ(paging.size(), 1u);  // paging stays on: still above 250
  m.set_memory_limit(2000);      // paging mark 1000: both clear on the next sample
  m.poll(t += 100ms);
  ASSERT_EQ(sc.heard.size(), 2u);
  EXPECT_EQ(sc.heard[1], alarm_set{});
  EXPECT_EQ(paging, (std::vector<bool>{true, false}));
  m.poll(t += 100ms);  // applied once
  EXPECT_EQ(sc.heard.size(), 2u);
}

TEST(Monitor, AWatermarkSetAtRunTimeTurnsOnAMemoryAlarmThatHadNone) {
  script sc;
  sc.rss = 600;
  monitor_settings s = settings(1000, 100);
  s.memory_limit.reset();
  resource_monitor m(s, sc.make(), sc.listener());
  std::vector<bool> paging;
  m.on_paging(0.5, [&](bool on) { paging.push_back(on); });
  auto t = clock::now();
  m.poll(t += 100ms);
  EXPECT_TRUE(sc.heard.empty());
  m.set_memory_limit(550);
  m.poll(t += 100ms);
  ASSERT_EQ(sc.heard.size(), 1u);
  EXPECT_EQ(sc.heard[0], (alarm_set{true, false}));
  EXPECT_EQ(paging, std::vector<bool>{true});
}

TEST(Monitor, TheSamplingThreadAppliesANewWatermarkAtOnce) {
  script sc;
  sc.rss = 600;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<alarm_set> heard;
  monitor_settings s = settings(1000, 100);
  s.memory_interval = std::chrono::hours(1);  // only the change wakes it
  s.disk_interval = std::chrono::hours(1);
  resource_monitor m(s, sc.make(), [&](alarm_set a) {
    std::lock_guard lock(mu);
    heard.push_back(a);
    cv.notify_all();
  });
  m.start();
  m.set_memory_limit(500);
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return !heard.empty(); }));
  EXPECT_EQ(heard[0], (alarm_set{true, false}));
  lock.unlock();
  m.stop();
}

TEST(Monitor, BothAlarmsClearIndependently) {
  script sc;
  sc.rss = 500;
  resource_monitor m(settings(1000, 100), sc.make(), sc.listener());
  auto t = clock::now();
  sc.rss = 2000;
  sc.free = 50;
  m.poll(t += 1100ms);  // the disk is sampled once a second
  ASSERT_EQ(sc.heard.size(), 1u);
  EXPECT_EQ(sc.heard.back(), (alarm_set{true, true}));
  sc.rss = 100;
  m.poll(t += 100ms);
  ASSERT_EQ(sc.heard.size(), 2u);
  EXPECT_EQ(sc.heard.back(), (alarm_set{false, true}));
  EXPECT_TRUE(m.state().any());
  sc.free = 1000;
  m.poll(t += 100ms);  // not yet due: the disk is read once a second
  EXPECT_EQ(sc.heard.size(), 2u);
  m.poll(t += 1000ms);
  ASSERT_EQ(sc.heard.size(), 3u);
  EXPECT_FALSE(sc.heard.back().any());
}

TEST(Monitor, MemoryMallocCanGiveBackDoesNotRaiseTheAlarm) {
  script sc;
  sc.rss = 500;
  resource_monitor m(settings(1000, 100), sc.make(), sc.listener());
  EXPECT_EQ(sc.releases, 0);  // nothing to release while under the watermark
  sc.rss = 1200;
  sc.rss_after_release = 700;
  m.poll(clock::now());
  EXPECT_EQ(sc.releases, 1);
  EXPECT_TRUE(sc.heard.empty());
  EXPECT_FALSE(m.state().memory);
}

// Between half the watermark and the watermark, freed memory is given back every 10 s: a flood
// that stopped leaves no heap it freed counted in RSS for good.
TEST(Monitor, ReleasesAboveHalfTheWatermarkEveryTenSeconds) {
  script sc;
  sc.rss = 400;
  resource_monitor m(settings(1000, 100), sc.make(), sc.listener());
  auto t = clock::now() + std::chrono::hours(1);
  m.poll(t);
  EXPECT_EQ(sc.releases, 0);  // under half
  sc.rss = 700;
  m.poll(t += 100ms);
  EXPECT_EQ(sc.releases, 1);
  for (int i = 0; i < 50; ++i) m.poll(t += 100ms);  // 5 s
  EXPECT_EQ(sc.releases, 1);
  sc.rss_after_release = 300;
  for (int i = 0; i < 60; ++i) m.poll(t += 100ms);  // 6 s more
  EXPECT_EQ(sc.releases, 2);
  EXPECT_EQ(sc.rss, 300u);
  EXPECT_TRUE(sc.heard.empty());
}

TEST(Monitor, ReleasesWhileOnAtMostTwiceASecond) {
  script sc;
  sc.rss = 2000;
  resource_monitor m(settings(1000, 100), sc.make(), sc.listener());
  EXPECT_TRUE(m.state().memory);
  int first = sc.releases;
  EXPECT_EQ(first, 1);  // tried before raising the alarm at start
  auto t = clock::now();
  for (int i = 0; i < 10; ++i) m.poll(t += 100ms);  // one second
  EXPECT_GE(sc.releases - first, 1);
  EXPECT_LE(sc.releases - first, 2);
  sc.rss_after_release = 100;  // the queues drained: the next release brings it under
  for (int i = 0; i < 6 && m.state().memory; ++i) m.poll(t += 100ms);
  EXPECT_FALSE(m.state().memory);
}

TEST(Monitor, UnreadableProbeKeepsTheLastState) {
  script sc;
  sc.rss = 2000;
  resource_monitor m(settings(1000, 100), sc.make(), sc.listener());
  EXPECT_TRUE(m.state().memory);
  sc.rss_readable = false;
  m.poll(clock::now());
  EXPECT_TRUE(m.state().memory);
  EXPECT_TRUE(sc.heard.empty());
}

TEST(Monitor, NoMemoryLimitMeansNoMemoryAlarm) {
  script sc;
  sc.rss = UINT64_MAX;
  monitor_settings s = settings(0, 100);
  s.memory_limit.reset();
  resource_monitor m(s, sc.make(), sc.listener());
  m.poll(clock::now());
  EXPECT_FALSE(m.state().memory);
  EXPECT_EQ(sc.releases, 0);
}

TEST(Monitor, SamplesSoonerWhileMemoryGrowsFastTowardsTheWatermark) {
  script sc;
  sc.rss = 100'000'000;
  monitor_settings s = settings(1'000'000'000, 100);
  s.memory_interval = 100ms;  // the numbers below are worked out for it (the default is 20 ms)
  resource_monitor m(s, sc.make(), sc.listener());
  EXPECT_EQ(m.next_wait(), 100ms);
  auto t = clock::now();
  sc.rss += 1'000'000;  // 10 MB/s: the watermark is far away at this pace
  m.poll(t += 100ms);
  EXPECT_EQ(m.next_wait(), 100ms);
  sc.rss += 500'000'000;  // 5 GB/s: 500 MB more in the next 100 ms would cross it
  m.poll(t += 100ms);
  // 1/20 of the watermark (50 MB) at 5 GB/s: 10 ms.
  using ms = std::chrono::duration<double, std::milli>;
  EXPECT_NEAR(ms(m.next_wait()).count(), 10.0, 0.5);
  sc.rss += 100'000'000;  // 100 MB in 1 ms: as soon as allowed
  m.poll(t += 1ms);
  EXPECT_EQ(m.next_wait(), 5ms);
  sc.rss = 2'000'000'000;
  m.poll(t += 5ms);
  EXPECT_TRUE(m.state().memory);
  EXPECT_EQ(m.next_wait(), 100ms);  // on: nothing to catch any more
  sc.rss = 100'000'000;
  m.poll(t += 100ms);
  EXPECT_FALSE(m.state().memory);
  EXPECT_EQ(m.next_wait(), 100ms);  // shrinking
}

TEST(Monitor, ThreadSamplesAndStops) {
  std::atomic<uint64_t> rss{10};
  std::atomic<int> calls{0};
  std::atomic<bool> last{false};
  monitor_settings s = settings(1000, 0);
  s.memory_interval = 5ms;
  resource_monitor m(s,
                     probes{[&]() -> std::optional<uint64_t> { return rss.load(); },
                            []() -> std::optional<uint64_t> { return 1; }, nullptr},
                     [&](alarm_set a) {
                       last = a.memory;
                       ++calls;
                     });
  m.start();
  rss = 5000;
  for (int i = 0; i < 400 && calls < 1; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(last);
  rss = 10;
  for (int i = 0; i < 400 && calls < 2; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(calls, 2);
  EXPECT_FALSE(last);
  m.stop();
  rss = 5000;
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(calls, 2);  // stopped: no more samples
}

}  // namespace
}  // namespace warren::alarm
