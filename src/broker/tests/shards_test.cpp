// A vhost's queues spread over shards (docs/architecture.md, "Spreading queues over workers"),
// driven on one thread: each shard's posted work waits in a queue of its own until the test runs
// it, so every hand-over between the authority and a shard is visible and in order.
#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "broker/tests/test_message.hpp"
#include "broker/vhost.hpp"

namespace warren::broker {
namespace {

struct recorder : delivery_target {
  struct delivery {
    std::string consumer;
    uint64_t tag;
    std::string body;
  };
  std::vector<delivery> got;
  std::vector<std::string> cancels;
  void deliver(const std::string& c, uint64_t tag, bool, const message_ptr& m) override {
    got.push_back({c, tag, m->body});
  }
  void cancelled(const std::string& c) override { cancels.push_back(c); }
};

using testing::msg;

class ShardsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    v.enable_shards(2, vhost::placement::hash, [this](size_t s, std::function<void()> fn) {
      posted[s].push_back(std::move(fn));
    });
    v.start_shards();
    // Names that the hash puts on each shard.
    for (int i = 0; (home_name.empty() || away_name.empty()) && i < 100; ++i) {
      std::string n = "probe-" + std::to_string(i);
      declare(n);
      (v.locate_queue(n) == 0 ? home_name : away_name) = n;
      (void)v.delete_queue(n, false, false, 0);
      run();
    }
    ASSERT_FALSE(home_name.empty());
    ASSERT_FALSE(away_name.empty());
  }

  // Runs what was posted, shard by shard, until nothing is left.
  void run() {
    for (bool more = true; more;) {
      more = false;
      for (auto& q : posted)
        while (!q.empty()) {
          auto fn = std::move(q.front());
          q.pop_front();
          fn();
          more = true;
        }
    }
  }

  void declare(const std::string& name, common::field_table args = {}, bool exclusive = false,
               uint64_t conn = 0) {
    queue_declare_request r;
    r.name = name;
    r.arguments = std::move(args);
    r.exclusive = exclusive;
    r.connection_id = conn;
    ASSERT_TRUE(std::holds_alternative<queue_declare_ok>(v.declare_queue(r)));
    run();
  }

  // A channel as the AMQP layer opens it: a record on every shard, one shared count.
  void open(uint64_t cid, std::shared_ptr<recorder> t, uint64_t conn = 1) {
    auto unacked = std::make_shared<std::atomic<int64_t>>(0);
    for (size_t s = 0; s < 2; ++s) v.shard_at(s).open_channel(cid, conn, t, unacked);
  }

  vhost v{"/", 0};
  std::deque<std::function<void()>> posted[2];
  std::string home_name, away_name;
};

TEST_F(ShardsTest, AQueueLivesOnItsShardAndTheAuthorityKeepsItsDeclaration) {
  declare(away_name);
  EXPECT_EQ(v.locate_queue(away_name), 1u);
  EXPECT_EQ(v.located_shard(away_name), 1u);
  EXPECT_NE(v.shard_at(1).inspect_queue(away_name), nullptr);
  EXPECT_NE(v.inspect_queue(away_name), nullptr);  // the twin
  EXPECT_EQ(v.shard_at(1).queue_count(), 1u);
  // Listed once: by its shard, not by the authority's twin.
  EXPECT_TRUE(v.view_queues().empty());
  ASSERT_EQ(v.shard_at(1).view_queues().size(), 1u);
  // Counted once over the shards.
  vhost_totals t = v.totals();
  t.add(v.shard_at(1).totals());
  EXPECT_EQ(t.queues, 1u);
}

TEST_F(ShardsTest, APublishIsHandedToTheQueuesShardWhichAnswers) {
  declare(away_name);
  declare(home_name);
  ASSERT_FALSE(v.bind("amq.fanout", *v.routing().queue_id(away_name), "", {}));
  ASSERT_FALSE(v.bind("amq.fanout", *v.routing().queue_id(home_name), "", {}));
  int answers = 0;
  shard_answer answer = [&](uint64_t, bool rejected) {
    ++answers;
    EXPECT_FALSE(rejected);
  };
  uint32_t remote = 0;
  auto r = v.publish(msg("amq.fanout", "", "both"), 0, nullptr, &answer, &remote);
  ASSERT_EQ(std::get<publish_outcome>(r), publish_outcome::routed);
  EXPECT_EQ(remote, 1u);  // one shard besides the authority's
  EXPECT_EQ(v.inspect_queue(home_name)->message_count(), 1u);
  EXPECT_EQ(v.shard_at(1).inspect_queue(away_name)->message_count(), 0u);  // not yet run there
  EXPECT_EQ(answers, 0);
  run();
  EXPECT_EQ(v.shard_at(1).inspect_queue(away_name)->message_count(), 1u);
  EXPECT_EQ(answers, 1);
  EXPECT_EQ(v.inspect_queue(away_name)->message_count(), 0u);  // the twin holds nothing
}

TEST_F(ShardsTest, HandOversOfOneHandlerGoToTheirShardAsOneMessageInOrder) {
  // With a deferrer, as the broker runs (net::worker::defer): what one handler hands over waits
  // for the handler's end, then goes as one post per destination shard.
  std::vector<std::function<void()>> deferred;
  v.enable_shards(
      2, vhost::placement::hash,
      [this](size_t s, std::function<void()> fn) { posted[s].push_back(std::move(fn)); },
      [&deferred](size_t s, std::function<void()> fn) {
        EXPECT_EQ(s, 0u);  // the authority's worker, where these publishes are routed
        deferred.push_back(std::move(fn));
      });
  declare(away_name);
  auto t = std::make_shared<recorder>();
  open(7, t);
  ASSERT_FALSE(v.shard_at(1).consume(7, away_name, "c", true, false, 0, 1));
  run();
  int answers = 0;
  shard_answer answer = [&](uint64_t, bool) { ++answers; };
  for (int i = 0; i < 5; ++i) {
    uint32_t remote = 0;
    (void)v.publish(msg("", away_name, std::to_string(i)), 0, nullptr, &answer, &remote);
    EXPECT_EQ(remote, 1u);
  }
  EXPECT_TRUE(posted[1].empty());  // held until the handler returns
  ASSERT_EQ(deferred.size(), 1u);  // armed once
  deferred.front()();
  EXPECT_EQ(posted[1].size(), 1u);  // one message for the five
  run();
  EXPECT_EQ(answers, 5);
  ASSERT_EQ(t->got.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(t->got[i].body, std::to_string(i));
  // The next handler's hand-overs arm it again.
  (void)v.publish(msg("", away_name, "5"), 0, nullptr, &answer, nullptr);
  ASSERT_EQ(deferred.size(), 2u);
  deferred.back()();
  run();
  ASSERT_EQ(t->got.size(), 6u);
  EXPECT_EQ(answers, 6);
}

TEST_F(ShardsTest, DeliveryTagsCarryTheirShardAndAcksGoThere) {
  declare(away_name);
  auto t = std::make_shared<recorder>();
  open(7, t);
  vhost& sh = v.shard_at(1);
  ASSERT_FALSE(sh.consume(7, away_name, "c", false, false, 0, 1));
  (void)v.publish(msg("", away_name, "m1"), 0);
  (void)v.publish(msg("", away_name, "m2"), 0);
  run();
  ASSERT_EQ(t->got.size(), 2u);
  EXPECT_EQ(v.tag_shard(t->got[0].tag), 1u);
  EXPECT_EQ(t->got[1].tag, t->got[0].tag + 1);
  // The authority has no such delivery; the shard has both.
  EXPECT_TRUE(v.ack(7, t->got[1].tag, false).has_value());
  EXPECT_FALSE(sh.ack(7, t->got[1].tag, true));
  EXPECT_EQ(sh.inspect_queue(away_name)->unacked, 0u);
  // Nothing outstanding up to a tag: an error when strict, nothing when not.
  EXPECT_TRUE(sh.ack(7, t->got[1].tag, true).has_value());
  EXPECT_FALSE(sh.ack(7, t->got[1].tag, true, false));
}

TEST_F(ShardsTest, AQueueDeletedOnItsShardIsForgottenByTheAuthority) {
  declare(away_name);
  auto r = v.shard_at(1).delete_queue(away_name, false, false, 0);
  ASSERT_TRUE(std::holds_alternative<uint32_t>(r));
  EXPECT_NE(v.inspect_queue(away_name), nullptr);  // until the authority runs what was posted
  run();
  EXPECT_EQ(v.inspect_queue(away_name), nullptr);
  EXPECT_EQ(v.locate_queue(away_name), 0u);
  EXPECT_EQ(v.located_shard(away_name), SIZE_MAX);
  // The name is free again, and may be placed on the same shard.
  declare(away_name);
  EXPECT_EQ(v.locate_queue(away_name), 1u);
}

TEST_F(ShardsTest, ExclusiveQueuesGoWithTheirConnectionOnEveryShard) {
  declare(away_name, {}, true, 42);
  declare(home_name, {}, true, 42);
  v.close_connection(42);
  run();
  EXPECT_EQ(v.inspect_queue(away_name), nullptr);
  EXPECT_EQ(v.inspect_queue(home_name), nullptr);
  EXPECT_EQ(v.shard_at(1).queue_count(), 0u);
}

TEST_F(ShardsTest, ADeadLetterFromAShardIsRoutedByTheAuthority) {
  declare(home_name);
  common::field_table args;
  args.set("x-dead-letter-exchange", std::string(""));
  args.set("x-dead-letter-routing-key", home_name);
  declare(away_name, args);
  auto t = std::make_shared<recorder>();
  open(8, t);
  vhost& sh = v.shard_at(1);
  (void)v.publish(msg("", away_name, "dead"), 0);
  run();
  auto got = sh.get(8, away_name, false, 1);
  ASSERT_TRUE(std::holds_alternative<get_ok>(got));
  ASSERT_FALSE(sh.reject(8, std::get<get_ok>(got).delivery_tag, false, false));
  EXPECT_EQ(v.inspect_queue(home_name)->message_count(), 0u);
  run();
  ASSERT_EQ(v.inspect_queue(home_name)->message_count(), 1u);
}

TEST_F(ShardsTest, AGlobalPrefetchLimitsTheChannelOverEveryShard) {
  declare(home_name);
  declare(away_name);
  for (int i = 0; i < 5; ++i) {
    (void)v.publish(msg("", home_name, "h"), 0);
    (void)v.publish(msg("", away_name, "a"), 0);
  }
  run();
  auto t = std::make_shared<recorder>();
  open(9, t);
  v.set_global_prefetch(9, 3);
  v.shard_at(1).set_global_prefetch(9, 3);
  ASSERT_FALSE(v.consume(9, home_name, "h", false, false, 0, 1));
  ASSERT_FALSE(v.shard_at(1).consume(9, away_name, "a", false, false, 0, 1));
  v.dispatch_queue(home_name);
  v.shard_at(1).dispatch_queue(away_name);
  run();
  ASSERT_EQ(t->got.size(), 3u);  // not 3 per shard
  // An ack where the channel was full lets any shard deliver one more.
  const auto& first = t->got[0];
  vhost& owner = v.shard_at(v.tag_shard(first.tag));
  ASSERT_FALSE(owner.ack(9, first.tag, false));
  run();
  EXPECT_EQ(t->got.size(), 4u);
}

// --- routing on a worker's copy (broker/routing_copy.cpp) ---

// A publish on shard 1's worker, routed on its copy: nullopt when the copy declines it.
std::optional<std::variant<publish_outcome, error>> publish_on_copy(vhost& v, message_ptr m,
                                                                    uint32_t* remote = nullptr) {
  uint32_t n = 0;
  return v.shard_at(1).publish_here(m, 0, nullptr, nullptr, remote ? remote : &n);
}

exchange_settings xs(std::string name, std::string type, common::field_table args = {}) {
  exchange_settings s;
  s.name = std::move(name);
  s.type = std::move(type);
  s.arguments = std::move(args);
  return s;
}

TEST_F(ShardsTest, ABindingReachesTheCopyBeforeItRoutesAgain) {
  declare(away_name);
  declare(home_name);
  ASSERT_FALSE(v.bind("amq.direct", *v.routing().queue_id(away_name), "k", {}));
  ASSERT_FALSE(v.bind("amq.direct", *v.routing().queue_id(home_name), "k", {}));
  // The change is posted, not applied yet: the copy is behind and declines (the authority routes).
  EXPECT_FALSE(v.shard_at(1).copy_current());
  EXPECT_FALSE(publish_on_copy(v, msg("amq.direct", "k", "early")).has_value());
  run();
  ASSERT_TRUE(v.shard_at(1).copy_current());
  uint32_t remote = 0;
  auto r = publish_on_copy(v, msg("amq.direct", "k", "m"), &remote);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(std::get<publish_outcome>(*r), publish_outcome::routed);
  EXPECT_EQ(v.shard_at(1).inspect_queue(away_name)->message_count(), 1u);  // here, inline
  EXPECT_EQ(v.inspect_queue(home_name)->message_count(), 0u);  // handed over, not yet run
  run();
  EXPECT_EQ(v.inspect_queue(home_name)->message_count(), 1u);
  // Counted in the copy's slot, read through the authority's exchange.
  EXPECT_EQ(v.inspect_exchange("amq.direct")->counts().publish_in, 1u);
  EXPECT_EQ(v.inspect_exchange("amq.direct")->counts().publish_out, 1u);
}

TEST_F(ShardsTest, AfterAnUnbindTheCopyFindsNoRoute) {
  declare(home_name);
  dest_id q = *v.routing().queue_id(home_name);
  ASSERT_FALSE(v.bind("amq.direct", q, "k", {}));
  run();
  ASSERT_FALSE(v.unbind("amq.direct", q, "k", {}));
  EXPECT_FALSE(publish_on_copy(v, msg("amq.direct", "k", "behind")).has_value());
  run();
  auto r = publish_on_copy(v, msg("amq.direct", "k", "after"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(std::get<publish_outcome>(*r), publish_outcome::unroutable);
  run();
  EXPECT_EQ(v.inspect_queue(home_name)->message_count(), 0u);
}

TEST_F(ShardsTest, ExchangeToExchangeAndAlternateExchangeOnTheCopy) {
  declare(home_name);
  declare(away_name);
  common::field_table ae;
  ae.set("alternate-exchange", std::string("ae"));
  ASSERT_FALSE(v.declare_exchange(xs("ae", "fanout"), false));
  ASSERT_FALSE(v.declare_exchange(xs("inner", "direct", ae), false));
  ASSERT_FALSE(v.declare_exchange(xs("outer", "topic"), false));
  ASSERT_FALSE(v.bind("ae", *v.routing().queue_id(home_name), "", {}));
  ASSERT_FALSE(v.bind("inner", *v.routing().queue_id(away_name), "hit", {}));
  ASSERT_FALSE(v.bind("outer", std::get<dest_id>(v.exchange_dest("inner")), "#", {}));
  run();
  auto hit = publish_on_copy(v, msg("outer", "hit", "to-away"));
  auto miss = publish_on_copy(v, msg("outer", "other", "to-home"));
  ASSERT_TRUE(hit && miss);
  EXPECT_EQ(std::get<publish_outcome>(*hit), publish_outcome::routed);
  EXPECT_EQ(std::get<publish_outcome>(*miss), publish_outcome::routed);
  run();
  EXPECT_EQ(v.shard_at(1).inspect_queue(away_name)->message_count(), 1u);
  EXPECT_EQ(v.inspect_queue(home_name)->message_count(), 1u);
}

TEST_F(ShardsTest, ExchangesWithStateAreLeftToTheAuthority) {
  declare(away_name);
  common::field_table dedup;
  dedup.set("x-message-deduplication", true);
  ASSERT_FALSE(v.declare_exchange(xs("history", "x-recent-history"), false));
  ASSERT_FALSE(v.declare_exchange(xs("dedup", "direct", dedup), false));
  ASSERT_FALSE(v.declare_exchange(xs("front", "fanout"), false));
  ASSERT_FALSE(v.bind("history", *v.routing().queue_id(away_name), "", {}));
  ASSERT_FALSE(v.bind("front", std::get<dest_id>(v.exchange_dest("history")), "", {}));
  run();
  EXPECT_FALSE(publish_on_copy(v, msg("history", "", "h")).has_value());
  EXPECT_FALSE(publish_on_copy(v, msg("dedup", "", "d")).has_value());
  // Reached through an exchange-to-exchange binding as well.
  EXPECT_FALSE(publish_on_copy(v, msg("front", "", "f")).has_value());
  EXPECT_EQ(v.shard_at(1).inspect_queue(away_name)->message_count(), 0u);
}

TEST_F(ShardsTest, ADeletedExchangeIsLeftToTheAuthorityWhichRefusesIt) {
  ASSERT_FALSE(v.declare_exchange(xs("gone", "direct"), false));
  run();
  auto r = publish_on_copy(v, msg("gone", "k", "m"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(std::get<publish_outcome>(*r), publish_outcome::unroutable);
  ASSERT_FALSE(v.delete_exchange("gone", false));
  EXPECT_FALSE(publish_on_copy(v, msg("gone", "k", "behind")).has_value());
  run();
  EXPECT_FALSE(publish_on_copy(v, msg("gone", "k", "after")).has_value());
  EXPECT_TRUE(std::holds_alternative<error>(v.publish(msg("gone", "k", "m"))));
}

TEST_F(ShardsTest, AQueueDeclaredIsOnItsShardBeforeTheCopyRoutesToIt) {
  declare(away_name);
  // The default exchange from shard 1's copy: to the queue here, and to one on the home.
  ASSERT_TRUE(publish_on_copy(v, msg("", away_name, "a")).has_value());
  EXPECT_EQ(v.shard_at(1).inspect_queue(away_name)->message_count(), 1u);
  queue_declare_request r;
  r.name = home_name;
  ASSERT_TRUE(std::holds_alternative<queue_declare_ok>(v.declare_queue(r)));
  EXPECT_FALSE(publish_on_copy(v, msg("", home_name, "behind")).has_value());
  run();
  auto to_home = publish_on_copy(v, msg("", home_name, "h"));
  ASSERT_TRUE(to_home.has_value());
  EXPECT_EQ(std::get<publish_outcome>(*to_home), publish_outcome::routed);
  run();
  EXPECT_EQ(v.inspect_queue(home_name)->message_count(), 1u);
}

}  // namespace
}  // namespace warren::broker
