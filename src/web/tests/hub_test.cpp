// The gateway hub with a real vhost and worker: inboxes and their sequence numbers, replay and
// reset events, rooms with history, feeds, linger. Receivers here just record what they get.
#include "web/hub.hpp"

#include <gtest/gtest.h>

#include <future>
#include <nlohmann/json.hpp>

#include "auth/user_store.hpp"
#include "broker/vhost.hpp"
#include "net/worker.hpp"
#include "web/gateway.hpp"

using namespace warren;
using json = nlohmann::json;

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

class HubTest : public ::testing::Test {
 protected:
  void start(web::gateway_settings s) {
    vhost_ = std::make_unique<broker::vhost>("/", 0);
    pool_ = std::make_unique<net::worker_pool>(1);
    gw_ = std::make_unique<web::gateway>(
        s, std::nullopt, web::gateway::deps{&users_, vhost_.get(), pool_.get(), nullptr},
        std::filesystem::path());
    gw_->prepare();
    pool_->start();
  }
  void TearDown() override {
    if (pool_) {
      pool_->stop();
      pool_->join();
    }
  }
  // Runs fn on the hub's worker and waits for it (and for what it posted back to that worker).
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
  bool publish(const std::string& exchange, const std::string& key, const std::string& body,
               std::optional<std::string> from = std::nullopt) {
    auto m = std::make_shared<broker::message>();
    m->exchange = exchange;
    m->routing_key = key;
    m->body = body;
    if (from) {
      common::field_table h;
      h.set("from", *from);
      m->properties.headers = h;
    }
    return on_hub([&] {
      auto r = vhost_->publish(m);
      return std::get<broker::publish_outcome>(r) == broker::publish_outcome::routed;
    });
  }
  web::hub& hub() { return gw_->the_hub(); }

  auth::user_store users_;
  std::unique_ptr<broker::vhost> vhost_;
  std::unique_ptr<net::worker_pool> pool_;
  std::unique_ptr<web::gateway> gw_;
};

}  // namespace

TEST_F(HubTest, MessagesReachEveryConnectionOfTheUserWithConsecutiveSeqs) {
  start({});
  // Not connected: held for her all the same.
  EXPECT_TRUE(publish("warren.users", "alice", R"({"n":0})"));
  recorder a1, a2;
  auto l1 = link("alice", a1), l2 = link("alice", a2);
  on_hub([&] {
    hub().attach(l1, std::nullopt);
    hub().attach(l2, std::nullopt);
  });
  EXPECT_TRUE(publish("warren.users", "alice", R"({"n":1})", "server"));
  EXPECT_TRUE(publish("warren.users", "alice", "plain text"));
  sync();
  ASSERT_EQ(a1.got.size(), 2u);
  ASSERT_EQ(a2.got.size(), 2u);
  EXPECT_EQ(a1.got[0]["type"], "message");
  EXPECT_EQ(a1.got[0]["data"], json({{"n", 1}}));
  EXPECT_EQ(a1.got[0]["from"], "server");
  EXPECT_TRUE(a1.got[0]["room"].is_null());
  EXPECT_EQ(a1.got[1]["data"], "plain text");
  EXPECT_EQ(a1.got[1]["seq"].get<uint64_t>(), a1.got[0]["seq"].get<uint64_t>() + 1);
  EXPECT_EQ(a1.got, a2.got);
  auto [online, n] = on_hub([&] { return hub().presence("alice"); });
  EXPECT_TRUE(online);
  EXPECT_EQ(n, 2u);
  // From 0: the one sent while she was away too, numbered just before.
  recorder a3;
  on_hub([&] { hub().attach(link("alice", a3), 0); });
  ASSERT_EQ(a3.got.size(), 3u);
  EXPECT_EQ(a3.got[0]["data"], json({{"n", 0}}));
  EXPECT_EQ(a3.got[0]["seq"].get<uint64_t>() + 1, a1.got[0]["seq"].get<uint64_t>());
}

TEST_F(HubTest, ResumeReplaysWhatIsHeldAndSaysResetForWhatIsGone) {
  web::gateway_settings s;
  s.inbox_size = 3;
  start(s);
  recorder live;
  auto l = link("bob", live);
  on_hub([&] { hub().attach(l, std::nullopt); });
  for (int i = 1; i <= 5; ++i) publish("warren.users", "bob", std::to_string(i));
  sync();
  ASSERT_EQ(live.got.size(), 5u);
  uint64_t first = live.got[0]["seq"];

  // Resuming after the 3rd: the 4th and 5th, no reset.
  recorder r1;
  on_hub([&] { hub().attach(link("bob", r1), first + 2); });
  ASSERT_EQ(r1.got.size(), 2u);
  EXPECT_EQ(r1.got[0]["seq"], first + 3);
  EXPECT_EQ(r1.got[0]["data"], 4);

  // Resuming after the 1st: the 2nd is no longer held (3 kept): a reset, then 3..5.
  recorder r2;
  on_hub([&] { hub().attach(link("bob", r2), first); });
  ASSERT_EQ(r2.got.size(), 4u);
  EXPECT_EQ(r2.got[0]["type"], "reset");
  EXPECT_EQ(r2.got[0]["data"]["reason"], "dropped");
  EXPECT_EQ(r2.got[0]["seq"], first + 1);
  EXPECT_EQ(r2.got[1]["seq"], first + 2);

  // A number from before anything held (an inbox erased or expired since): a reset saying what
  // followed it is gone, then everything held.
  recorder r3;
  on_hub([&] { hub().attach(link("bob", r3), first - 1000); });
  ASSERT_EQ(r3.got.size(), 4u);
  EXPECT_EQ(r3.got[0]["type"], "reset");
  EXPECT_EQ(r3.got[0]["data"]["reason"], "dropped");

  // A number above anything this inbox gave out: a reset numbered at its last event, so that the
  // client goes on from there (and nothing later is held back as "already seen").
  recorder r5;
  on_hub([&] { hub().attach(link("bob", r5), first + 1000); });
  ASSERT_EQ(r5.got.size(), 1u);
  EXPECT_EQ(r5.got[0]["type"], "reset");
  EXPECT_EQ(r5.got[0]["seq"], first + 4);

  // since=0: everything held, no reset.
  recorder r4;
  on_hub([&] { hub().attach(link("bob", r4), 0); });
  ASSERT_EQ(r4.got.size(), 3u);
  EXPECT_EQ(r4.got[0]["type"], "message");
}

TEST_F(HubTest, RoomsGiveHistoryOnceThenLiveMessages) {
  web::gateway_settings s;
  s.room_history = 2;
  start(s);
  for (int i = 1; i <= 3; ++i)
    EXPECT_TRUE(publish("warren.rooms", "lobby", std::to_string(i), "x"));
  recorder a;
  auto l = link("alice", a);
  on_hub([&] { hub().attach(l, std::nullopt); });
  auto r = on_hub([&] { return hub().join("alice", "lobby"); });
  EXPECT_EQ(r.code, 200);
  EXPECT_FALSE(r.already);
  ASSERT_EQ(a.got.size(), 2u);
  EXPECT_EQ(a.got[0]["type"], "history");
  EXPECT_EQ(a.got[0]["data"], 2);
  EXPECT_EQ(a.got[1]["data"], 3);
  EXPECT_EQ(a.got[0]["room"], "lobby");
  EXPECT_TRUE(on_hub([&] { return hub().join("alice", "lobby"); }).already);
  EXPECT_EQ(a.got.size(), 2u);  // no history again
  publish("warren.rooms", "lobby", R"({"text":"hi"})", "bob");
  sync();
  ASSERT_EQ(a.got.size(), 3u);
  EXPECT_EQ(a.got[2]["type"], "message");
  EXPECT_EQ(a.got[2]["from"], "bob");
  auto members = on_hub([&] { return hub().members("lobby"); });
  ASSERT_EQ(members.size(), 1u);
  EXPECT_EQ(members[0].user, "alice");
  EXPECT_EQ(on_hub([&] { return hub().leave("alice", "lobby"); }).code, 200);
  EXPECT_EQ(on_hub([&] { return hub().leave("alice", "lobby"); }).code, 404);
  publish("warren.rooms", "lobby", "after leaving");
  sync();
  EXPECT_EQ(a.got.size(), 3u);
}

TEST_F(HubTest, FeedReachesEveryFollowerConnectedOrNot) {
  start({});
  on_hub([&] {
    hub().follows().follow("alice", "star");
    hub().follows().follow("bob", "star");
  });
  recorder a;
  auto l = link("alice", a);
  on_hub([&] { hub().attach(l, std::nullopt); });
  EXPECT_TRUE(publish("warren.feed", "star", R"({"post":1})"));
  EXPECT_EQ(on_hub([&] { return hub().last_feed_fanout(); }), 2u);  // bob's is held for him
  ASSERT_EQ(a.got.size(), 1u);
  EXPECT_EQ(a.got[0]["from"], "star");
  EXPECT_EQ(a.got[0]["feed"], "star");
  EXPECT_FALSE(publish("warren.feed", "nobody-follows-me", "x"));
}

TEST_F(HubTest, AnEmptyInboxAndItsRoomsGoAfterTheLingerTime) {
  web::gateway_settings s;
  s.inbox_linger = std::chrono::seconds(0);
  start(s);
  recorder a;
  auto l = link("alice", a);
  on_hub([&] { hub().attach(l, std::nullopt); });
  on_hub([&] { hub().join("alice", "lobby"); });
  on_hub([&] { hub().detach(l); });
  EXPECT_FALSE(on_hub([&] { return hub().presence("alice"); }).first);
  // The linger timer runs every second.
  for (int i = 0; i < 40 && on_hub([&] { return hub().inbox_count(); }) > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(on_hub([&] { return hub().inbox_count(); }), 0u);
  EXPECT_TRUE(on_hub([&] { return hub().members("lobby"); }).empty());
  // A send makes it again, holding the event for her return.
  EXPECT_TRUE(publish("warren.users", "alice", "x"));
  EXPECT_EQ(on_hub([&] { return hub().inbox_count(); }), 1u);
}

TEST_F(HubTest, StatisticsCountWhatTheHubHoldsAndHowItResumed) {
  web::gateway_settings s;
  s.inbox_size = 3;
  start(s);
  auto stats = [&] {
    std::promise<web::gateway_stats> p;
    gw_->gather_stats([&p](web::gateway_stats st) { p.set_value(st); });
    return p.get_future().get();
  };
  EXPECT_EQ(stats().inboxes, 0u);

  recorder a1, a2, b;
  auto l1 = link("alice", a1), l2 = link("alice", a2), lb = link("bob", b);
  on_hub([&] {
    hub().attach(l1, std::nullopt);
    hub().attach(l2, std::nullopt);
    hub().attach(lb, std::nullopt);
  });
  on_hub([&] { hub().join("bob", "lobby"); });
  for (int i = 1; i <= 5; ++i) publish("warren.users", "alice", std::to_string(i));
  sync();
  ASSERT_EQ(a1.got.size(), 5u);
  auto st = stats();
  EXPECT_EQ(st.online_users, 2u);  // alice (twice connected) and bob
  EXPECT_EQ(st.inboxes, 2u);
  EXPECT_EQ(st.held_events, 3u);  // alice's last 3; bob's inbox holds nothing
  EXPECT_EQ(st.rooms, 1u);
  EXPECT_EQ(st.replays, 0u);
  EXPECT_EQ(st.resets, 0u);
  // Live deliveries to the receivers are timed (10: 5 events to each of alice's connections).
  EXPECT_EQ(st.latency_count, 10u);
  EXPECT_EQ(st.latency_buckets.back(), 10u);  // all within 2.5 s
  EXPECT_GT(st.latency_sum_seconds, 0.0);

  uint64_t first = a1.got[0]["seq"];
  recorder r1, r2, r3;
  on_hub([&] { hub().attach(link("alice", r1), first + 3); });  // the 5th: a replay
  on_hub([&] { hub().attach(link("alice", r2), first + 4); });  // nothing missed: neither
  on_hub([&] { hub().attach(link("alice", r3), first); });      // the 2nd is gone: a reset
  st = stats();
  EXPECT_EQ(st.replays, 1u);
  EXPECT_EQ(st.resets, 1u);
  EXPECT_EQ(st.latency_count, 10u);  // replays are not live deliveries

  on_hub([&] {
    hub().detach(l1);
    hub().detach(lb);
  });
  st = stats();
  EXPECT_EQ(st.online_users, 1u);  // alice has connections left; bob none
  EXPECT_EQ(st.inboxes, 2u);       // bob's lingers
}
