// broker::read_cache over the real message store: a record read once is served again from the
// cache (held, or still alive elsewhere), the cache keeps within its bound, and whatever the
// store does with its segments (rolled, deleted once released) a read returns the record written
// at that location. And a fanout message paged by several queues of a vhost is read once.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "broker/read_cache.hpp"
#include "broker/vhost.hpp"
#include "store/message_store.hpp"

namespace warren::store {
namespace {

namespace fs = std::filesystem;
using namespace broker;

struct nobody : delivery_target {
  void deliver(const std::string&, uint64_t, bool, const message_ptr&) override {}
  void cancelled(const std::string&) override {}
};

class ReadCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("warren-read-cache-test-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
  }
  void TearDown() override { fs::remove_all(dir); }

  // A store recovered into a vhost of its own (as the broker does), ready for writes and reads.
  std::unique_ptr<message_store> open(store_options o = {.fsync = false}) {
    auto s = std::make_unique<message_store>(dir, o);
    s->recover(v);
    return s;
  }
  static journal::location write(message_store& s, const std::string& body, uint32_t refs = 1) {
    message m;
    m.routing_key = "k";
    m.body = body;
    s.write(m, refs, {});
    return {m.store_segment, m.store_offset, m.store_length};
  }
  static std::vector<message_ptr> read(read_cache& c, journal& j,
                                       std::vector<journal::location> where) {
    std::vector<message_ptr> out;
    c.read_many(j, where, out);
    return out;
  }

  fs::path dir;
  vhost v{"/", 0};
};

TEST_F(ReadCacheTest, AMissReadsTheStoreAndAHitDoesNot) {
  auto s = open();
  auto a = write(*s, "alpha"), b = write(*s, "beta");
  read_cache c;
  auto first = read(c, *s, {a, b});
  ASSERT_EQ(first.size(), 2u);
  ASSERT_TRUE(first[0] && first[1]);
  EXPECT_EQ(first[0]->body, "alpha");
  EXPECT_EQ(first[1]->body, "beta");
  EXPECT_EQ(c.stats().misses, 2u);
  EXPECT_EQ(c.stats().hits, 0u);

  // b again and a third record: one hit (the very same message, not a copy) and one miss, in
  // the order asked.
  auto g = write(*s, "gamma");
  auto second = read(c, *s, {b, g});
  ASSERT_TRUE(second[0] && second[1]);
  EXPECT_EQ(second[0].get(), first[1].get());
  EXPECT_EQ(second[1]->body, "gamma");
  EXPECT_EQ(c.stats().hits, 1u);
  EXPECT_EQ(c.stats().misses, 3u);
  EXPECT_EQ(c.held_entries(), 3u);
  EXPECT_EQ(c.held_bytes(), 5 + 4 + 5 + 3 * read_cache::entry_cost);
}

TEST_F(ReadCacheTest, HeldBytesStayWithinTheBoundOldestFirst) {
  auto s = open();
  const std::string big(1000, 'x');
  const size_t each = big.size() + 1 + read_cache::entry_cost;  // a digit after it
  read_cache c(3 * each);
  std::vector<journal::location> at;
  for (int i = 0; i < 10; ++i) at.push_back(write(*s, big + std::to_string(i)));
  for (int i = 0; i < 10; ++i) {
    read(c, *s, {at[i]});  // nobody keeps what was read: only the cache holds it
    EXPECT_LE(c.held_bytes(), 3 * each);
  }
  EXPECT_EQ(c.held_entries(), 3u);
  EXPECT_EQ(c.stats().misses, 10u);
  // The three most recent are held; the oldest went out, and with nobody else holding them
  // they are read again.
  for (int i : {9, 8, 7}) EXPECT_EQ(read(c, *s, {at[i]})[0]->body, big + std::to_string(i));
  EXPECT_EQ(c.stats().hits, 3u);
  EXPECT_EQ(read(c, *s, {at[0]})[0]->body, big + "0");
  EXPECT_EQ(c.stats().misses, 11u);
  EXPECT_LE(c.held_bytes(), 3 * each);

  // trim drops everything held; a message nobody holds is then read again.
  c.trim();
  EXPECT_EQ(c.held_bytes(), 0u);
  EXPECT_EQ(c.held_entries(), 0u);
  read(c, *s, {at[9]});
  EXPECT_EQ(c.stats().misses, 12u);
}

TEST_F(ReadCacheTest, AMessageStillAliveElsewhereIsAHitWithoutBeingHeld) {
  auto s = open();
  auto a = write(*s, std::string(5000, 'a'));
  auto b = write(*s, "small");
  read_cache c(1000);  // a does not fit: it is only seen
  message_ptr kept = read(c, *s, {a})[0];
  ASSERT_TRUE(kept);
  EXPECT_EQ(c.held_entries(), 0u);
  EXPECT_EQ(c.seen_entries(), 1u);
  EXPECT_EQ(read(c, *s, {a})[0].get(), kept.get());  // alive in `kept`
  EXPECT_EQ(c.stats().seen_hits, 1u);
  kept.reset();
  EXPECT_EQ(read(c, *s, {a})[0]->body, std::string(5000, 'a'));  // gone: read again
  EXPECT_EQ(c.stats().misses, 2u);

  // The seen tier is bounded in entries too.
  read_cache d(0, 2);
  std::vector<message_ptr> hold;
  for (int i = 0; i < 5; ++i) hold.push_back(read(d, *s, {i % 2 ? a : b})[0]);
  EXPECT_LE(d.seen_entries(), 2u);
}

TEST_F(ReadCacheTest, ReadsStayTrueWhileSegmentsRollAndAreDeleted) {
  // Small segments: records roll over many files, and a segment whose records are all released
  // is deleted; the cache keeps entries of deleted segments (their messages are still right),
  // and every location read afterwards returns what was written there.
  auto s = open({.segment_bytes = 600, .fsync = false});
  read_cache c(1 << 20);
  std::vector<std::pair<journal::location, std::string>> written;
  for (int round = 0; round < 5; ++round) {
    std::vector<std::pair<journal::location, std::string>> now;
    for (int i = 0; i < 12; ++i) {
      std::string body =
          "r" + std::to_string(round) + "-" + std::to_string(i) + std::string(90, '.');
      now.emplace_back(write(*s, body), body);
    }
    s->flush();
    for (auto& [l, body] : now) {
      auto got = read(c, *s, {l});
      ASSERT_TRUE(got[0]) << body;
      EXPECT_EQ(got[0]->body, body);
      EXPECT_EQ(read(c, *s, {l})[0]->body, body);  // and from the cache
    }
    // Release everything of this round: its segments (but the active one) are deleted.
    for (auto& [l, body] : now) s->release(l.segment, l.offset, 0);
    s->flush();
    written.insert(written.end(), now.begin(), now.end());
  }
  EXPECT_LE(s->live_segments(), 1u);
  // No location was given twice, so no cached entry can stand for another record.
  std::set<std::pair<uint32_t, uint32_t>> places;
  for (auto& [l, body] : written) EXPECT_TRUE(places.insert({l.segment, l.offset}).second);
  EXPECT_GT(written.back().first.segment, 5u);
}

TEST_F(ReadCacheTest, AnEntryIsServedOnlyForTheRecordItWasReadAs) {
  // A location asked with another length than the record cached there (a record the cache did
  // not see) is not served from the cache: the store is read.
  auto s = open();
  auto a = write(*s, "one");
  read_cache c;
  ASSERT_TRUE(read(c, *s, {a})[0]);
  journal::location wrong = a;
  wrong.length += 1;
  auto got = read(c, *s, {wrong});  // the store reads a length that frames nothing: unreadable
  EXPECT_FALSE(got[0]);
  EXPECT_EQ(c.stats().hits, 0u);
  EXPECT_EQ(read(c, *s, {a})[0]->body, "one");
}

TEST_F(ReadCacheTest, AFanoutMessagePagedByManyQueuesIsReadOnce) {
  auto s = open();
  v.set_page_threshold(4);
  auto target = std::make_shared<nobody>();
  v.open_channel(1, 7, target);
  ASSERT_FALSE(v.declare_exchange({"fan", "fanout", false}, false));
  const int queues = 10, messages = 60;
  for (int q = 0; q < queues; ++q) {
    queue_declare_request r;
    r.name = "q" + std::to_string(q);
    r.connection_id = 7;
    ASSERT_TRUE(std::holds_alternative<queue_declare_ok>(v.declare_queue(r)));
    ASSERT_FALSE(v.bind("fan", std::get<dest_id>(v.queue_dest(r.name, 7)), "", {}));
  }
  for (int i = 0; i < messages; ++i) {
    auto m = std::make_shared<message>();
    m->exchange = "fan";
    m->body = "m" + std::to_string(i) + std::string(300, '-');
    ASSERT_TRUE(std::holds_alternative<publish_outcome>(v.publish(std::move(m), 0, nullptr)));
  }
  ASSERT_EQ(v.inspect_queue("q0")->paged_count(), size_t(messages - 4));
  s->flush();
  // Each queue drained in turn (the worst case for sharing: nothing of q0's is still in use
  // when q1 reads), every message in order and whole.
  for (int q = 0; q < queues; ++q) {
    for (int i = 0; i < messages; ++i) {
      auto r = v.get(1, "q" + std::to_string(q), true, 7);
      auto* ok = std::get_if<get_ok>(&r);
      ASSERT_TRUE(ok) << q << " " << i;
      ASSERT_EQ(ok->msg->body, "m" + std::to_string(i) + std::string(300, '-'));
    }
  }
  const auto& st = v.paging_reads().stats();
  EXPECT_EQ(st.misses, size_t(messages - 4));  // once per message, not once per queue
  EXPECT_EQ(st.hits + st.seen_hits, size_t((queues - 1) * (messages - 4)));
  s->flush();
  EXPECT_LE(s->live_segments(), 1u);
}

}  // namespace
}  // namespace warren::store
