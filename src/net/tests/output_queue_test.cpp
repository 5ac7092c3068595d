// The output queue without sockets: what gather() lists, consumed in pieces of every size, must
// be the stream in order (text with shared slices spliced in), and a shared slice is released
// exactly when its last byte is consumed.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "net/output_queue.hpp"

namespace warren::net {
namespace {

// Everything gather() lists from the front, concatenated.
std::string front(const output_queue& q, size_t max = 64, size_t max_bytes = SIZE_MAX) {
  boost::asio::const_buffer b[64];
  size_t k = q.gather(b, std::min<size_t>(max, 64), max_bytes);
  std::string s;
  for (size_t i = 0; i < k; ++i) s.append(static_cast<const char*>(b[i].data()), b[i].size());
  return s;
}

// Writes the whole queue in writes of at most `step` bytes with at most `max` buffers each,
// the way a socket taking part of each write would; returns what went out.
std::string drain(output_queue& q, size_t step, size_t max = 64) {
  std::string out;
  while (!q.empty()) {
    std::string f = front(q, max, step);
    EXPECT_FALSE(f.empty());
    if (f.empty()) break;
    out += f;
    q.consume(f.size());
  }
  return out;
}

std::shared_ptr<const std::string> body(size_t n, char first = 'a') {
  auto s = std::make_shared<std::string>(n, '\0');
  for (size_t i = 0; i < n; ++i) (*s)[i] = char(first + i % 23);
  return s;
}

TEST(OutputQueue, TextOnlyGoesOutInOrder) {
  output_queue q;
  EXPECT_TRUE(q.empty());
  q.text() += "hello ";
  q.text() += "world";
  EXPECT_EQ(q.size(), 11u);
  EXPECT_EQ(q.shared_bytes(), 0u);
  EXPECT_EQ(drain(q, 3), "hello world");
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.size(), 0u);
}

TEST(OutputQueue, SharedSliceSplicedBetweenTextEveryWriteSize) {
  auto b = body(1000);
  std::string expect;
  // Frames as AMQP writes them: a header, a slice of the body, an end octet; three frames.
  auto build = [&](output_queue& q) {
    expect.clear();
    q.text() += "METHOD";
    expect += "METHOD";
    for (size_t off = 0; off < b->size(); off += 400) {
      std::string_view part = std::string_view(*b).substr(off, 400);
      q.text() += "[h]";
      expect += "[h]";
      q.append_shared(b, part);
      expect += part;
      q.text() += "]";
      expect += "]";
    }
  };
  for (size_t step = 1; step <= 1100; step += (step < 20 ? 1 : 37)) {
    output_queue q;
    build(q);
    EXPECT_EQ(q.size(), expect.size());
    EXPECT_EQ(q.shared_bytes(), 1000u);
    EXPECT_EQ(drain(q, step), expect) << "step " << step;
    EXPECT_EQ(q.shared_bytes(), 0u);
  }
  // Few buffers per write: a write ending at a buffer boundary, not a byte count.
  for (size_t max = 1; max <= 4; ++max) {
    output_queue q;
    build(q);
    EXPECT_EQ(drain(q, SIZE_MAX, max), expect) << "max " << max;
  }
}

TEST(OutputQueue, WriteEndingInsideSharedBodyResumesThere) {
  auto b = body(100);
  output_queue q;
  q.text() += "H";
  q.append_shared(b, *b);
  q.text() += "E";
  q.consume(1 + 40);  // the header and 40 bytes of the body
  EXPECT_EQ(q.size(), 61u);
  EXPECT_EQ(q.shared_bytes(), 60u);
  EXPECT_EQ(front(q), b->substr(40) + "E");
  // Output added now goes after what is queued.
  q.text() += "NEXT";
  EXPECT_EQ(front(q), b->substr(40) + "ENEXT");
  q.consume(59);
  EXPECT_EQ(front(q), b->substr(99) + "ENEXT");
  q.consume(1);
  EXPECT_EQ(front(q), "ENEXT");
}

TEST(OutputQueue, BodyReleasedOnlyOnceWritten) {
  auto b = body(5000);
  std::weak_ptr<const std::string> watch = b;
  output_queue q;
  q.text() += "xx";
  q.append_shared(b, std::string_view(*b).substr(0, 2500));
  q.text() += "yy";
  q.append_shared(b, std::string_view(*b).substr(2500));
  q.text() += "zz";
  b.reset();
  EXPECT_FALSE(watch.expired());
  q.consume(2 + 2500 + 2 + 2499);
  EXPECT_FALSE(watch.expired()) << "one byte of the body is still to be written";
  q.consume(1);
  EXPECT_TRUE(watch.expired()) << "written: the queue must not hold the body any more";
  EXPECT_EQ(front(q), "zz");
  q.consume(2);
  EXPECT_TRUE(q.empty());
}

TEST(OutputQueue, ClearReleasesBodies) {
  auto b = body(100);
  std::weak_ptr<const std::string> watch = b;
  output_queue q;
  q.append_shared(std::move(b), std::string_view(*watch.lock()));
  q.text() += "t";
  q.consume(10);
  q.clear();
  EXPECT_TRUE(watch.expired());
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.capacity(), std::string().capacity());  // the string's inline room only
}

TEST(OutputQueue, ManySmallFramesAfterLargeBody) {
  auto b = body(256 * 1024);
  output_queue q;
  std::string expect;
  q.text() += "<";
  expect += "<";
  q.append_shared(b, *b);
  expect += *b;
  for (int i = 0; i < 5000; ++i) {
    std::string f = "frame" + std::to_string(i) + ";";
    q.text() += f;
    expect += f;
  }
  // Half the body first, then new small frames arrive while the rest waits.
  std::string out = front(q, 64, 100000);
  q.consume(out.size());
  for (int i = 0; i < 100; ++i) {
    std::string f = "late" + std::to_string(i) + ";";
    q.text() += f;
    expect += f;
  }
  out += drain(q, 7777);
  EXPECT_EQ(out, expect);
}

TEST(OutputQueue, AdjacentSplicesAndEmptySlices) {
  auto a = body(10, 'A'), b = body(10, 'a');
  output_queue q;
  q.append_shared(a, *a);
  q.append_shared(b, "");  // ignored
  q.append_shared(b, *b);
  q.text() += "!";
  EXPECT_EQ(q.size(), 21u);
  EXPECT_EQ(drain(q, 3), *a + *b + "!");
}

TEST(OutputQueue, LongStreamCompactsAndKeepsOrder) {
  // Thousands of splices and megabytes of text through one queue, consumed as they come: the
  // written front is dropped on the way (compaction) without changing the stream.
  auto b = body(300);
  output_queue q;
  std::string expect, out;
  for (int round = 0; round < 3000; ++round) {
    std::string t(100 + round % 50, char('0' + round % 10));
    q.text() += t;
    expect += t;
    q.append_shared(b, std::string_view(*b).substr(round % 7));
    expect += b->substr(round % 7);
    if (round % 3 == 0) {
      std::string f = front(q, 5, 1000 + round % 333);
      out += f;
      q.consume(f.size());
    }
  }
  out += drain(q, 4096);
  EXPECT_EQ(out, expect);
  q.release_if_large();
  EXPECT_LE(q.capacity(), 4096u + 16 * 64u);
}

TEST(OutputQueue, ReleasesCapacityAfterBurstOnly) {
  output_queue q;
  q.text().assign(1 << 20, 'x');
  q.release_if_large();
  EXPECT_GE(q.capacity(), 1u << 20) << "not empty: kept";
  q.consume(1 << 20);
  q.release_if_large();
  EXPECT_LE(q.capacity(), 4096u);
}

TEST(OutputQueue, ReleaseAllGivesBackASmallBufferOnceEmpty) {
  output_queue q;
  q.text().assign(500, 'x');  // a connection.start, say
  q.release_all();
  EXPECT_GE(q.capacity(), 500u) << "not empty: kept";
  q.consume(500);
  q.release_if_large();
  EXPECT_GE(q.capacity(), 500u) << "small: release_if_large keeps it";
  q.release_all();
  EXPECT_EQ(q.capacity(), std::string().capacity());
}

}  // namespace
}  // namespace warren::net
