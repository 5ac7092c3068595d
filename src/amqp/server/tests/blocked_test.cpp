// connection.blocked / unblocked: what the memory and disk alarms will drive. A blocked
// connection that has published is told (if it announced the capability) and is no longer read;
// a connection that never published keeps being served.
#include <gtest/gtest.h>

#include "amqp/server/tests/test_server.hpp"

namespace warren::amqp::server::testing {
namespace {

using namespace std::chrono_literals;
using protocol::basic_return;

TEST(Blocked, PublisherIsToldAndNotReadUntilUnblocked) {
  test_server server;
  test_client c(server.port());
  ASSERT_TRUE(c.handshake(true));
  c.publish(1, "no-such-queue", "first", true);
  ASSERT_TRUE(c.expect<basic_return>());  // header and body follow
  ASSERT_TRUE(c.next());
  ASSERT_TRUE(c.next());

  server.for_each_amqp([](amqp_connection& a) { a.set_blocked(true, "low on memory"); });
  auto b = c.expect<protocol::connection_blocked>();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->reason, "low on memory");

  // While blocked, this publish is not read: no basic.return comes back.
  c.publish(1, "no-such-queue", "second", true);
  EXPECT_FALSE(c.next(400ms));

  server.for_each_amqp([](amqp_connection& a) { a.set_blocked(false, ""); });
  EXPECT_TRUE(c.expect<protocol::connection_unblocked>());
  auto ret = c.expect<basic_return>();
  ASSERT_TRUE(ret);
  EXPECT_EQ(ret->reply_code, 312);
}

TEST(Blocked, ClientWithoutCapabilityIsPausedSilently) {
  test_server server;
  test_client c(server.port());
  ASSERT_TRUE(c.handshake(false));
  c.publish(1, "q", "x", true);
  ASSERT_TRUE(c.expect<basic_return>());
  c.next();
  c.next();
  server.for_each_amqp([](amqp_connection& a) { a.set_blocked(true, "low on memory"); });
  c.publish(1, "q", "y", true);
  EXPECT_FALSE(c.next(400ms));  // neither a blocked frame nor the return
  server.for_each_amqp([](amqp_connection& a) { a.set_blocked(false, ""); });
  EXPECT_TRUE(c.expect<basic_return>());  // no unblocked frame either: straight to the return
}

TEST(Blocked, ConnectionThatNeverPublishedIsStillServed) {
  test_server server;
  test_client c(server.port());
  ASSERT_TRUE(c.handshake(true));
  server.for_each_amqp([](amqp_connection& a) { a.set_blocked(true, "disk"); });
  ASSERT_TRUE(c.expect<protocol::connection_blocked>());
  c.send(1, protocol::channel_flow{true});
  auto ok = c.expect<protocol::channel_flow_ok>();
  ASSERT_TRUE(ok);
  EXPECT_TRUE(ok->active);
}

}  // namespace
}  // namespace warren::amqp::server::testing
