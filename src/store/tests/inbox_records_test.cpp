// The store's inbox records (message_store_inbox.cpp): written and read back by location, given
// back by recovery in order and only while unexpired, their segments dropped oldest first once
// expired (and not while a queue's message still needs one), a torn last record cut off, and
// their tickets synced like a message's.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "broker/vhost.hpp"
#include "store/message_store.hpp"

namespace warren::store {
namespace {

namespace fs = std::filesystem;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct recovered {
  inbox_kind kind;
  int64_t expires;
  std::string body;
  inbox_location at;
};

class InboxRecordsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("warren-inbox-records-test-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  // A new vhost and store on `dir`: what recovery gives back.
  std::vector<recovered> reopen(store_options o = {.fsync = false}) {
    store.reset();
    vhost = std::make_unique<broker::vhost>("/", 0);
    store = std::make_unique<message_store>(dir, o);
    last_stats = store->recover(*vhost);
    std::vector<recovered> out;
    store->recover_inbox(
        now_ms(), [&](inbox_kind k, int64_t e, std::string_view b, const inbox_location& at) {
          out.push_back({k, e, std::string(b), at});
        });
    return out;
  }
  size_t seg_files() {
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(dir / "msgs")) n += e.path().extension() == ".seg";
    return n;
  }
  fs::path dir;
  std::unique_ptr<broker::vhost> vhost;
  std::unique_ptr<message_store> store;
  recovery_stats last_stats;
};

TEST_F(InboxRecordsTest, WrittenRecordsAreReadBackByLocationAndRecoveredInOrder) {
  reopen();
  int64_t later = now_ms() + 60'000;
  std::vector<inbox_location> at(3);
  store->write_inbox(inbox_event, later, "first", at[0]);
  store->write_inbox(room_event, later, "second", at[1]);
  uint64_t t = store->write_inbox(inbox_read, later, "third", at[2]);
  EXPECT_GT(t, 0u);
  inbox_kind k;
  int64_t e;
  std::string body;
  ASSERT_TRUE(store->read_inbox(at[1], k, e, body));  // still pending: read after a flush
  EXPECT_EQ(k, room_event);
  EXPECT_EQ(e, later);
  EXPECT_EQ(body, "second");
  EXPECT_FALSE(store->read_inbox(inbox_location{}, k, e, body));
  auto got = reopen();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].body, "first");
  EXPECT_EQ(got[0].kind, inbox_event);
  EXPECT_EQ(got[2].kind, inbox_read);
  EXPECT_EQ(got[2].at.offset, at[2].offset);
  EXPECT_EQ(got[2].at.length, at[2].length);
  ASSERT_TRUE(store->read_inbox(got[0].at, k, e, body));
  EXPECT_EQ(body, "first");
}

TEST_F(InboxRecordsTest, ExpiredRecordsAreNotRecoveredAndTheirSegmentsGoOldestFirst) {
  store_options o{.segment_bytes = 1000, .fsync = false};
  reopen(o);
  int64_t soon = now_ms() + 300, later = now_ms() + 60'000;
  inbox_location at;
  // A long-lived segment first, then short-lived ones after it: those wait for it.
  store->write_inbox(inbox_event, later, std::string(1000, 'L'), at);  // one record a segment
  for (int i = 0; i < 5; ++i) store->write_inbox(inbox_event, soon, std::string(1000, 's'), at);
  store->flush();
  EXPECT_EQ(store->inbox_segments(), 6u);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  store->expire_inbox(now_ms());
  EXPECT_EQ(store->inbox_segments(), 6u);  // held back by the first
  store->expire_inbox(later + 1);
  store->flush();
  EXPECT_EQ(store->inbox_segments(), 0u);
  EXPECT_LE(seg_files(), 1u);
  // Recovery skips what expired.
  store->write_inbox(inbox_event, soon - 1000, "gone", at);
  store->write_inbox(inbox_event, later, "kept", at);
  auto got = reopen(o);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].body, "kept");
}

TEST_F(InboxRecordsTest, AQueuesMessageKeepsAnExpiredInboxSegment) {
  store_options o{.segment_bytes = 1000, .fsync = false};
  reopen(o);
  broker::queue_declare_request q;
  q.name = "q";
  q.durable = true;
  ASSERT_TRUE(std::holds_alternative<broker::queue_declare_ok>(vhost->declare_queue(q)));
  inbox_location at;
  store->write_inbox(inbox_event, now_ms() - 1, "expired", at);
  auto m = std::make_shared<broker::message>();
  m->routing_key = "q";
  m->properties.delivery_mode = 2;
  m->body = "needed";
  uint64_t ticket = 0;
  auto r = vhost->publish(m, 0, &ticket);
  ASSERT_TRUE(std::holds_alternative<broker::publish_outcome>(r));
  EXPECT_GT(ticket, 0u);
  EXPECT_EQ(vhost->inspect_queue("q")->message_count(), 1u);
  store->write_inbox(inbox_event, now_ms() - 1, std::string(1000, 'x'), at);
  store->expire_inbox(now_ms());
  store->flush();
  EXPECT_EQ(store->inbox_segments(), 1u);  // expired, but the message is in the same segment
  auto got = reopen(o);
  EXPECT_TRUE(got.empty());
  EXPECT_EQ(last_stats.messages, 1u) << last_stats.segments << " segments";
  EXPECT_EQ(vhost->inspect_queue("q")->message_count(), 1u);  // its segment stayed for the message
}

TEST_F(InboxRecordsTest, ATornLastRecordIsCutAndTheRestKept) {
  reopen();
  int64_t later = now_ms() + 60'000;
  inbox_location at;
  store->write_inbox(inbox_event, later, "whole", at);
  store->write_inbox(inbox_event, later, std::string(200, 't'), at);
  store.reset();
  fs::path seg = dir / "msgs" / "00000001.seg";
  fs::resize_file(seg, fs::file_size(seg) - 50);
  auto got = reopen();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].body, "whole");
}

TEST_F(InboxRecordsTest, TheirTicketIsSyncedAfterAnFsync) {
  reopen(store_options{});
  inbox_location at;
  uint64_t t = store->write_inbox(inbox_event, now_ms() + 60'000, "x", at);
  std::promise<void> done;
  store->when_synced(t, [&] { done.set_value(); });
  EXPECT_EQ(done.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
}

}  // namespace
}  // namespace warren::store
