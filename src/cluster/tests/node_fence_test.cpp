// The node fence's lease deadline, as the workers read it (docs/cluster.md, "Fencing").
#include "common/node_fence.hpp"

#include <gtest/gtest.h>

namespace warren::common {
namespace {

using clock = node_fence::clock;
using std::chrono::seconds;

TEST(node_fence, a_single_node_never_lapses) {
  node_fence f;
  EXPECT_FALSE(f.lapsed(clock::now() + std::chrono::hours(24 * 365)));
  EXPECT_FALSE(f.refuses(clock::now()));
}

TEST(node_fence, input_read_after_the_deadline_is_refused_with_the_lapse_reason) {
  node_fence f;
  f.set_lapse_reason("lease not renewed before its deadline");
  auto now = clock::now();
  f.serve_until(now + seconds(2));
  EXPECT_FALSE(f.lapsed(now));
  EXPECT_FALSE(f.refuses(now + seconds(1)));
  EXPECT_TRUE(f.lapsed(now + seconds(2)));
  EXPECT_TRUE(f.refuses(now + seconds(3)));
  EXPECT_EQ(f.refusal(), "lease not renewed before its deadline");
  // A renewal moves the deadline on.
  f.serve_until(now + seconds(5));
  EXPECT_FALSE(f.refuses(now + seconds(3)));
}

TEST(node_fence, fenced_refuses_at_any_time_with_the_fence_reason) {
  node_fence f;
  f.set_lapse_reason("lapsed");
  f.set(true, "node 'a' is fenced: etcd unreachable");
  EXPECT_TRUE(f.refuses(clock::now()));
  EXPECT_EQ(f.refusal(), "node 'a' is fenced: etcd unreachable");
  f.set(false, {});
  EXPECT_FALSE(f.refuses(clock::now()));
}

}  // namespace
}  // namespace warren::common
