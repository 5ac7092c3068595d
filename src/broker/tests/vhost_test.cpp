// The vhost without sockets: routing through exchanges (and exchange-to-exchange bindings,
// alternate exchanges), dispatch with prefetch and priorities, requeue order, dead-lettering.
#include <gtest/gtest.h>

#include "broker/tests/test_message.hpp"
#include "broker/vhost.hpp"

namespace warren::broker {
namespace {

struct recorded {
  std::string tag;
  uint64_t delivery_tag;
  bool redelivered;
  std::string body;
};

class recorder : public delivery_target {
 public:
  void deliver(const std::string& tag, uint64_t dt, bool redelivered,
               const message_ptr& m) override {
    got.push_back({tag, dt, redelivered, m->body});
  }
  void cancelled(const std::string& tag) override { cancels.push_back(tag); }
  void throttle(bool on) override { throttled = on; }
  std::vector<recorded> got;
  std::vector<std::string> cancels;
  bool throttled = false;
};

using testing::msg;

class VhostTest : public ::testing::Test {
 protected:
  void SetUp() override { v.open_channel(1, 100, target); }
  void declare(const std::string& q, common::field_table args = {}) {
    queue_declare_request r;
    r.name = q;
    r.arguments = std::move(args);
    r.connection_id = 100;
    ASSERT_TRUE(std::holds_alternative<queue_declare_ok>(v.declare_queue(r)));
  }
  void bind(const std::string& q, const std::string& x, const std::string& key) {
    auto d = v.queue_dest(q, 100);
    ASSERT_FALSE(v.bind(x, std::get<dest_id>(d), key, {}));
  }
  size_t count(const std::string& q) {
    queue_declare_request r;
    r.name = q;
    r.passive = true;
    r.connection_id = 100;
    return std::get<queue_declare_ok>(v.declare_queue(r)).message_count;
  }
  publish_outcome publish(message_ptr m) { return std::get<publish_outcome>(v.publish(m)); }

  vhost v{"/", 0};
  std::shared_ptr<recorder> target = std::make_shared<recorder>();
};

TEST_F(VhostTest, DefaultExchangeRoutesByQueueName) {
  declare("a");
  EXPECT_EQ(publish(msg("", "a", "1")), publish_outcome::routed);
  EXPECT_EQ(publish(msg("", "b", "2")), publish_outcome::unroutable);
  EXPECT_EQ(count("a"), 1u);
  auto e = v.publish(msg("missing", "a", "3"));
  ASSERT_TRUE(std::holds_alternative<error>(e));
  EXPECT_EQ(std::get<error>(e).code, error_code::not_found);
}

TEST_F(VhostTest, NamesThatAreNotUtf8AreRefusedAtCreation) {
  queue_declare_request r;
  r.name = "orders-\xff";
  r.connection_id = 100;
  auto q = v.declare_queue(r);
  ASSERT_TRUE(std::holds_alternative<error>(q));
  EXPECT_EQ(std::get<error>(q).code, error_code::precondition_failed);
  EXPECT_EQ(std::get<error>(q).text, "queue name is not valid UTF-8");
  r.name = "\xe2\x82";  // cut inside a character
  EXPECT_TRUE(std::holds_alternative<error>(v.declare_queue(r)));
  auto x = v.declare_exchange({"events-\xc0\xaf", "fanout"}, false);
  ASSERT_TRUE(x);
  EXPECT_EQ(x->code, error_code::precondition_failed);
  EXPECT_EQ(x->text, "exchange name is not valid UTF-8");
  // Any well-formed UTF-8 is a name, as in RabbitMQ.
  declare("commandes-\xc3\xa9t\xc3\xa9-\xe2\x82\xac");
  EXPECT_FALSE(v.declare_exchange({"\xe4\xba\x8b\xe4\xbb\xb6", "topic"}, false));
}

TEST_F(VhostTest, ExchangeToExchangeWithCycleDeliversOnce) {
  declare("q");
  ASSERT_FALSE(v.declare_exchange({"x1", "fanout"}, false));
  ASSERT_FALSE(v.declare_exchange({"x2", "fanout"}, false));
  auto x1 = std::get<dest_id>(v.exchange_dest("x1"));
  auto x2 = std::get<dest_id>(v.exchange_dest("x2"));
  ASSERT_FALSE(v.bind("x1", x2, "", {}));
  ASSERT_FALSE(v.bind("x2", x1, "", {}));  // a cycle
  bind("q", "x2", "");
  bind("q", "x1", "");  // two paths to the same queue
  EXPECT_EQ(publish(msg("x1", "", "once")), publish_outcome::routed);
  EXPECT_EQ(count("q"), 1u);
}

TEST_F(VhostTest, AlternateExchangeTakesUnroutable) {
  declare("lost");
  ASSERT_FALSE(v.declare_exchange({"ae", "fanout"}, false));
  bind("lost", "ae", "");
  common::field_table args;
  args.set("alternate-exchange", std::string("ae"));
  ASSERT_FALSE(v.declare_exchange({"main", "direct", false, false, false, args}, false));
  EXPECT_EQ(publish(msg("main", "nobody", "x")), publish_outcome::routed);
  EXPECT_EQ(count("lost"), 1u);
}

TEST_F(VhostTest, SinkExchangeCountsAsRoutedWhenItsSinkTakesTheMessage) {
  ASSERT_FALSE(v.declare_exchange({"users", "x-warren-inbox"}, false));
  EXPECT_FALSE(v.attach_sink("amq.direct", [](const message&) { return true; }));
  EXPECT_FALSE(v.attach_sink("missing", [](const message&) { return true; }));
  // No sink yet: routes to bound queues only (here none).
  EXPECT_EQ(publish(msg("users", "alice", "0")), publish_outcome::unroutable);
  std::vector<std::string> seen;
  ASSERT_TRUE(v.attach_sink("users", [&](const message& m) {
    seen.push_back(m.routing_key + ":" + m.body);
    return m.routing_key == "alice";  // alice has an inbox, bob has not
  }));
  EXPECT_EQ(publish(msg("users", "alice", "1")), publish_outcome::routed);
  EXPECT_EQ(publish(msg("users", "bob", "2")), publish_outcome::unroutable);
  // A queue bound with the user id as key gets a copy, as from a direct exchange.
  declare("audit");
  bind("audit", "users", "bob");
  EXPECT_EQ(publish(msg("users", "bob", "3")), publish_outcome::routed);
  EXPECT_EQ(count("audit"), 1u);
  EXPECT_EQ(seen, (std::vector<std::string>{"alice:1", "bob:2", "bob:3"}));
}

TEST_F(VhostTest, PrefetchRoundRobinAndRequeueOrder) {
  declare("q");
  ASSERT_FALSE(v.consume(1, "q", "c1", false, false, 2, 100));
  ASSERT_FALSE(v.consume(1, "q", "c2", false, false, 2, 100));
  for (int i = 1; i <= 6; ++i) publish(msg("", "q", std::to_string(i)));
  ASSERT_EQ(target->got.size(), 4u);  // 2 each
  EXPECT_EQ(target->got[0].tag, "c1");
  EXPECT_EQ(target->got[1].tag, "c2");
  EXPECT_EQ(count("q"), 2u);
  // Reject everything delivered with requeue: back in original order, ahead of 5 and 6.
  v.cancel(1, "c1");
  v.cancel(1, "c2");
  ASSERT_FALSE(v.reject(1, 0, true, true));
  EXPECT_EQ(count("q"), 6u);
  std::vector<std::string> order;
  for (int i = 0; i < 6; ++i) {
    auto r = v.get(1, "q", true, 100);
    auto& ok = std::get<get_ok>(r);
    order.push_back(ok.msg->body + (ok.redelivered ? "r" : ""));
  }
  EXPECT_EQ(order, (std::vector<std::string>{"1r", "2r", "3r", "4r", "5", "6"}));
}

TEST_F(VhostTest, MultipleAckSettlesUpToTheTag) {
  declare("q");
  for (int i = 0; i < 5; ++i) publish(msg("", "q", "m"));
  std::vector<uint64_t> tags;
  for (int i = 0; i < 5; ++i)
    tags.push_back(std::get<get_ok>(v.get(1, "q", false, 100)).delivery_tag);
  ASSERT_FALSE(v.ack(1, tags[2], true));
  auto again = v.ack(1, tags[1], false);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->code, error_code::precondition_failed);
  ASSERT_FALSE(v.ack(1, tags[4], false));
  ASSERT_FALSE(v.ack(1, tags[3], false));
}

TEST_F(VhostTest, DeadLetterCountsRepeatedDeaths) {
  common::field_table args;
  args.set("x-dead-letter-exchange", std::string(""));
  args.set("x-dead-letter-routing-key", std::string("q"));
  declare("q", args);  // dead-letters to itself
  publish(msg("", "q", "m"));
  for (int round = 1; round <= 3; ++round) {
    auto ok = std::get<get_ok>(v.get(1, "q", false, 100));
    if (round > 1) {
      const auto& deaths =
          *ok.msg->properties.headers->find("x-death")->get_if<common::field_array>();
      ASSERT_EQ(deaths.items.size(), 1u);  // one entry per (queue, reason), counted
      const auto& d = *deaths.items[0].get_if<common::field_table>();
      EXPECT_EQ(*d.find("count")->get_if<int64_t>(), round - 1);
      EXPECT_EQ(common::table_string(d, "reason"), std::string_view("rejected"));
    }
    ASSERT_FALSE(v.reject(1, ok.delivery_tag, false, false));  // rejected: no cycle rule
  }
  EXPECT_EQ(count("q"), 1u);
}

TEST_F(VhostTest, DeletingAQueueCancelsItsConsumers) {
  declare("q");
  ASSERT_FALSE(v.consume(1, "q", "c", false, false, 0, 100));
  auto r = v.delete_queue("q", false, false, 100);
  ASSERT_TRUE(std::holds_alternative<uint32_t>(r));
  EXPECT_EQ(target->cancels, std::vector<std::string>{"c"});
  EXPECT_FALSE(v.has_consumer(1, "c"));
}

TEST_F(VhostTest, ClosingAChannelRequeuesAndRedelivers) {
  declare("q");
  ASSERT_FALSE(v.consume(1, "q", "c", false, false, 0, 100));
  publish(msg("", "q", "a"));
  ASSERT_EQ(target->got.size(), 1u);
  v.close_channel(1);
  auto other = std::make_shared<recorder>();
  v.open_channel(2, 101, other);
  ASSERT_FALSE(v.consume(2, "q", "d", false, false, 0, 101));
  EXPECT_TRUE(other->got.empty());  // consume-ok goes first: delivery waits for dispatch_queue
  v.dispatch_queue("q");
  ASSERT_EQ(other->got.size(), 1u);
  EXPECT_TRUE(other->got[0].redelivered);
  EXPECT_EQ(other->got[0].body, "a");
}

TEST_F(VhostTest, TransitWindowBoundsDeliveriesUntilCredited) {
  declare("q");
  ASSERT_FALSE(v.consume(1, "q", "c", true, false, 0, 100));  // no-ack: no prefetch limit
  for (uint32_t i = 0; i < vhost::transit_window + 10; ++i) publish(msg("", "q", "m"));
  EXPECT_EQ(target->got.size(), vhost::transit_window);
  EXPECT_EQ(count("q"), 10u);
  v.credit(1, 5);
  EXPECT_EQ(target->got.size(), vhost::transit_window + 5);
}

// Seed 000's flood: 1 MB messages. Deliveries in transit are bounded in bytes too (one always
// goes, however large), else a no-ack consumer held transit_window copies of 1 MB.
TEST_F(VhostTest, TransitWindowInBytesBoundsLargeDeliveries) {
  declare("q");
  ASSERT_FALSE(v.consume(1, "q", "c", true, false, 0, 100));
  const size_t size = vhost::transit_window_bytes / 4;
  for (int i = 0; i < 10; ++i) publish(msg("", "q", std::string(size, 'm')));
  EXPECT_EQ(target->got.size(), 4u);
  v.credit(1, 1, size);
  EXPECT_EQ(target->got.size(), 5u);
  v.credit(1, 5, 5 * size);
  EXPECT_EQ(target->got.size(), 9u);
  // A message above the whole window goes once nothing else is in transit.
  declare("big");
  auto other = std::make_shared<recorder>();
  v.open_channel(3, 102, other);
  ASSERT_FALSE(v.consume(3, "big", "b", true, false, 0, 102));
  publish(msg("", "big", std::string(2 * vhost::transit_window_bytes, 'B')));
  publish(msg("", "big", "small"));
  EXPECT_EQ(other->got.size(), 1u);
  v.credit(3, 1, 2 * vhost::transit_window_bytes);
  EXPECT_EQ(other->got.size(), 2u);
}

// A queue whose consumer falls behind holds its publisher back once the backlog passes
// backlog_high_bytes and the publisher is flow_slack_bytes ahead, long before backlog_high
// messages: 1 MB publishers no longer run the broker into the global memory alarm (which blocks
// every publisher, those of queues that keep up included).
TEST_F(VhostTest, ABacklogInBytesThrottlesItsPublisher) {
  declare("q");
  ASSERT_FALSE(v.consume(1, "q", "c", false, false, 1, 100));  // takes one, never acks
  auto pub = std::make_shared<recorder>();
  v.open_channel(2, 101, pub);
  const size_t size = 1 << 20;
  const uint64_t mark = (vhost::backlog_high_bytes + vhost::flow_slack_bytes) / size;
  int published = 0;
  while (!pub->throttled && published < 200) {
    ASSERT_TRUE(std::holds_alternative<publish_outcome>(
        v.publish(msg("", "q", std::string(size, 'x')), 2)));
    ++published;
  }
  EXPECT_TRUE(pub->throttled);
  EXPECT_GE(uint64_t(published), mark);
  EXPECT_LE(uint64_t(published), mark + 3);
  EXPECT_LT(uint64_t(published), vhost::backlog_high);
  ASSERT_TRUE(std::holds_alternative<uint32_t>(v.purge_queue("q", 100)));
  EXPECT_FALSE(pub->throttled);
}

TEST_F(VhostTest, TheTickExpiresARequeuedMessageAfterItsQueueLeftTheTimedList) {
  common::field_table args;
  args.set("x-message-ttl", int64_t(1000));
  declare("q", args);
  declare("plain");
  publish(msg("", "q", "m"));
  publish(msg("", "plain", "stays"));
  auto ok = std::get<get_ok>(v.get(1, "q", false, 100));
  // Nothing ready expires now: the tick drops the queue from what it looks at.
  v.tick(now_ms() + 60'000);
  EXPECT_EQ(count("q"), 0u);
  ASSERT_FALSE(v.reject(1, ok.delivery_tag, false, true));  // back, with its deadline
  EXPECT_EQ(count("q"), 1u);
  v.tick(now_ms() + 60'000);
  EXPECT_EQ(count("q"), 0u);
  EXPECT_EQ(count("plain"), 1u);
}

TEST_F(VhostTest, TheTickDeletesAnUnusedQueueWithXExpires) {
  common::field_table args;
  args.set("x-expires", int64_t(1000));
  declare("e", args);
  declare("kept");
  v.tick(now_ms());
  EXPECT_NE(v.inspect_queue("e"), nullptr);
  v.tick(now_ms() + 5'000);
  EXPECT_EQ(v.inspect_queue("e"), nullptr);
  EXPECT_NE(v.inspect_queue("kept"), nullptr);
}

}  // namespace
}  // namespace warren::broker
