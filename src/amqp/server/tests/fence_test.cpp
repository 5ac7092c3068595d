// A node that fences itself (a cluster node without its lease, docs/cluster.md) closes its open
// AMQP connections with 320 and the reason, and refuses new ones at connection.open the same way.
// A connection still in its handshake when the fence comes is refused with the reason too, not
// dropped without a word.
#include <gtest/gtest.h>

#include "amqp/server/tests/test_server.hpp"
#include "common/node_fence.hpp"

namespace warren::amqp::server::testing {
namespace {

constexpr std::string_view why = "node 'n1' of cluster 'c' is fenced: lease not renewed (test)";

TEST(Fence, OpenConnectionsCloseAndOnesInTheirHandshakeAreRefusedWithTheReason) {
  common::node_fence fence;
  test_server server(1, &fence);
  test_client open(server.port());
  ASSERT_TRUE(open.handshake(false));
  test_client shaking(server.port());
  ASSERT_TRUE(shaking.tune());

  // What the cluster does when the lease is lost: the fence first, then each worker's clients.
  fence.set(true, std::string(why));
  size_t closed = 0;
  server.for_each_amqp([&](amqp_connection& a) {
    if (a.fence(why)) ++closed;
  });
  EXPECT_EQ(closed, 1u);

  auto c = open.expect<protocol::connection_close>();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->reply_code, 320);
  EXPECT_NE(c->reply_text.find(why), std::string::npos) << c->reply_text;

  protocol::connection_open o;
  o.virtual_host = "/";
  shaking.send(0, o);
  auto r = shaking.expect<protocol::connection_close>();
  ASSERT_TRUE(r) << "the connection in its handshake was dropped without a close";
  EXPECT_EQ(r->reply_code, 320);
  EXPECT_NE(r->reply_text.find(why), std::string::npos) << r->reply_text;

  // And a new one is refused the same way.
  test_client later(server.port());
  EXPECT_FALSE(later.open_connection(false));
}

}  // namespace
}  // namespace warren::amqp::server::testing
