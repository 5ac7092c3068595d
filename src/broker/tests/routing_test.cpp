// The routing table and its copies: a table fed the changes a vhost reports (its routing
// observer) holds the same exchanges, bindings and queue directory, and routes every message to
// the same queues, through declarations, bindings, unbindings, auto-deletes and deletions.
#include <gtest/gtest.h>

#include <algorithm>

#include "broker/routing.hpp"
#include "broker/vhost.hpp"

namespace warren::broker {
namespace {

message msg(std::string exchange, std::string key) {
  message m;
  m.exchange = std::move(exchange);
  m.routing_key = std::move(key);
  return m;
}

std::vector<dest_id> route(routing_table& t, const message& m) {
  exchange* x = t.find_exchange(m.exchange);
  if (!x) return {};
  dest_list out;
  dest_set seen;
  seen.insert(x->id());
  t.route(*x, m, 0, out, seen);
  std::vector<dest_id> v(out.begin(), out.end());
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

std::vector<std::string> exchange_names(const routing_table& t) {
  std::vector<std::string> out;
  for (const auto& [n, x] : t.exchanges()) out.push_back(n);
  return out;
}

class RoutingReplicaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    v.set_routing_observer([this](const routing_change& c) {
      ++changes;
      replica.apply(c);
    });
  }
  dest_id declare(const std::string& q) {
    queue_declare_request r;
    r.name = q;
    r.connection_id = 1;
    EXPECT_TRUE(std::holds_alternative<queue_declare_ok>(v.declare_queue(r)));
    return std::get<dest_id>(v.queue_dest(q, 1));
  }
  // The replica equals the owner's table, and both route `probes` alike.
  void expect_same(const std::vector<message>& probes) {
    EXPECT_EQ(exchange_names(replica), exchange_names(v.routing()));
    EXPECT_EQ(replica.bindings(), v.routing().bindings());
    EXPECT_EQ(replica.queue_count(), v.routing().queue_count());
    auto& owner = const_cast<routing_table&>(v.routing());
    for (const auto& m : probes) EXPECT_EQ(route(replica, m), route(owner, m)) << m.exchange;
  }

  vhost v{"/", 0};
  routing_table replica;
  int changes = 0;
};

TEST_F(RoutingReplicaTest, FollowsDeclarationsBindingsAndDeletions) {
  dest_id a = declare("a");
  dest_id b = declare("b");
  ASSERT_FALSE(v.declare_exchange({"logs", "topic"}, false));
  ASSERT_FALSE(v.declare_exchange({"fan", "fanout"}, false));
  ASSERT_FALSE(v.bind("logs", a, "app.*", {}));
  ASSERT_FALSE(v.bind("logs", b, "#", {}));
  ASSERT_FALSE(v.bind("fan", std::get<dest_id>(v.exchange_dest("logs")), "", {}));
  // Types whose bindings carry arguments or weights.
  ASSERT_FALSE(v.declare_exchange({"hash", "x-consistent-hash"}, false));
  ASSERT_FALSE(v.bind("hash", a, "1", {}));
  ASSERT_FALSE(v.bind("hash", b, "3", {}));
  common::field_table match;
  match.set("x-match", std::string("any"));
  match.set("kind", std::string("audit"));
  ASSERT_FALSE(v.bind("amq.headers", b, "", match));
  message audit = msg("amq.headers", "");
  audit.properties.headers = common::field_table{};
  audit.properties.headers->set("kind", std::string("audit"));
  std::vector<message> probes{msg("", "a"),          msg("", "b"),
                              msg("", "c"),          msg("logs", "app.x"),
                              msg("logs", "db.y"),   msg("fan", "app.z"),
                              msg("hash", "k1"),     msg("hash", "k2"),
                              msg("hash", "k3"),     audit,
                              msg("amq.headers", "")};
  expect_same(probes);
  EXPECT_EQ(route(replica, msg("fan", "app.z")), (std::vector<dest_id>{a, b}));
  EXPECT_EQ(route(replica, msg("", "a")), (std::vector<dest_id>{a}));
  EXPECT_EQ(route(replica, audit), (std::vector<dest_id>{b}));
  EXPECT_EQ(route(replica, msg("hash", "k1")).size(), 1u);

  // Unbinding, deleting a queue (its bindings and its name go), deleting an exchange (the
  // bindings to it go).
  ASSERT_FALSE(v.unbind("logs", b, "#", {}));
  expect_same(probes);
  ASSERT_TRUE(std::holds_alternative<uint32_t>(v.delete_queue("a", false, false, 1)));
  expect_same(probes);
  EXPECT_TRUE(route(replica, msg("", "a")).empty());
  ASSERT_FALSE(v.delete_exchange("logs", false));
  expect_same(probes);
  EXPECT_EQ(replica.bindings(),
            (std::vector<binding>{{"hash", b, "3", {}}, {"amq.headers", b, "", match}}));
  EXPECT_EQ(replica.find_exchange("logs"), nullptr);
  EXPECT_GT(changes, 0);
}

TEST_F(RoutingReplicaTest, FollowsAutoDeleteAndExclusiveQueuesOfAClosedConnection) {
  ASSERT_FALSE(v.declare_exchange({"temp", "direct", false, true}, false));
  ASSERT_FALSE(v.declare_exchange({"up", "fanout", false, true}, false));
  queue_declare_request r;
  r.name = "mine";
  r.exclusive = true;
  r.connection_id = 7;
  ASSERT_TRUE(std::holds_alternative<queue_declare_ok>(v.declare_queue(r)));
  dest_id mine = std::get<dest_id>(v.queue_dest("mine", 7));
  ASSERT_FALSE(v.bind("temp", mine, "k", {}));
  ASSERT_FALSE(v.bind("up", std::get<dest_id>(v.exchange_dest("temp")), "", {}));
  expect_same({msg("temp", "k"), msg("up", "k"), msg("", "mine")});
  // The connection goes: its queue goes, then "temp" (auto-delete, no binding left), then "up"
  // (its only binding was to "temp").
  v.close_connection(7);
  EXPECT_EQ(v.routing().find_exchange("temp"), nullptr);
  EXPECT_EQ(v.routing().find_exchange("up"), nullptr);
  expect_same({msg("", "mine")});
}

TEST(RoutingTable, ChangesForUnknownNamesAreIgnored) {
  routing_table t;
  size_t before = t.exchanges().size();
  t.apply(exchange_removed{"nothing"});
  t.apply(binding_added{binding{"nothing", 42, "k", {}}});
  t.apply(binding_removed{binding{"amq.direct", 42, "k", {}}});
  t.apply(queue_removed{"q", 42});
  EXPECT_EQ(t.exchanges().size(), before);
  EXPECT_TRUE(t.bindings().empty());
  EXPECT_EQ(t.queue_count(), 0u);
  // A queue_removed for an id that is not the one listed under the name (a newer queue of the
  // same name) leaves the directory alone.
  t.apply(queue_added{"q", 43});
  t.apply(queue_removed{"q", 42});
  EXPECT_EQ(t.queue_id("q"), 43u);
}

}  // namespace
}  // namespace warren::broker
