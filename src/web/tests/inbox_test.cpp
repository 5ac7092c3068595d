// Inboxes kept in the vhost's store: held for users who are away, read back from disk by
// following each user's chain of records, limited by count and age, transient sends, read
// positions and erasure, and all of it across a restart of the store (a new hub recovering it).
#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "auth/user_store.hpp"
#include "broker/vhost.hpp"
#include "net/worker.hpp"
#include "store/message_store.hpp"
#include "web/gateway.hpp"
#include "web/hub.hpp"

using namespace warren;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct recorder : web::event_receiver {
  std::vector<json> got;
  size_t on_events(const web::event* evs, size_t n) override {
    for (size_t i = 0; i < n; ++i) add(evs[i]);
    return n;
  }
  void on_replay(std::vector<web::event> evs) override {
    for (const auto& e : evs) add(e);
  }
  void add(const web::event& e) {
    std::string s;
    web::append_event_json(s, e);
    got.push_back(json::parse(s));
  }
};

class InboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("warren-inbox-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override {
    stop();
    fs::remove_all(dir_);
  }
  void start(web::gateway_settings s = {}, store::store_options so = {}) {
    so.fsync = false;
    settings_ = s;
    vhost_ = std::make_unique<broker::vhost>("/", 0);
    web::gateway::declare_exchanges(*vhost_);
    store_ = std::make_unique<store::message_store>(dir_, so);
    store_->recover(*vhost_);
    pool_ = std::make_unique<net::worker_pool>(1);
    gw_ = std::make_unique<web::gateway>(
        s, std::nullopt,
        web::gateway::deps{&users_, vhost_.get(), pool_.get(), nullptr, store_.get()}, fs::path());
    gw_->prepare();
    pool_->start();
  }
  void stop() {
    if (!pool_) return;
    pool_->stop();
    pool_->join();
    gw_.reset();
    store_.reset();  // writes and syncs what is pending
    pool_.reset();
    vhost_.reset();
  }
  void restart() {
    stop();
    start(settings_);
  }
  template <typename F>
  auto on_hub(F&& fn) {
    std::promise<decltype(fn())> p;
    pool_->at(0).post([&] {
      if constexpr (std::is_void_v<decltype(fn())>) {
        fn();
        p.set_value();
      } else {
        p.set_value(fn());
      }
    });
    auto v = p.get_future();
    v.wait();
    // Deliveries wait for the store's sync; then the hub's worker releases them, then the
    // receivers' worker (the same one here) delivers.
    store_->flush();
    sync();
    sync();
    return v.get();
  }
  void sync() {
    std::promise<void> p;
    pool_->at(0).post([&] { p.set_value(); });
    p.get_future().wait();
  }
  web::link_ptr link(const std::string& user, recorder& r) {
    auto l = std::make_shared<web::session_link>();
    l->receiver = &r;
    l->worker = &pool_->at(0);
    l->user = user;
    return l;
  }
  // A send as the backend API makes it; returns the store ticket the answer waits for.
  uint64_t send(const std::string& user, const std::string& body,
                std::optional<int64_t> ttl_ms = std::nullopt, bool transient = false) {
    auto m = std::make_shared<broker::message>();
    m->exchange = "warren.users";
    m->routing_key = user;
    m->body = body;
    m->properties.delivery_mode = 2;
    if (ttl_ms) m->properties.expiration = std::to_string(*ttl_ms);
    if (transient) {
      common::field_table h;
      h.set("x-warren-transient", true);
      m->properties.headers = h;
    }
    return on_hub([&] {
      uint64_t t = 0;
      vhost_->publish(m, 0, &t);
      return t;
    });
  }
  std::vector<json> replay(const std::string& user, uint64_t since) {
    recorder r;
    auto l = link(user, r);
    on_hub([&] { hub().attach(l, since); });
    on_hub([&] { hub().detach(l); });
    return r.got;
  }
  web::hub& hub() { return gw_->the_hub(); }

  fs::path dir_;
  web::gateway_settings settings_;
  auth::user_store users_;
  std::unique_ptr<broker::vhost> vhost_;
  std::unique_ptr<store::message_store> store_;
  std::unique_ptr<net::worker_pool> pool_;
  std::unique_ptr<web::gateway> gw_;
};

}  // namespace

TEST_F(InboxTest, HeldForAUserWhoNeverConnectedAndReadBackFromDisk) {
  start();
  for (int i = 1; i <= 5; ++i) EXPECT_GT(send("hank", std::to_string(i)), 0u);
  auto got = replay("hank", 0);
  ASSERT_EQ(got.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(got[size_t(i)]["data"], i + 1);
    EXPECT_EQ(got[size_t(i)]["seq"], got[0]["seq"].get<uint64_t>() + uint64_t(i));
  }
  // Resuming after the 3rd: the 4th and 5th, no reset.
  auto rest = replay("hank", got[2]["seq"]);
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[0]["data"], 4);
}

TEST_F(InboxTest, ARestartKeepsEventsAndTheNumberingGoesOn) {
  start();
  send("hank", R"({"n":1})");
  send("hank", R"({"n":2})");
  recorder live;
  auto l = link("hank", live);
  on_hub([&] { hub().attach(l, 0); });
  send("hank", R"({"n":3})");  // cached for the connected user, and on disk
  ASSERT_EQ(live.got.size(), 3u);
  uint64_t last = live.got[2]["seq"];
  on_hub([&] { hub().set_read("hank", last - 1); });
  restart();
  // Resuming from the last seen: nothing, and no reset.
  EXPECT_TRUE(replay("hank", last).empty());
  auto all = replay("hank", 0);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[2], live.got[2]);
  send("hank", R"({"n":4})");
  auto after = replay("hank", last);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0]["seq"], last + 1);
  auto page = on_hub([&] { return hub().read_inbox("hank", 0, 10); });
  EXPECT_EQ(page.read_seq, last - 1);
  EXPECT_EQ(page.unread, 2u);
  EXPECT_EQ(page.events.size(), 4u);
}

TEST_F(InboxTest, TheCountLimitKeepsTheNewestAndSaysResetForTheRest) {
  web::gateway_settings s;
  s.inbox_size = 3;
  start(s);
  for (int i = 1; i <= 5; ++i) send("ivy", std::to_string(i));
  auto got = replay("ivy", 0);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0]["data"], 3);
  auto from_first = replay("ivy", got[0]["seq"].get<uint64_t>() - 2);
  ASSERT_EQ(from_first.size(), 4u);
  EXPECT_EQ(from_first[0]["type"], "reset");
  EXPECT_EQ(from_first[0]["data"]["reason"], "dropped");
  restart();
  EXPECT_EQ(replay("ivy", 0).size(), 3u);
}

TEST_F(InboxTest, EventsExpireByTheirOwnTtlOrTheInboxOnesAndTheirSegmentsGo) {
  web::gateway_settings s;
  s.inbox_ttl = std::chrono::milliseconds(1500);
  s.inbox_linger = std::chrono::seconds(0);
  store::store_options so;
  so.segment_bytes = 4096;
  start(s, so);
  send("jo", R"("short")", 200);
  send("jo", R"("default")");
  send("jo", R"("long")", 60'000);  // capped at --inbox-ttl
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  auto got = replay("jo", 0);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0]["data"], "default");
  // Fill a few segments, then let everything expire: the hub's tick drops them.
  for (int i = 0; i < 100; ++i) send("kim", std::string(100, 'x').insert(0, 1, '"') + '"');
  EXPECT_GT(on_hub([&] { return store_->inbox_segments(); }), 2u);
  for (int i = 0; i < 50 && on_hub([&] { return store_->inbox_segments(); }) > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(on_hub([&] { return store_->inbox_segments(); }), 0u);
  EXPECT_TRUE(replay("jo", 0).empty());
  // Forgotten once all expired and not connected (the sweep runs every second).
  for (int i = 0; i < 30 && on_hub([&] { return hub().inbox_count(); }) > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(on_hub([&] { return hub().inbox_count(); }), 0u);
  size_t seg_files = 0;
  for (const auto& e : fs::directory_iterator(dir_ / "msgs"))
    if (e.path().extension() == ".seg") ++seg_files;
  EXPECT_LE(seg_files, 1u);  // at most the (empty) one being written
}

TEST_F(InboxTest, TransientSendsReachOnlyWhoIsConnectedAndAreNotHeld) {
  start();
  EXPECT_EQ(send("lea", R"("nobody there")", std::nullopt, true), 0u);
  EXPECT_EQ(on_hub([&] { return hub().inbox_count(); }), 0u);
  send("lea", R"("held")");
  recorder live;
  auto l = link("lea", live);
  on_hub([&] { hub().attach(l, std::nullopt); });
  EXPECT_EQ(send("lea", R"("typing")", std::nullopt, true), 0u);
  send("lea", R"("zero ttl")", 0);  // as an AMQP queue does: now or never
  ASSERT_EQ(live.got.size(), 2u);
  EXPECT_EQ(live.got[0]["transient"], true);
  EXPECT_EQ(live.got[1]["transient"], true);
  auto held = replay("lea", 0);
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0]["data"], "held");
  // A transient event carries the last held seq: resuming from it loses nothing.
  EXPECT_EQ(live.got[0]["seq"], held[0]["seq"]);
}

TEST_F(InboxTest, EraseForgetsTheInboxAcrossARestart) {
  start();
  send("max", R"("secret")");
  EXPECT_GT(on_hub([&] { return hub().erase("max"); }), 0u);
  EXPECT_TRUE(replay("max", 0).empty());
  EXPECT_EQ(on_hub([&] { return hub().read_inbox("max", 0, 10); }).events.size(), 0u);
  EXPECT_FALSE(on_hub([&] { return hub().set_read("nobody", 1); }).has_value());
  send("max", R"("after")");
  restart();
  auto got = replay("max", 0);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0]["data"], "after");
}

TEST_F(InboxTest, RoomHistoryComesBackAfterARestart) {
  web::gateway_settings s;
  s.room_history = 2;
  start(s);
  for (int i = 1; i <= 3; ++i) {
    auto m = std::make_shared<broker::message>();
    m->exchange = "warren.rooms";
    m->routing_key = "lobby";
    m->body = std::to_string(i);
    on_hub([&] { vhost_->publish(m); });
  }
  restart();
  recorder a;
  auto l = link("ann", a);
  on_hub([&] { hub().attach(l, std::nullopt); });
  on_hub([&] { hub().join("ann", "lobby"); });
  ASSERT_EQ(a.got.size(), 2u);
  EXPECT_EQ(a.got[0]["type"], "history");
  EXPECT_EQ(a.got[0]["data"], 2);
  EXPECT_EQ(a.got[1]["data"], 3);
}

TEST_F(InboxTest, ResumingAThousandEventsFromDiskIsQuick) {
  start();
  for (int i = 0; i < 1000; ++i) send("pat", R"({"text":"a message of ordinary length, say"})");
  restart();  // nothing cached: all from the store
  auto t0 = std::chrono::steady_clock::now();
  auto got = replay("pat", 0);
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(got.size(), 1000u);
  std::printf("resume of 1000 events from the store: %.2f ms\n", ms);
  EXPECT_LT(ms, 50.0);  // the benchmark's bound is 10 ms; loose here for loaded CI machines
}
