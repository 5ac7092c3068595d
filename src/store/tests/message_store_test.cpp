// The store under a real vhost, without sockets: what is journalled comes back after a
// "restart" (a new vhost and a new store on the same directory), and nothing else does.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "broker/vhost.hpp"
#include "store/message_store.hpp"
#include "store/record_file.hpp"

namespace warren::store {
namespace {

namespace fs = std::filesystem;
using namespace broker;

struct recorder : delivery_target {
  struct got_t {
    uint64_t tag;
    bool redelivered;
    message_ptr m;
  };
  void deliver(const std::string&, uint64_t tag, bool redelivered, const message_ptr& m) override {
    got.push_back({tag, redelivered, m});
  }
  void cancelled(const std::string&) override {}
  std::vector<got_t> got;
};

message_ptr msg(std::string key, std::string body, bool persistent = true) {
  auto m = std::make_shared<message>();
  m->routing_key = std::move(key);
  m->body = std::move(body);
  if (persistent) m->properties.delivery_mode = 2;
  return m;
}

// One broker "life": a vhost with its store on `dir`, recovered at construction.
struct life {
  explicit life(const fs::path& dir, store_options o = {.fsync = false},
                size_t page_threshold = vhost::default_page_threshold)
      : store(dir, o) {
    v.set_page_threshold(page_threshold);  // before recovery: what it restores pages too
    stats = store.recover(v);
    v.open_channel(1, 7, target);
  }
  ~life() { store.flush(); }
  void declare(const std::string& name, bool durable = true, common::field_table args = {}) {
    queue_declare_request r;
    r.name = name;
    r.durable = durable;
    r.arguments = std::move(args);
    r.connection_id = 7;
    auto res = v.declare_queue(r);
    ASSERT_TRUE(std::holds_alternative<queue_declare_ok>(res)) << std::get<error>(res).text;
  }
  uint32_t count(const std::string& name) {
    queue_declare_request r;
    r.name = name;
    r.passive = true;
    auto res = v.declare_queue(r);
    return std::holds_alternative<queue_declare_ok>(res)
               ? std::get<queue_declare_ok>(res).message_count
               : uint32_t(-1);
  }
  bool exists(const std::string& name) { return count(name) != uint32_t(-1); }
  uint64_t publish(message_ptr m, const std::string& exchange = "") {
    auto* mm = const_cast<message*>(m.get());
    mm->exchange = exchange;
    uint64_t ticket = 0;
    auto r = v.publish(std::move(m), 0, &ticket);
    EXPECT_TRUE(std::holds_alternative<publish_outcome>(r));
    return ticket;
  }
  std::vector<std::string> drain(const std::string& q, bool ack = true) {
    std::vector<std::string> out;
    for (;;) {
      auto r = v.get(1, q, !ack, 7);
      auto* ok = std::get_if<get_ok>(&r);
      if (!ok) break;
      EXPECT_EQ(ok->redelivered, redelivered_expected) << ok->msg->body;
      out.push_back(ok->msg->body);
      if (ack) {
        EXPECT_FALSE(v.ack(1, ok->delivery_tag, false));
      }
    }
    return out;
  }

  vhost v{"/", 0};
  message_store store;
  recovery_stats stats;
  std::shared_ptr<recorder> target = std::make_shared<recorder>();
  bool redelivered_expected = false;
};

class StoreTestBase : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("warren-store-test-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  size_t files(const std::string& ext) {
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(dir / "msgs")) n += e.path().extension() == ext;
    return n;
  }
  fs::path dir;
};

class StoreTest : public StoreTestBase {};

TEST_F(StoreTest, DurableDefinitionsComeBackAndTransientOnesDoNot) {
  common::field_table qargs;
  qargs.set("x-max-length", int32_t(10));
  qargs.set("x-message-ttl", int64_t(60000));
  {
    life l(dir);
    common::field_table xargs;
    xargs.set("alternate-exchange", std::string("ae"));
    ASSERT_FALSE(l.v.declare_exchange({"events", "topic", true, false, false, xargs}, false));
    ASSERT_FALSE(l.v.declare_exchange({"scratch", "fanout", false}, false));
    l.declare("orders", true, qargs);
    l.declare("temp", false);
    auto orders = std::get<dest_id>(l.v.queue_dest("orders", 7));
    auto temp = std::get<dest_id>(l.v.queue_dest("temp", 7));
    ASSERT_FALSE(l.v.bind("events", orders, "order.*", {}));
    ASSERT_FALSE(l.v.bind("events", temp, "#", {}));  // a non-durable end: not stored
    ASSERT_FALSE(l.v.declare_exchange({"gone", "direct", true}, false));
    ASSERT_FALSE(l.v.delete_exchange("gone", false));
  }
  life l(dir);
  EXPECT_TRUE(l.v.has_exchange("events"));
  EXPECT_FALSE(l.v.has_exchange("scratch"));
  EXPECT_FALSE(l.v.has_exchange("gone"));
  EXPECT_TRUE(l.exists("orders"));
  EXPECT_FALSE(l.exists("temp"));
  // The same arguments, with their AMQP types, so an identical re-declare is still equivalent.
  l.declare("orders", true, qargs);
  common::field_table xargs;
  xargs.set("alternate-exchange", std::string("ae"));
  EXPECT_FALSE(l.v.declare_exchange({"events", "topic", true, false, false, xargs}, false));
  // The binding works.
  l.publish(msg("order.new", "x"), "events");
  EXPECT_EQ(l.count("orders"), 1u);
}

TEST_F(StoreTest, PersistentMessagesInDurableQueuesComeBackInOrderRedelivered) {
  {
    life l(dir);
    l.declare("d");
    l.declare("t", false);
    for (int i = 0; i < 5; ++i) l.publish(msg("d", "p" + std::to_string(i)));
    l.publish(msg("d", "transient", false));
    l.publish(msg("t", "in a transient queue"));
    EXPECT_EQ(l.count("d"), 6u);
  }
  life l(dir);
  EXPECT_EQ(l.stats.messages, 5u);
  l.redelivered_expected = true;
  EXPECT_EQ(l.drain("d"), (std::vector<std::string>{"p0", "p1", "p2", "p3", "p4"}));
  EXPECT_FALSE(l.exists("t"));
}

TEST_F(StoreTest, AckedMessagesDoNotComeBackUnackedOnesDo) {
  {
    life l(dir);
    l.declare("q");
    for (int i = 0; i < 6; ++i) l.publish(msg("q", std::to_string(i)));
    std::vector<uint64_t> tags;
    for (int i = 0; i < 4; ++i)
      tags.push_back(std::get<get_ok>(l.v.get(1, "q", false, 7)).delivery_tag);
    ASSERT_FALSE(l.v.ack(1, tags[1], true));             // 0 and 1
    ASSERT_FALSE(l.v.reject(1, tags[2], false, false));  // 2, dropped
    // 3 is delivered and not acked: it comes back
  }
  life l(dir);
  l.redelivered_expected = true;
  EXPECT_EQ(l.drain("q"), (std::vector<std::string>{"3", "4", "5"}));
}

TEST_F(StoreTest, OneRecordForManyQueuesReleasedQueueByQueue) {
  {
    life l(dir);
    ASSERT_FALSE(l.v.declare_exchange({"fan", "fanout", true}, false));
    l.declare("a");
    l.declare("b");
    for (auto q : {"a", "b"})
      ASSERT_FALSE(l.v.bind("fan", std::get<dest_id>(l.v.queue_dest(q, 7)), "", {}));
    l.publish(msg("", "both"), "fan");
    EXPECT_EQ(l.drain("a"), std::vector<std::string>{"both"});
  }
  {
    life l(dir);
    EXPECT_EQ(l.count("a"), 0u);
    EXPECT_EQ(l.count("b"), 1u);
    l.redelivered_expected = true;
    EXPECT_EQ(l.drain("b"), std::vector<std::string>{"both"});
  }
  life l(dir);
  EXPECT_EQ(l.count("b"), 0u);
  EXPECT_EQ(files(".seg"), 0u);  // nothing left to keep
}

TEST_F(StoreTest, PurgeAndDeleteAreRemembered) {
  {
    life l(dir);
    l.declare("purged");
    l.declare("deleted");
    l.publish(msg("purged", "1"));
    l.publish(msg("deleted", "2"));
    ASSERT_TRUE(std::holds_alternative<uint32_t>(l.v.purge_queue("purged", 7)));
    ASSERT_TRUE(std::holds_alternative<uint32_t>(l.v.delete_queue("deleted", false, false, 7)));
  }
  life l(dir);
  EXPECT_EQ(l.count("purged"), 0u);
  EXPECT_FALSE(l.exists("deleted"));
}

TEST_F(StoreTest, PropertiesSurviveExactly) {
  auto m = std::make_shared<message>();
  m->routing_key = "q";
  auto& p = m->properties;
  p.content_type = "application/json";
  p.content_encoding = "gzip";
  common::field_table h;
  h.set("n", int64_t(-5));
  h.set("s", std::string("text"));
  h.set("b", true);
  p.headers = h;
  p.delivery_mode = 2;
  p.priority = 3;
  p.correlation_id = "c";
  p.reply_to = "r";
  p.expiration = "600000";
  p.message_id = "id";
  p.timestamp = 1234567;
  p.type = "t";
  p.user_id = "guest";
  p.app_id = "app";
  p.cluster_id = "cl";
  m->body = std::string("\0binary\xff", 8);
  {
    life l(dir);
    l.declare("q");
    l.publish(m);
  }
  life l(dir);
  auto r = l.v.get(1, "q", true, 7);
  ASSERT_TRUE(std::holds_alternative<get_ok>(r));
  const message& back = *std::get<get_ok>(r).msg;
  EXPECT_EQ(back.body, m->body);
  EXPECT_EQ(back.routing_key, "q");
  const auto& b = back.properties;
  EXPECT_EQ(b.content_type, p.content_type);
  EXPECT_EQ(b.content_encoding, p.content_encoding);
  ASSERT_TRUE(b.headers);
  EXPECT_TRUE(*b.headers == h);
  EXPECT_EQ(b.delivery_mode, p.delivery_mode);
  EXPECT_EQ(b.priority, p.priority);
  EXPECT_EQ(b.correlation_id, p.correlation_id);
  EXPECT_EQ(b.reply_to, p.reply_to);
  EXPECT_EQ(b.expiration, p.expiration);
  EXPECT_EQ(back.ttl_ms, 600000);
  EXPECT_EQ(b.message_id, p.message_id);
  EXPECT_EQ(b.timestamp, p.timestamp);
  EXPECT_EQ(b.type, p.type);
  EXPECT_EQ(b.user_id, p.user_id);
  EXPECT_EQ(b.app_id, p.app_id);
  EXPECT_EQ(b.cluster_id, p.cluster_id);
}

TEST_F(StoreTest, TornTailIsCutAndTheRestRecovered) {
  {
    life l(dir);
    l.declare("q");
    for (int i = 0; i < 10; ++i) l.publish(msg("q", std::string(100, char('a' + i))));
  }
  fs::path seg;
  for (const auto& e : fs::directory_iterator(dir / "msgs"))
    if (e.path().extension() == ".seg") seg = e.path();
  ASSERT_FALSE(seg.empty());
  auto size = fs::file_size(seg);
  fs::resize_file(seg, size - 30);  // the last record is cut in the middle
  {
    std::ofstream f(dir / "definitions.log", std::ios::app | std::ios::binary);
    f.write("\0\0\0\x10garbage", 11);  // and the definitions log has half a record at its end
  }
  {
    life l(dir);
    EXPECT_EQ(l.stats.torn_files, 2u);
    EXPECT_EQ(l.count("q"), 9u);
    EXPECT_LT(fs::file_size(seg), size - 30);  // cut back to the last whole record
    l.redelivered_expected = true;
    auto got = l.drain("q", false);
    ASSERT_EQ(got.size(), 9u);
    for (int i = 0; i < 9; ++i) EXPECT_EQ(got[i], std::string(100, char('a' + i)));
  }
  EXPECT_FALSE(fs::exists(seg));  // all taken (no-ack): the segment went
}

TEST_F(StoreTest, AckedSegmentsAreReclaimed) {
  store_options o{.segment_bytes = 2000, .fsync = false};
  life l(dir, o);
  l.declare("q");
  for (int i = 0; i < 200; ++i) l.publish(msg("q", std::string(100, 'x')));
  l.store.flush();
  EXPECT_GT(files(".seg"), 5u);
  auto got = l.drain("q");
  EXPECT_EQ(got.size(), 200u);
  l.store.flush();
  EXPECT_LE(files(".seg"), 1u);  // only the segment still written to may stay
  EXPECT_LE(l.store.live_segments(), 1u);
}

TEST_F(StoreTest, ConfirmTicketIsSyncedAfterAnFsync) {
  life l(dir, store_options{});
  l.declare("q");
  uint64_t t = l.publish(msg("q", "x"));
  EXPECT_GT(t, 0u);
  EXPECT_EQ(l.publish(msg("q", "transient", false)), 0u);
  std::promise<void> done;
  l.store.when_synced(t, [&] { done.set_value(); });
  EXPECT_EQ(done.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
}

// The fault tests' unsafe mode (WARREN_TEST_UNSAFE_CONFIRM): a ticket counts as synced as soon as
// it is issued (the lazy write that follows is what test_cluster_faults's checker catches).
TEST_F(StoreTest, TheUnsafeTestModeConfirmsBeforeWriting) {
  store_options o;
  o.confirm_before_write = true;
  life l(dir, o);
  l.declare("q");
  uint64_t t = l.publish(msg("q", std::string(1000, 'u')));
  EXPECT_GT(t, 0u);
  EXPECT_GE(l.store.synced(), t);
  bool called = false;
  l.store.when_synced(t, [&] { called = true; });
  EXPECT_TRUE(called);  // at once, on this thread
  l.store.flush();      // and written all the same, later
  EXPECT_GE(files(".seg"), 1u);
}

// A duplicate that a deduplicating queue or exchange drops is confirmed, but never before its
// original is on disk: its ticket is at least the original's (broker/dedup.hpp).
TEST_F(StoreTest, ADroppedDuplicateIsConfirmedNoSoonerThanItsOriginal) {
  life l(dir, store_options{});
  common::field_table qargs;
  qargs.set("x-message-deduplication", true);
  l.declare("dq", true, qargs);
  l.declare("q");
  common::field_table xargs;
  xargs.set("x-cache-size", int32_t{10});
  ASSERT_FALSE(
      l.v.declare_exchange({"dd", "x-message-deduplication", true, false, false, xargs}, false));
  ASSERT_FALSE(l.v.bind("dd", std::get<dest_id>(l.v.queue_dest("q", 7)), "", {}));
  auto with_id = [](std::string key, std::string id) {
    auto m = std::const_pointer_cast<message>(msg(std::move(key), "body"));
    common::field_table h;
    h.set("x-deduplication-header", std::move(id));
    m->properties.headers = std::move(h);
    return message_ptr(m);
  };
  uint64_t t1 = l.publish(with_id("dq", "a"));
  ASSERT_GT(t1, 0u);
  EXPECT_GE(l.publish(with_id("dq", "a")), t1);  // dropped by the queue
  uint64_t t2 = l.publish(with_id("", "b"), "dd");
  ASSERT_GT(t2, t1);
  EXPECT_GE(l.publish(with_id("", "b"), "dd"), t2);  // dropped by the exchange
  EXPECT_EQ(l.count("dq"), 1u);
  EXPECT_EQ(l.count("q"), 1u);
}

TEST_F(StoreTest, NoAckDeliveryAndDeadLetteringReleaseTheMessage) {
  {
    life l(dir);
    common::field_table args;
    args.set("x-dead-letter-exchange", std::string(""));
    args.set("x-dead-letter-routing-key", std::string("dlq"));
    l.declare("src", true, args);
    l.declare("dlq");
    l.publish(msg("src", "dead"));
    auto tag = std::get<get_ok>(l.v.get(1, "src", false, 7)).delivery_tag;
    ASSERT_FALSE(l.v.reject(1, tag, false, false));
    EXPECT_EQ(l.count("dlq"), 1u);
    l.publish(msg("src", "autoacked"));
    ASSERT_TRUE(std::holds_alternative<get_ok>(l.v.get(1, "src", true, 7)));
  }
  life l(dir);
  EXPECT_EQ(l.count("src"), 0u);
  EXPECT_EQ(l.count("dlq"), 1u);  // the dead-lettered copy is stored in its new queue
}

}  // namespace
}  // namespace warren::store

namespace warren::store {
namespace {

// Paging: past the threshold, messages live only on disk and come back in order.
class PagingTest : public StoreTestBase {};

std::string body(int i) {
  return "m" + std::to_string(i) + std::string(200, 'x');
}

TEST_F(PagingTest, DeepDurableBacklogIsPagedAndDrainsInOrder) {
  life l(dir);
  l.v.set_page_threshold(50);
  l.declare("deep");
  for (int i = 0; i < 3000; ++i) l.publish(msg("deep", body(i)));
  const queue* q = l.v.inspect_queue("deep");
  EXPECT_EQ(q->message_count(), 3000u);
  EXPECT_EQ(q->paged_count(), 2950u);
  auto got = l.drain("deep");
  ASSERT_EQ(got.size(), 3000u);
  for (int i = 0; i < 3000; ++i) ASSERT_EQ(got[i], body(i));
  l.store.flush();
  EXPECT_LE(files(".seg"), 1u);
}

TEST_F(PagingTest, TransientMessagesAreSpooledAndNotRecovered) {
  {
    life l(dir);
    l.v.set_page_threshold(10);
    l.declare("t", false);
    l.declare("d");
    for (int i = 0; i < 500; ++i) {
      l.publish(msg("t", body(i), false));
      l.publish(msg("d", body(i), false));  // transient in a durable queue
    }
    EXPECT_EQ(l.v.inspect_queue("t")->paged_count(), 490u);
    EXPECT_EQ(l.v.inspect_queue("d")->paged_count(), 490u);
    // Requeued messages keep their place ahead of what is paged.
    auto first = std::get<get_ok>(l.v.get(1, "t", false, 7));
    auto second = std::get<get_ok>(l.v.get(1, "t", false, 7));
    ASSERT_FALSE(l.v.reject(1, second.delivery_tag, false, true));
    ASSERT_FALSE(l.v.reject(1, first.delivery_tag, false, true));
    l.target->got.clear();
    std::vector<std::string> got;
    for (;;) {
      auto r = l.v.get(1, "t", true, 7);
      if (!std::holds_alternative<get_ok>(r)) break;
      got.push_back(std::get<get_ok>(r).msg->body);
    }
    ASSERT_EQ(got.size(), 500u);
    for (int i = 0; i < 500; ++i) ASSERT_EQ(got[i], body(i));
  }
  life l(dir);
  EXPECT_EQ(l.count("d"), 0u);  // spool records are not messages to recover
  EXPECT_EQ(l.stats.messages, 0u);
}

TEST_F(PagingTest, PriorityLevelsPageSeparately) {
  life l(dir);
  l.v.set_page_threshold(5);
  common::field_table args;
  args.set("x-max-priority", int32_t(2));
  l.declare("p", true, args);
  for (int i = 0; i < 40; ++i) {
    auto m = msg("p", std::to_string(i));
    const_cast<message*>(m.get())->properties.priority = uint8_t(i % 2 ? 2 : 0);
    l.publish(m);
  }
  auto got = l.drain("p");
  ASSERT_EQ(got.size(), 40u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(got[i], std::to_string(2 * i + 1));
  for (int i = 0; i < 20; ++i) EXPECT_EQ(got[20 + i], std::to_string(2 * i));
}

TEST_F(PagingTest, PurgeAndDeleteReleasePagedMessages) {
  life l(dir, store_options{.segment_bytes = 4096, .fsync = false});
  l.v.set_page_threshold(10);
  l.declare("a");
  l.declare("b", false);
  for (int i = 0; i < 300; ++i) {
    l.publish(msg("a", body(i)));
    l.publish(msg("b", body(i)));
  }
  l.store.flush();
  EXPECT_GT(files(".seg"), 10u);
  ASSERT_TRUE(std::holds_alternative<uint32_t>(l.v.purge_queue("a", 7)));
  ASSERT_TRUE(std::holds_alternative<uint32_t>(l.v.delete_queue("b", false, false, 7)));
  l.store.flush();
  EXPECT_LE(files(".seg"), 1u);
  EXPECT_LE(l.store.live_segments(), 1u);
}

TEST_F(PagingTest, RecoveredBacklogIsPagedNotLoaded) {
  {
    life l(dir);
    l.declare("deep");
    for (int i = 0; i < 2000; ++i) l.publish(msg("deep", body(i)));
  }
  // The recovering vhost pages past its threshold: set before recovery by a fresh life.
  message_store store(dir, {.fsync = false});
  vhost v("/", 0);
  v.set_page_threshold(100);
  auto st = store.recover(v);
  EXPECT_EQ(st.messages, 2000u);
  EXPECT_EQ(v.inspect_queue("deep")->paged_count(), 1900u);
  auto target = std::make_shared<recorder>();
  v.open_channel(1, 7, target);
  for (int i = 0; i < 2000; ++i) {
    auto r = v.get(1, "deep", true, 7);
    ASSERT_TRUE(std::holds_alternative<get_ok>(r));
    EXPECT_TRUE(std::get<get_ok>(r).redelivered);
    ASSERT_EQ(std::get<get_ok>(r).msg->body, body(i));
  }
}

}  // namespace
}  // namespace warren::store

namespace warren::store {
namespace {

TEST_F(PagingTest, AnInMemoryBacklogPagesOutInBoundedSteps) {
  // What a flood left in memory before the pressure came on goes to disk a step at a time, each
  // step within its budget and with a ticket to wait for, queue after queue; order is kept.
  life l(dir);
  const std::vector<std::string> names{"a", "b", "c"};
  for (const auto& n : names) l.declare(n, false);
  const std::string big(16 << 10, 'b');
  constexpr int each = 1000;
  for (int i = 0; i < each; ++i)
    for (const auto& n : names) l.publish(msg(n, body(i) + big, false));
  EXPECT_EQ(l.v.page_out_some(1 << 20).messages, 0u);  // no pressure: nothing to do
  l.v.set_memory_pressure(true);
  for (const auto& n : names) EXPECT_EQ(l.v.inspect_queue(n)->paged_count(), 0u);
  const size_t budget = 1 << 20, per = big.size() + queue::page_cost_per_message;
  size_t steps = 0, total = 0;
  uint64_t last_ticket = 0;
  for (;;) {
    auto step = l.v.page_out_some(budget);
    ++steps;
    total += step.messages;
    EXPECT_LE(step.messages, budget / big.size() + 1);
    if (step.messages) {
      EXPECT_GT(step.ticket, last_ticket);  // each step wrote records to wait for
      last_ticket = step.ticket;
    }
    if (!step.more) break;
    ASSERT_LT(steps, 1000u);
  }
  // What stays in memory in each queue: the read-ahead's bytes (4 MiB of 16 KiB bodies, plus the
  // one that crosses the bound).
  size_t paged = 0;
  for (const auto& n : names) {
    size_t in_memory = each - l.v.inspect_queue(n)->paged_count();
    EXPECT_LE(in_memory, queue::read_ahead_bytes / big.size() + 1) << n;
    paged += each - in_memory;
  }
  EXPECT_EQ(total, paged);
  EXPECT_GE(steps, total * per / budget);
  EXPECT_EQ(l.v.page_out_some(budget).messages, 0u);  // nothing more
  for (const auto& n : names) {
    std::vector<std::string> got = l.drain(n);
    ASSERT_EQ(got.size(), size_t(each)) << n;
    for (int i = 0; i < each; ++i) ASSERT_EQ(got[size_t(i)], body(i) + big) << n;
  }
}

TEST_F(PagingTest, MemoryPressurePagesOutWhatIsInMemoryAndKeepsOrder) {
  life l(dir);
  l.declare("t", false);
  l.declare("d");
  for (int i = 0; i < 3000; ++i) {
    l.publish(msg("t", body(i), false));
    l.publish(msg("d", body(i)));
  }
  EXPECT_EQ(l.v.inspect_queue("t")->paged_count(), 0u);
  // Two messages delivered, one requeued: it must come back first.
  auto first = std::get<get_ok>(l.v.get(1, "t", false, 7));
  l.v.set_memory_pressure(true);
  size_t n = l.v.page_out_some(SIZE_MAX).messages;
  EXPECT_EQ(n, 2 * (3000 - queue::read_ahead) - 1);
  EXPECT_EQ(l.v.inspect_queue("t")->paged_count(), 3000 - 1 - queue::read_ahead);
  ASSERT_FALSE(l.v.reject(1, first.delivery_tag, false, true));
  for (int i = 3000; i < 3100; ++i) l.publish(msg("t", body(i), false));  // paged too
  EXPECT_EQ(l.v.inspect_queue("t")->paged_count(), 3100 - 1 - queue::read_ahead);
  std::vector<std::string> got;
  for (;;) {
    auto r = l.v.get(1, "t", true, 7);
    if (!std::holds_alternative<get_ok>(r)) break;
    got.push_back(std::get<get_ok>(r).msg->body);
  }
  ASSERT_EQ(got.size(), 3100u);
  for (int i = 0; i < 3100; ++i) ASSERT_EQ(got[i], body(i));
  l.v.set_memory_pressure(false);
  auto d = l.drain("d");
  ASSERT_EQ(d.size(), 3000u);
  for (int i = 0; i < 3000; ++i) ASSERT_EQ(d[i], body(i));
  l.store.flush();
  EXPECT_LE(files(".seg"), 1u);
}

}  // namespace
}  // namespace warren::store

namespace warren::store {
namespace {

// The paged index on disk: what a deep backlog costs in RAM, and the paths a paged message can
// take (acks out of order across segments, expiry, a damaged segment at recovery).
class PagedIndexTest : public StoreTestBase {};

TEST_F(PagedIndexTest, DeepBacklogCostsBookkeepingPerBlockNotPerMessage) {
  // 200 000 paged messages: the queue's paged indexes hold a few buffers and a block list, not an
  // entry per message (which cost 32 bytes each before: 6.4 MB here). Also after a restart,
  // whose recovery pages them straight from the segments.
  constexpr int n = 200'000;
  {
    life l(dir, {.fsync = false}, 100);
    l.declare("deep");
    for (int i = 0; i < n; ++i) l.publish(msg("deep", std::to_string(i)));
    const queue* q = l.v.inspect_queue("deep");
    EXPECT_EQ(q->paged_count(), size_t(n - 100));
    EXPECT_LT(q->paged_ram_bytes(), 200'000u);  // under 1 byte per paged message
  }
  life l(dir, {.fsync = false}, 100);
  EXPECT_EQ(l.stats.messages, size_t(n));
  const queue* q = l.v.inspect_queue("deep");
  EXPECT_EQ(q->paged_count(), size_t(n - 100));
  EXPECT_LT(q->paged_ram_bytes(), 200'000u);
  l.redelivered_expected = true;
  auto got = l.drain("deep");
  ASSERT_EQ(got.size(), size_t(n));
  for (int i = 0; i < n; ++i) ASSERT_EQ(got[size_t(i)], std::to_string(i));
  EXPECT_LT(q->paged_ram_bytes(), 1000u);  // drained: the buffers are given back
}

TEST_F(PagedIndexTest, AcksOutOfOrderAcrossSegmentsSurviveARestart) {
  store_options o{.segment_bytes = 4096, .fsync = false};
  std::set<int> acked;
  {
    life l(dir, o, 10);
    l.declare("q");
    for (int i = 0; i < 600; ++i) l.publish(msg("q", body(i)));
    l.store.flush();
    EXPECT_GT(files(".seg"), 20u);
    std::vector<uint64_t> tags;
    for (int i = 0; i < 600; ++i)
      tags.push_back(std::get<get_ok>(l.v.get(1, "q", false, 7)).delivery_tag);
    // Backwards, every third one, and all of the first 100 (whole segments with nothing left).
    for (int i = 599; i >= 0; --i)
      if (i % 3 == 0 || i < 100) {
        ASSERT_FALSE(l.v.ack(1, tags[size_t(i)], false));
        acked.insert(i);
      }
  }
  life l(dir, o, 10);
  EXPECT_EQ(l.count("q"), 600u - acked.size());
  l.redelivered_expected = true;
  auto got = l.drain("q");
  std::vector<std::string> want;
  for (int i = 0; i < 600; ++i)
    if (!acked.count(i)) want.push_back(body(i));
  EXPECT_EQ(got, want);
  l.store.flush();
  EXPECT_LE(files(".seg"), 1u);
}

TEST_F(PagedIndexTest, PagedMessagesExpireAndAreDeadLetteredInOrder) {
  life l(dir, {.fsync = false}, 10);
  common::field_table args;
  args.set("x-message-ttl", int32_t(30));
  args.set("x-dead-letter-exchange", std::string(""));
  args.set("x-dead-letter-routing-key", std::string("dlq"));
  l.declare("src", true, args);
  l.declare("dlq");
  for (int i = 0; i < 3000; ++i) l.publish(msg("src", body(i)));
  EXPECT_EQ(l.v.inspect_queue("src")->paged_count(), 2990u);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  l.v.tick(now_ms());
  EXPECT_EQ(l.count("src"), 0u);
  EXPECT_EQ(l.count("dlq"), 3000u);
  auto got = l.drain("dlq");
  ASSERT_EQ(got.size(), 3000u);
  for (int i = 0; i < 3000; ++i) ASSERT_EQ(got[size_t(i)], body(i));
}

TEST_F(PagedIndexTest, PriorityLevelsEachSpillBlocksAndComeBackInOrderAfterARestart) {
  common::field_table args;
  args.set("x-max-priority", int32_t(2));
  constexpr int n = 3 * int(paged_index::block_entries) + 17;  // per level: blocks on disk
  {
    life l(dir, {.fsync = false}, 5);
    l.declare("p", true, args);
    for (int i = 0; i < 3 * n; ++i) {
      auto m = msg("p", std::to_string(i));
      const_cast<message*>(m.get())->properties.priority = uint8_t(i % 3);
      l.publish(m);
    }
    EXPECT_EQ(l.v.inspect_queue("p")->paged_count(), size_t(3 * n - 5));
    EXPECT_LT(l.v.inspect_queue("p")->paged_ram_bytes(), 400'000u);
  }
  life l(dir, {.fsync = false}, 5);
  EXPECT_EQ(l.count("p"), uint32_t(3 * n));
  l.redelivered_expected = true;
  auto got = l.drain("p");
  ASSERT_EQ(got.size(), size_t(3 * n));
  // Highest level first, each in publish order.
  size_t k = 0;
  for (int lvl = 2; lvl >= 0; --lvl)
    for (int i = lvl; i < 3 * n; i += 3) ASSERT_EQ(got[k++], std::to_string(i));
}

TEST_F(PagedIndexTest, ADamagedSegmentIsCutAndTheRestIsPagedBackInOrder) {
  store_options o{.segment_bytes = 8192, .fsync = false};
  {
    life l(dir, o, 10);
    l.declare("q");
    for (int i = 0; i < 400; ++i) l.publish(msg("q", body(i)));
  }
  // A flipped byte in the middle of the third segment: recovery keeps what precedes it there.
  std::vector<fs::path> segs;
  for (const auto& e : fs::directory_iterator(dir / "msgs"))
    if (e.path().extension() == ".seg") segs.push_back(e.path());
  std::sort(segs.begin(), segs.end());
  ASSERT_GT(segs.size(), 5u);
  auto size = fs::file_size(segs[2]);
  {
    std::fstream f(segs[2], std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(std::streamoff(size / 2));
    char c = 0;
    f.read(&c, 1);
    f.seekp(std::streamoff(size / 2));
    c = char(c ^ 0x5a);
    f.write(&c, 1);
  }
  life l(dir, o, 10);
  EXPECT_EQ(l.stats.torn_files, 1u);
  EXPECT_LT(fs::file_size(segs[2]), size / 2 + 1);
  uint32_t n = l.count("q");
  EXPECT_LT(n, 400u);
  EXPECT_GT(n, 350u);
  l.redelivered_expected = true;
  auto got = l.drain("q");
  ASSERT_EQ(got.size(), n);
  // What is lost is one run (the damaged segment's tail); the rest comes back in order.
  std::vector<int> idx;
  for (const auto& b : got) idx.push_back(std::stoi(b.substr(1)));
  EXPECT_TRUE(std::is_sorted(idx.begin(), idx.end()));
  size_t gaps = 0;
  for (size_t i = 1; i < idx.size(); ++i) gaps += idx[i] != idx[i - 1] + 1;
  EXPECT_EQ(gaps, 1u);
  EXPECT_EQ(idx.front(), 0);
  EXPECT_EQ(idx.back(), 399);
}

}  // namespace
}  // namespace warren::store

namespace warren::store {
namespace {

TEST(RecordCrc, IsZlibsCrc32AtEveryLengthAndAlignment) {
  std::string buf;
  for (int i = 0; i < 600; ++i) buf.push_back(char((i * 131 + 7) % 256));
  for (size_t start = 0; start < 8; ++start)
    for (size_t n = 0; start + n <= buf.size(); n += 1 + n / 16) {
      std::string_view s(buf.data() + start, n);
      ASSERT_EQ(crc(s), uint32_t(::crc32(0L, reinterpret_cast<const Bytef*>(s.data()), uInt(n))))
          << start << " " << n;
    }
}

// The shards of a vhost on two workers write, read back and release records through one store at
// once (each of its queues pages on its own worker): every record reads back as written, and once
// all are released every segment but the active one is gone.
TEST_F(StoreTest, TwoWorkersWriteReadAndReleaseThroughOneStore) {
  vhost v{"/", 0};
  message_store s(dir, {.segment_bytes = 8192, .fsync = false});
  s.recover(v);
  auto worker = [&s](int w, std::vector<std::string>& bad) {
    std::vector<std::pair<journal::location, std::string>> mine;
    for (int i = 0; i < 1500; ++i) {
      message m;
      m.body = fmt::format("w{}-{}", w, i);
      m.body.append(size_t(i % 200), '.');
      s.write(m, 1, {});
      mine.push_back({{m.store_segment, m.store_offset, m.store_length}, m.body});
      if (i % 50 == 49) {  // read back and release what is 50 behind, as a paging queue would
        std::vector<journal::location> where;
        for (size_t k = mine.size() - 50; k < mine.size(); ++k) where.push_back(mine[k].first);
        std::vector<message_ptr> got;
        s.read_many(where, got);
        for (size_t k = 0; k < where.size(); ++k) {
          const auto& want = mine[mine.size() - 50 + k].second;
          if (!got[k] || got[k]->body != want) bad.push_back(want);
          s.release(where[k].segment, where[k].offset, 0);
        }
      }
    }
  };
  std::vector<std::string> bad0, bad1;
  std::thread t0(worker, 0, std::ref(bad0)), t1(worker, 1, std::ref(bad1));
  t0.join();
  t1.join();
  EXPECT_TRUE(bad0.empty()) << bad0.size() << " wrong, first " << bad0.front();
  EXPECT_TRUE(bad1.empty()) << bad1.size() << " wrong, first " << bad1.front();
  s.flush();
  EXPECT_LE(s.live_segments(), 1u);
  EXPECT_LE(files(".seg"), 1u);
}

}  // namespace
}  // namespace warren::store
