// The web gateway's hand-over between nodes through the vhost (vhost_remote.cpp): a sink that
// hands the message being published to another node (send_to_node) is counted among the
// publish's answers, and a forward naming no queue reaches the named sink exchange's sink only.
#include <gtest/gtest.h>

#include "broker/forward.hpp"
#include "broker/vhost.hpp"

namespace warren::broker {
namespace {

void declare_sink(vhost& v, const std::string& name) {
  exchange_settings s;
  s.name = name;
  s.type = "x-warren-inbox";
  ASSERT_FALSE(v.declare_builtin_exchange(s));
}

message_ptr forward_to(std::string exchange, std::string key) {
  message m;
  m.exchange = forward_exchange;
  m.body = "x";
  m.properties.headers =
      forward_headers(m.properties, forward_target{std::move(exchange), std::move(key), {}});
  return std::make_shared<message>(std::move(m));
}

TEST(SinkForward, NamingNoQueueReachesTheSinkOnly) {
  vhost v("/", 0);
  declare_sink(v, "warren.users");
  queue_declare_request q;
  q.name = "bound";
  ASSERT_TRUE(std::holds_alternative<queue_declare_ok>(v.declare_queue(q)));
  auto id = std::get<dest_id>(v.queue_dest("bound", 0));
  ASSERT_FALSE(v.bind("warren.users", id, "bob", {}));
  std::vector<std::pair<std::string, std::string>> seen;
  bool take = true;
  ASSERT_TRUE(v.attach_sink("warren.users", [&](const message& m) {
    seen.emplace_back(m.exchange, m.routing_key);
    return take;
  }));
  EXPECT_EQ(std::get<publish_outcome>(v.publish(forward_to("warren.users", "bob"))),
            publish_outcome::routed);
  ASSERT_EQ(seen.size(), 1u);  // as published, the forward header gone
  EXPECT_EQ(seen[0].first, "warren.users");
  EXPECT_EQ(seen[0].second, "bob");
  // The queue bound to the exchange got nothing: the sending node routed to it already.
  queue_declare_request p;
  p.name = "bound";
  p.passive = true;
  EXPECT_EQ(std::get<queue_declare_ok>(v.declare_queue(p)).message_count, 0u);
  take = false;
  EXPECT_EQ(std::get<publish_outcome>(v.publish(forward_to("warren.users", "bob"))),
            publish_outcome::unroutable);
  // Not a sink exchange, or none: the other node must not confirm it.
  EXPECT_EQ(std::get<publish_outcome>(v.publish(forward_to("amq.direct", "bob"))),
            publish_outcome::rejected);
  EXPECT_EQ(std::get<publish_outcome>(v.publish(forward_to("nowhere", "bob"))),
            publish_outcome::rejected);
}

TEST(SinkForward, AHandOverDuringAPublishIsCountedAmongItsAnswers) {
  vhost v("/", 0);
  declare_sink(v, "warren.users");
  struct sent {
    std::string node;
    size_t queues;
    bool with_answer;
  };
  std::vector<sent> out;
  v.set_remote_sender([&](const std::string& node, const message&, std::vector<std::string> qs,
                          const shard_answer* a) {
    out.push_back({node, qs.size(), a != nullptr});
  });
  ASSERT_TRUE(v.attach_sink("warren.users", [&](const message& m) {
    v.send_to_node("a", m);
    return true;
  }));
  shard_answer answer = [](uint64_t, bool) {};
  uint32_t remote = 0;
  auto m = std::make_shared<message>();
  m->exchange = "warren.users";
  m->routing_key = "bob";
  EXPECT_EQ(std::get<publish_outcome>(v.publish(m, 0, nullptr, &answer, &remote)),
            publish_outcome::routed);
  EXPECT_EQ(remote, 1u);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].node, "a");
  EXPECT_EQ(out[0].queues, 0u);
  EXPECT_TRUE(out[0].with_answer);
  // Outside a publish (the hub's own messages): nothing to answer.
  v.send_to_node("b", *m);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_FALSE(out[1].with_answer);
}

TEST(SinkForward, NoLinkMeansNotStored) {
  vhost v("/", 0);
  declare_sink(v, "warren.users");
  ASSERT_TRUE(v.attach_sink("warren.users", [&](const message& m) {
    v.send_to_node("a", m);
    return true;
  }));
  bool rejected = false;
  shard_answer answer = [&](uint64_t, bool r) { rejected = r; };
  uint32_t remote = 0;
  auto m = std::make_shared<message>();
  m->exchange = "warren.users";
  m->routing_key = "bob";
  v.publish(m, 0, nullptr, &answer, &remote);
  EXPECT_EQ(remote, 1u);
  EXPECT_TRUE(rejected);
}

TEST(SinkForward, AHandOverWhileTakingAForwardIsCountedAmongItsAnswers) {
  // A room's node takes a message another node forwarded and hands it on to a member's owner:
  // the forward's answer waits for that owner too.
  vhost v("/", 0);
  declare_sink(v, "warren.rooms");
  std::vector<bool> with_answer;
  v.set_remote_sender([&](const std::string&, const message&, std::vector<std::string>,
                          const shard_answer* a) { with_answer.push_back(a != nullptr); });
  ASSERT_TRUE(v.attach_sink("warren.rooms", [&](const message& m) {
    v.send_to_node("c", m);
    return true;
  }));
  shard_answer answer = [](uint64_t, bool) {};
  uint32_t remote = 0;
  EXPECT_EQ(std::get<publish_outcome>(
                v.publish(forward_to("warren.rooms", "lobby"), 0, nullptr, &answer, &remote)),
            publish_outcome::routed);
  EXPECT_EQ(remote, 1u);
  ASSERT_EQ(with_answer.size(), 1u);
  EXPECT_TRUE(with_answer[0]);
}

TEST(SinkForward, ASinkKeepingAMessageBackDefersTheAnswer) {
  vhost v("/", 0);
  declare_sink(v, "warren.users");
  shard_answer kept;
  ASSERT_TRUE(v.attach_sink("warren.users", [&](const message&) {
    kept = v.defer_answer();
    return true;
  }));
  std::vector<std::pair<uint64_t, bool>> answers;
  shard_answer answer = [&](uint64_t t, bool r) { answers.emplace_back(t, r); };
  uint32_t remote = 0;
  v.publish(forward_to("warren.users", "bob"), 0, nullptr, &answer, &remote);
  EXPECT_EQ(remote, 1u);  // the publish waits for one more answer
  ASSERT_TRUE(kept);
  EXPECT_TRUE(answers.empty());
  kept(42, false);  // the sink stored it later
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0], std::make_pair(uint64_t(42), false));
  // Without an answer (no confirm asked): nothing to defer.
  kept = nullptr;
  v.publish(forward_to("warren.users", "bob"));
  EXPECT_FALSE(kept);
}

}  // namespace
}  // namespace warren::broker
