// Message deduplication: the window (size and time), message keys, the declare arguments, and
// the vhost's use of it on exchanges and queues.
#include "broker/dedup.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <random>
#include <set>
#include <string>

#include "broker/vhost.hpp"

namespace warren::broker {
namespace {

dedup_key key(uint64_t n) {
  return make_dedup_key('I', &n, sizeof n);
}

TEST(dedup_cache, remembers_until_evicted_oldest_first) {
  dedup_cache c(3);
  for (uint64_t i = 0; i < 3; ++i) c.insert(key(i), 0, 1);
  EXPECT_EQ(c.size(), 3u);
  for (uint64_t i = 0; i < 3; ++i) EXPECT_TRUE(c.contains(key(i), 1));
  c.insert(key(3), 0, 1);  // full: 0, the oldest, goes
  EXPECT_EQ(c.size(), 3u);
  EXPECT_FALSE(c.contains(key(0), 1));
  EXPECT_TRUE(c.contains(key(1), 1));
  EXPECT_TRUE(c.contains(key(3), 1));
  // Re-inserting a key keeps its place: 1 is still the oldest and goes next.
  c.insert(key(1), 0, 1);
  c.insert(key(4), 0, 1);
  EXPECT_FALSE(c.contains(key(1), 1));
  EXPECT_TRUE(c.contains(key(2), 1));
  EXPECT_TRUE(c.contains(key(4), 1));
}

TEST(dedup_cache, forgets_a_key_when_its_deadline_passes) {
  dedup_cache c(10);
  c.insert(key(1), 100, 0);  // until 100
  c.insert(key(2), 0, 0);    // no deadline
  EXPECT_TRUE(c.contains(key(1), 99));
  EXPECT_FALSE(c.contains(key(1), 100));
  EXPECT_TRUE(c.contains(key(2), 1'000'000));
  // A later insert drops the expired key at the old end.
  c.insert(key(3), 0, 150);
  EXPECT_EQ(c.size(), 2u);
  // An expired key inserted again is remembered again.
  c.insert(key(1), 300, 200);
  EXPECT_TRUE(c.contains(key(1), 250));
}

TEST(dedup_cache, expired_keys_make_room_before_live_ones_are_evicted) {
  dedup_cache c(2);
  c.insert(key(1), 10, 0);
  c.insert(key(2), 0, 0);
  c.insert(key(3), 0, 20);  // 1 expired: it goes, 2 stays
  EXPECT_TRUE(c.contains(key(2), 20));
  EXPECT_TRUE(c.contains(key(3), 20));
}

TEST(dedup_cache, erase_leaves_a_hole_that_later_inserts_step_over) {
  dedup_cache c(4);
  for (uint64_t i = 0; i < 4; ++i) c.insert(key(i), 0, 0);
  c.erase(key(1));
  c.erase(key(42));  // absent: nothing happens
  EXPECT_EQ(c.size(), 3u);
  EXPECT_FALSE(c.contains(key(1), 0));
  c.insert(key(4), 0, 0);  // the ring is full (hole included): the oldest, 0, goes
  c.insert(key(5), 0, 0);  // the hole reaches the old end and goes; 2 and 3 stay
  EXPECT_FALSE(c.contains(key(0), 0));
  EXPECT_TRUE(c.contains(key(2), 0));
  EXPECT_TRUE(c.contains(key(3), 0));
  EXPECT_TRUE(c.contains(key(4), 0));
  EXPECT_TRUE(c.contains(key(5), 0));
  EXPECT_EQ(c.size(), 4u);
}

// Against plain models under random operations, across ring growth and wrap-around: the
// index's backward-shift deletion (used by eviction and by erase) is the part most worth
// checking. First eviction: inserts and lookups against a FIFO of the newest `cap` keys.
TEST(dedup_cache, evicts_like_a_fifo_under_random_inserts) {
  const size_t cap = 300;
  dedup_cache c(cap);
  std::deque<uint64_t> order;
  std::set<uint64_t> live;
  std::mt19937_64 rng(7);
  for (int step = 0; step < 200'000; ++step) {
    uint64_t k = rng() % 1000;
    if (rng() % 2) {
      if (!live.count(k)) {
        if (order.size() == cap) {
          live.erase(order.front());
          order.pop_front();
        }
        order.push_back(k);
        live.insert(k);
      }
      c.insert(key(k), 0, 0);
    } else {
      ASSERT_EQ(c.contains(key(k), 0), live.count(k) == 1) << "step " << step;
    }
    ASSERT_EQ(c.size(), live.size()) << "step " << step;
  }
}

// Then erase: with room for every key nothing is evicted, so the cache holds exactly the set.
TEST(dedup_cache, erases_like_a_set_under_random_operations) {
  dedup_cache c(100'000);
  std::set<uint64_t> live;
  std::mt19937_64 rng(11);
  for (int step = 0; step < 200'000; ++step) {
    uint64_t k = rng() % 2000;
    switch (rng() % 3) {
      case 0:
        live.insert(k);
        c.insert(key(k), 0, 0);
        break;
      case 1:
        live.erase(k);
        c.erase(key(k));
        break;
      default:
        ASSERT_EQ(c.contains(key(k), 0), live.count(k) == 1) << "step " << step;
    }
    ASSERT_EQ(c.size(), live.size()) << "step " << step;
  }
}

TEST(dedup_cache, storage_grows_with_use_not_with_capacity) {
  dedup_cache c(1'000'000'000);
  EXPECT_EQ(c.memory_bytes(), 0u);
  for (uint64_t i = 0; i < 1000; ++i) c.insert(key(i), 0, 0);
  EXPECT_LT(c.memory_bytes(), 100'000u);
  for (uint64_t i = 0; i < 1000; ++i) ASSERT_TRUE(c.contains(key(i), 0));
}

// ----------------------------------------------------------------------------- keys

message with_header(const std::string& name, common::field_value v) {
  message m;
  common::field_table h;
  h.set(name, std::move(v));
  m.properties.headers = std::move(h);
  return m;
}

TEST(dedup_filter, keys_come_from_the_header_and_optionally_message_id) {
  dedup_filter f{dedup_settings{}};
  auto a = f.key_of(with_header("x-deduplication-header", std::string("id-1")));
  auto b = f.key_of(with_header("x-deduplication-header", std::string("id-2")));
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a, *b);
  // Integers of any width give one key; a string of the same digits is another.
  auto i32 = f.key_of(with_header("x-deduplication-header", int32_t{7}));
  auto i64 = f.key_of(with_header("x-deduplication-header", int64_t{7}));
  auto s7 = f.key_of(with_header("x-deduplication-header", std::string("7")));
  EXPECT_EQ(*i32, *i64);
  EXPECT_NE(*i32, *s7);
  // No header, or a table: no key.
  message plain;
  plain.properties.message_id = "m-1";
  EXPECT_FALSE(f.key_of(plain));
  EXPECT_FALSE(f.key_of(with_header("x-deduplication-header", common::field_table{})));

  dedup_settings s;
  s.header = "my-id";
  s.fall_back_to_message_id = true;
  dedup_filter g{s};
  EXPECT_TRUE(g.key_of(plain));
  EXPECT_FALSE(g.key_of(with_header("x-deduplication-header", std::string("id-1"))));
  EXPECT_TRUE(g.key_of(with_header("my-id", std::string("id-1"))));
}

TEST(dedup_filter, a_message_header_x_cache_ttl_overrides_the_window) {
  dedup_settings s;
  s.cache_ttl_ms = 1000;
  dedup_filter f{s};
  message m = with_header("x-deduplication-header", std::string("a"));
  EXPECT_FALSE(f.check_and_remember(m, 0));
  EXPECT_TRUE(f.check_and_remember(m, 999));
  EXPECT_FALSE(f.check_and_remember(m, 1000));  // expired: passes and is remembered anew
  message n = with_header("x-deduplication-header", std::string("b"));
  n.properties.headers->set("x-cache-ttl", int32_t{10});
  EXPECT_FALSE(f.check_and_remember(n, 0));
  EXPECT_TRUE(f.check_and_remember(n, 9));
  EXPECT_FALSE(f.check_and_remember(n, 10));
  EXPECT_EQ(f.dropped, 2u);
}

// ----------------------------------------------------------------------------- arguments

std::optional<std::string> arg_error(const common::field_table& args, std::string_view type) {
  std::optional<dedup_settings> s;
  if (auto e = parse_dedup_arguments(args, type, s)) return e->text;
  return std::nullopt;
}

TEST(dedup_arguments, the_exchange_type_requires_a_positive_cache_size) {
  common::field_table t;
  EXPECT_EQ(arg_error(t, dedup_exchange_type),
            "Missing or invalid argument, 'x-cache-size' must be an integer greater than 0");
  for (common::field_value bad :
       {common::field_value(int32_t{0}), common::field_value(int64_t{-1}),
        common::field_value(std::string("x")), common::field_value(std::string("-5")),
        common::field_value(true), common::field_value(1.5)}) {
    t.set("x-cache-size", bad);
    EXPECT_TRUE(arg_error(t, dedup_exchange_type));
  }
  t.set("x-cache-size", std::string("5"));  // the plugin accepts a decimal string
  std::optional<dedup_settings> s;
  ASSERT_FALSE(parse_dedup_arguments(t, dedup_exchange_type, s));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->cache_size, 5u);
  t.set("x-cache-size", int64_t{2'000'000'000});
  EXPECT_EQ(arg_error(t, dedup_exchange_type),
            "Invalid argument, 'x-cache-size' must be at most 1073741824");
}

TEST(dedup_arguments, ttl_persistence_header_and_property_are_checked) {
  common::field_table t;
  t.set("x-cache-size", int32_t{10});
  t.set("x-cache-ttl", int32_t{0});
  EXPECT_EQ(arg_error(t, dedup_exchange_type),
            "Invalid argument, 'x-cache-ttl' must be an integer greater than 0");
  t.set("x-cache-ttl", int32_t{500});
  t.set("x-cache-persistence", std::string("tape"));
  EXPECT_EQ(arg_error(t, dedup_exchange_type),
            "Invalid argument, 'x-cache-persistence' must be either 'disk' or 'memory'");
  t.set("x-cache-persistence", std::string("disk"));
  EXPECT_TRUE(arg_error(t, dedup_exchange_type));
  t.set("x-cache-persistence", std::string("memory"));
  t.set("x-deduplication-header", int32_t{1});
  EXPECT_EQ(arg_error(t, dedup_exchange_type),
            "Invalid argument, 'x-deduplication-header' must be a non-empty string");
  t.set("x-deduplication-header", std::string("id"));
  t.set("x-deduplication-property", std::string("correlation_id"));
  EXPECT_EQ(arg_error(t, dedup_exchange_type),
            "Invalid argument, 'x-deduplication-property' must be 'message_id'");
  t.set("x-deduplication-property", std::string("message_id"));
  std::optional<dedup_settings> s;
  ASSERT_FALSE(parse_dedup_arguments(t, dedup_exchange_type, s));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->cache_ttl_ms, 500);
  EXPECT_EQ(s->header, "id");
  EXPECT_TRUE(s->fall_back_to_message_id);
}

TEST(dedup_arguments, other_exchanges_and_queues_opt_in_with_a_boolean) {
  common::field_table t;
  std::optional<dedup_settings> s;
  t.set("x-cache-size", int32_t{-3});  // ignored without x-message-deduplication
  EXPECT_FALSE(parse_dedup_arguments(t, "direct", s));
  EXPECT_FALSE(s);
  t.set("x-message-deduplication", std::string("yes"));
  EXPECT_EQ(arg_error(t, ""), "Invalid argument, 'x-message-deduplication' must be a boolean");
  t.set("x-message-deduplication", true);
  EXPECT_TRUE(arg_error(t, ""));  // now the size is checked
  common::field_table u;
  u.set("x-message-deduplication", true);
  ASSERT_FALSE(parse_dedup_arguments(u, "", s));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->cache_size, 128u);  // LavinMQ's default
  u.set("x-message-deduplication", false);
  ASSERT_FALSE(parse_dedup_arguments(u, "topic", s));
  EXPECT_FALSE(s);
}

// ----------------------------------------------------------------------------- in a vhost

message_ptr dup_msg(std::string exchange, std::string key, std::string id) {
  auto m = std::make_shared<message>();
  m->exchange = std::move(exchange);
  m->routing_key = std::move(key);
  common::field_table h;
  h.set("x-deduplication-header", std::move(id));
  m->properties.headers = std::move(h);
  return m;
}

class DedupVhost : public ::testing::Test {
 protected:
  void declare(const std::string& q, common::field_table args = {}) {
    queue_declare_request r;
    r.name = q;
    r.arguments = std::move(args);
    ASSERT_TRUE(std::holds_alternative<queue_declare_ok>(v.declare_queue(r)));
  }
  size_t count(const std::string& q) { return v.inspect_queue(q)->message_count(); }
  publish_outcome publish(message_ptr m) { return std::get<publish_outcome>(v.publish(m)); }
  vhost v{"/", 0};
};

TEST_F(DedupVhost, the_exchange_type_routes_as_fanout_and_drops_duplicates_as_routed) {
  common::field_table args;
  args.set("x-cache-size", int32_t{100});
  ASSERT_FALSE(
      v.declare_exchange({"dd", "x-message-deduplication", false, false, false, args}, false));
  declare("a");
  declare("b");
  ASSERT_FALSE(v.bind("dd", std::get<dest_id>(v.queue_dest("a", 0)), "", {}));
  ASSERT_FALSE(v.bind("dd", std::get<dest_id>(v.queue_dest("b", 0)), "", {}));
  EXPECT_EQ(publish(dup_msg("dd", "any", "1")), publish_outcome::routed);
  EXPECT_EQ(publish(dup_msg("dd", "other", "1")), publish_outcome::routed);  // dropped
  EXPECT_EQ(publish(dup_msg("dd", "", "2")), publish_outcome::routed);
  EXPECT_EQ(count("a"), 2u);
  EXPECT_EQ(count("b"), 2u);
  EXPECT_EQ(v.inspect_exchange("dd")->dedup->dropped, 1u);
}

TEST_F(DedupVhost, a_queue_drops_what_it_has_seen_and_others_still_get_it) {
  common::field_table args;
  args.set("x-message-deduplication", true);
  declare("dedup", args);
  declare("plain");
  ASSERT_FALSE(v.declare_exchange({"f", "fanout"}, false));
  ASSERT_FALSE(v.bind("f", std::get<dest_id>(v.queue_dest("dedup", 0)), "", {}));
  ASSERT_FALSE(v.bind("f", std::get<dest_id>(v.queue_dest("plain", 0)), "", {}));
  publish(dup_msg("f", "", "x"));
  EXPECT_EQ(publish(dup_msg("f", "", "x")), publish_outcome::routed);
  EXPECT_EQ(count("dedup"), 1u);
  EXPECT_EQ(count("plain"), 2u);
  // Straight to the queue through the default exchange: still a duplicate.
  EXPECT_EQ(publish(dup_msg("", "dedup", "x")), publish_outcome::routed);
  EXPECT_EQ(count("dedup"), 1u);
}

TEST_F(DedupVhost, a_message_the_queue_refused_is_not_remembered) {
  common::field_table args;
  args.set("x-message-deduplication", true);
  args.set("x-max-length", int32_t{1});
  args.set("x-overflow", std::string("reject-publish"));
  declare("q", args);
  EXPECT_EQ(publish(dup_msg("", "q", "1")), publish_outcome::routed);
  EXPECT_EQ(publish(dup_msg("", "q", "2")), publish_outcome::rejected);
  v.purge_queue("q", 0);
  // 2 was refused (nacked), so sending it again is not a duplicate.
  EXPECT_EQ(publish(dup_msg("", "q", "2")), publish_outcome::routed);
  EXPECT_EQ(count("q"), 1u);
}

TEST_F(DedupVhost, an_exchange_forgets_a_message_a_queue_refused) {
  common::field_table qargs;
  qargs.set("x-max-length", int32_t{1});
  qargs.set("x-overflow", std::string("reject-publish"));
  declare("q", qargs);
  common::field_table args;
  args.set("x-message-deduplication", true);
  ASSERT_FALSE(v.declare_exchange({"d", "direct", false, false, false, args}, false));
  ASSERT_FALSE(v.bind("d", std::get<dest_id>(v.queue_dest("q", 0)), "k", {}));
  EXPECT_EQ(publish(dup_msg("d", "k", "1")), publish_outcome::routed);
  EXPECT_EQ(publish(dup_msg("d", "k", "2")), publish_outcome::rejected);
  v.purge_queue("q", 0);
  EXPECT_EQ(publish(dup_msg("d", "k", "2")), publish_outcome::routed);
  EXPECT_EQ(count("q"), 1u);
}

TEST_F(DedupVhost, bad_arguments_refuse_the_declare) {
  auto e = v.declare_exchange({"dd", "x-message-deduplication"}, false);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, error_code::precondition_failed);
  common::field_table args;
  args.set("x-message-deduplication", true);
  args.set("x-cache-ttl", std::string("soon"));
  queue_declare_request r;
  r.name = "q";
  r.arguments = args;
  auto q = v.declare_queue(r);
  ASSERT_TRUE(std::holds_alternative<error>(q));
  EXPECT_EQ(std::get<error>(q).text,
            "Invalid argument, 'x-cache-ttl' must be an integer greater than 0");
}

}  // namespace
}  // namespace warren::broker
