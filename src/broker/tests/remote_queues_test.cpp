// Queues of other nodes of a cluster as the vhost routes to them (vhost_remote.cpp) and the
// forward header between nodes (forward.hpp): one send per node with that node's queues, answers
// counted, and the receiving side enqueueing into exactly the named queues.
#include <gtest/gtest.h>

#include "broker/forward.hpp"
#include "broker/tests/test_message.hpp"
#include "broker/vhost.hpp"

namespace warren::broker {
namespace {

using testing::msg;

size_t count(vhost& v, const std::string& q) {
  queue_declare_request r;
  r.name = q;
  r.passive = true;
  return std::get<queue_declare_ok>(v.declare_queue(r)).message_count;
}

void declare(vhost& v, const std::string& q) {
  queue_declare_request r;
  r.name = q;
  ASSERT_TRUE(std::holds_alternative<queue_declare_ok>(v.declare_queue(r)));
}

TEST(ForwardHeader, RoundTripKeepsTheOtherHeaders) {
  message_properties p;
  p.headers = common::field_table{};
  p.headers->set("x-app", "v");
  forward_target t{"fan", "k.1", {"q1", "q/2"}};
  p.headers = forward_headers(p, t);
  auto got = take_forward_header(p);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->exchange, "fan");
  EXPECT_EQ(got->routing_key, "k.1");
  EXPECT_EQ(got->queues, (std::vector<std::string>{"q1", "q/2"}));
  ASSERT_TRUE(p.headers);
  EXPECT_EQ(p.headers->entries.size(), 1u);
  EXPECT_TRUE(p.headers->find("x-app"));
}

TEST(ForwardHeader, HeadersGoWhenOnlyTheForwardOneWasThere) {
  message_properties p;
  p.headers = forward_headers(p, forward_target{"", "q", {"q"}});
  ASSERT_TRUE(take_forward_header(p));
  EXPECT_FALSE(p.headers.has_value());
}

TEST(ForwardHeader, MalformedIsRefused) {
  message_properties none;
  EXPECT_FALSE(take_forward_header(none));
  message_properties p;
  p.headers = common::field_table{};
  p.headers->set(std::string(forward_header), "not a table");
  EXPECT_FALSE(take_forward_header(p));
  message_properties q;
  common::field_table f;
  f.set("e", "x");
  f.set("k", "");
  f.set("q", common::field_array{std::vector<common::field_value>{int32_t(1)}});
  q.headers = common::field_table{};
  q.headers->set(std::string(forward_header), f);
  EXPECT_FALSE(take_forward_header(q));
}

struct sent {
  std::string node;
  std::string exchange, key, body;
  std::vector<std::string> queues;
  bool answered = false;
};

TEST(RemoteQueues, OneSendPerNodeWithItsQueuesAndCountedAnswers) {
  vhost v("/", 0);
  declare(v, "here");
  v.add_remote_queue("a1", "a");
  v.add_remote_queue("a2", "a");
  v.add_remote_queue("c1", "c");
  std::vector<sent> out;
  v.set_remote_sender([&](const std::string& node, const message& m, std::vector<std::string> qs,
                          const shard_answer* answer) {
    out.push_back({node, m.exchange, m.routing_key, m.body, std::move(qs), answer != nullptr});
  });
  ASSERT_FALSE(v.declare_exchange({"fan", "fanout", false, false, false, {}}, false));
  for (const char* q : {"here", "a1", "a2", "c1"}) {
    auto id = v.remote_queue_id(q);
    dest_id d = id ? *id : std::get<dest_id>(v.queue_dest(q, 0));
    ASSERT_FALSE(v.bind("fan", d, "", {}));
  }
  shard_answer answer = [](uint64_t, bool) {};
  uint32_t remote = 0;
  uint64_t ticket = 0;
  auto r = v.publish(msg("fan", "k", "m1"), 0, &ticket, &answer, &remote);
  ASSERT_EQ(std::get<publish_outcome>(r), publish_outcome::routed);
  EXPECT_EQ(remote, 2u);  // a and c answer
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].node, "a");
  EXPECT_EQ(out[0].queues, (std::vector<std::string>{"a1", "a2"}));
  EXPECT_EQ(out[1].node, "c");
  EXPECT_EQ(out[1].queues, (std::vector<std::string>{"c1"}));
  EXPECT_TRUE(out[0].answered);
  EXPECT_EQ(out[0].exchange, "fan");
  EXPECT_EQ(count(v, "here"), 1u);
  // The default exchange routes to another node's queue by its name; with only remote targets a
  // publish counts as routed (mandatory: no return).
  out.clear();
  r = v.publish(msg("", "a2", "m2"));
  EXPECT_EQ(std::get<publish_outcome>(r), publish_outcome::routed);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].queues, (std::vector<std::string>{"a2"}));
  EXPECT_FALSE(out[0].answered);
  // Gone: with its bindings; the name is unroutable again.
  v.remove_remote_queue("a2");
  out.clear();
  EXPECT_EQ(std::get<publish_outcome>(v.publish(msg("", "a2", "m3"))), publish_outcome::unroutable);
  v.publish(msg("fan", "", "m4"));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].queues, (std::vector<std::string>{"a1"}));
}

TEST(RemoteQueues, ALocalQueueKeepsItsName) {
  vhost v("/", 0);
  declare(v, "q");
  v.add_remote_queue("q", "a");
  EXPECT_FALSE(v.remote_queue_id("q"));
}

TEST(RemoteQueues, AForwardedPublishGoesIntoExactlyTheNamedQueues) {
  vhost v("/", 0);
  declare(v, "q1");
  declare(v, "q2");
  declare(v, "q3");
  auto m = std::make_shared<message>();
  m->exchange = std::string(forward_exchange);
  m->body = "x";
  m->amqp_properties = "stale";
  m->properties.headers = forward_headers(m->properties, forward_target{"fan", "rk", {"q1", "q3"}});
  auto r = v.publish(m);
  m.reset();
  ASSERT_EQ(std::get<publish_outcome>(r), publish_outcome::routed);
  EXPECT_EQ(count(v, "q1"), 1u);
  EXPECT_EQ(count(v, "q2"), 0u);
  EXPECT_EQ(count(v, "q3"), 1u);
  // Named queues that are all gone: rejected (the other node nacks, never confirms it).
  auto gone = std::make_shared<message>();
  gone->exchange = std::string(forward_exchange);
  gone->properties.headers = forward_headers(gone->properties, forward_target{"", "", {"nope"}});
  EXPECT_EQ(std::get<publish_outcome>(v.publish(gone)), publish_outcome::rejected);
  // Without the header: refused.
  EXPECT_TRUE(std::holds_alternative<error>(v.publish(msg(std::string(forward_exchange), "", ""))));
}

TEST(RemoteQueues, LeaderLocatorTakesRabbitMQsTwoValues) {
  for (const char* ok : {"client-local", "balanced"}) {
    common::field_table args;
    args.set("x-queue-leader-locator", std::string(ok));
    queue_policy p;
    EXPECT_FALSE(parse_queue_arguments(args, p)) << ok;
  }
  for (const char* bad : {"random", "min-masters", ""}) {
    common::field_table args;
    args.set("x-queue-leader-locator", std::string(bad));
    queue_policy p;
    auto e = parse_queue_arguments(args, p);
    ASSERT_TRUE(e) << bad;
    EXPECT_EQ(e->code, error_code::precondition_failed);
    EXPECT_EQ(e->text,
              "invalid arg 'x-queue-leader-locator' for queue: expected client-local or balanced");
  }
  common::field_table args;
  args.set("x-queue-leader-locator", int64_t(1));
  queue_policy p;
  EXPECT_TRUE(parse_queue_arguments(args, p));
}

}  // namespace
}  // namespace warren::broker
