#include "amqp/protocol/frame_buffer.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace warren::amqp::protocol {
namespace {

// Feeds `bytes` in reads of `step` bytes; returns each frame's payload size as drained.
std::vector<size_t> feed(frame_buffer& b, const std::string& bytes, size_t step) {
  std::vector<size_t> sizes;
  for (size_t at = 0; at < bytes.size();) {
    auto space = b.space();  // a read takes at most what there is room for
    size_t n = std::min({step, bytes.size() - at, space.size()});
    std::copy_n(bytes.data() + at, n, space.data());
    at += n;
    b.commit(n);
    auto err = b.drain([&](const frame_view& f) {
      sizes.push_back(f.payload.size());
      return true;
    });
    EXPECT_FALSE(err) << *err;
  }
  return sizes;
}

TEST(FrameBuffer, FramesSplitAcrossReadsComeOutWhole) {
  std::string out;
  write_body_frames(out, 1, std::string(100, 'a'), 0);
  write_heartbeat_frame(out);
  write_body_frames(out, 1, std::string(3, 'b'), 0);
  for (size_t step : {1u, 2u, 7u, 50u, 1000u}) {
    frame_buffer b(64);
    EXPECT_EQ(feed(b, out, step), (std::vector<size_t>{100, 0, 3})) << "step " << step;
  }
}

TEST(FrameBuffer, GrowsForAFrameLargerThanItsChunk) {
  std::string out;
  write_body_frames(out, 1, std::string(10'000, 'x'), 0);
  frame_buffer b(64);
  EXPECT_EQ(feed(b, out, 16), std::vector<size_t>{10'000});
}

TEST(FrameBuffer, StopsWhenTheHandlerSaysSoAndKeepsTheRest) {
  std::string out;
  write_heartbeat_frame(out);
  write_heartbeat_frame(out);
  frame_buffer b;
  auto space = b.space();
  std::copy(out.begin(), out.end(), space.data());
  b.commit(out.size());
  int seen = 0;
  EXPECT_FALSE(b.drain([&](const frame_view&) { return ++seen < 1; }));
  EXPECT_EQ(seen, 1);
  EXPECT_FALSE(b.drain([&](const frame_view&) { return ++seen > 0; }));
  EXPECT_EQ(seen, 2);
}

TEST(FrameBuffer, AFramingErrorIsReported) {
  std::string out;
  write_heartbeat_frame(out);
  out.back() = 0x00;  // the frame-end octet must be 0xCE
  frame_buffer b;
  auto space = b.space();
  std::copy(out.begin(), out.end(), space.data());
  b.commit(out.size());
  auto err = b.drain([](const frame_view&) { return true; });
  ASSERT_TRUE(err);
  EXPECT_FALSE(err->empty());
}

}  // namespace
}  // namespace warren::amqp::protocol
