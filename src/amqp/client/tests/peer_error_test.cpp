// The peer's error read back from a closed connection's text (amqp::client::peer_error): what a
// node relays to its client as its own when the queue's node refused a call.
#include <gtest/gtest.h>

#include "amqp/client/connection.hpp"

namespace warren::amqp::client {
namespace {

TEST(PeerError, ChannelAndConnectionErrorsOfThePeer) {
  auto e = peer_error("channel closed by the peer: 404 NOT_FOUND - no queue 'q' in vhost '/'");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, 404);
  EXPECT_EQ(e->text, "no queue 'q' in vhost '/'");
  e = peer_error(
      "channel closed by the peer: 403 ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, 403);
  EXPECT_EQ(e->text, "queue 'q' in vhost '/' in exclusive use");
  e = peer_error("connection closed by the peer: 530 NOT_ALLOWED - vhost x not found");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, 530);
  EXPECT_EQ(e->text, "vhost x not found");
  // A text without the name of the code is kept whole.
  e = peer_error("channel closed by the peer: 406 odd");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->text, "odd");
}

TEST(PeerError, NotAnErrorOfThePeer) {
  // A forced close (the node fenced or stopping) is the node going, not a refusal.
  EXPECT_FALSE(peer_error("connection closed by the peer: 320 CONNECTION_FORCED - shutdown"));
  EXPECT_FALSE(peer_error("connection closed by the peer: 200 Goodbye"));
  EXPECT_FALSE(peer_error("the peer closed the socket"));
  EXPECT_FALSE(peer_error("cannot connect to amqp://127.0.0.1:1/: Connection refused"));
  EXPECT_FALSE(peer_error(""));
  EXPECT_FALSE(peer_error("channel closed by the peer: 404"));  // no text at all
  EXPECT_FALSE(peer_error("channel closed by the peer: x404 y"));
}

}  // namespace
}  // namespace warren::amqp::client
