// Alarms reaching AMQP connections through the alarm board, as the resource monitor drives them:
// the reason texts, connections opened during an alarm, two alarms at once, and a blocked
// publisher that is not dropped for the heartbeats it cannot send.
#include <gtest/gtest.h>

#include "amqp/server/tests/test_server.hpp"

namespace warren::amqp::server::testing {
namespace {

using namespace std::chrono_literals;
using alarm::alarm_set;
using protocol::basic_return;

TEST(AlarmBoard, ReasonsAreRabbitMQs) {
  EXPECT_EQ(blocked_reason({true, false}), "low on memory");
  EXPECT_EQ(blocked_reason({false, true}), "low on disk");
  EXPECT_EQ(blocked_reason({true, true}), "low on memory & disk");
  EXPECT_EQ(blocked_reason({}), "");
}

TEST(AlarmBoard, OpenConnectionsAreBlockedAndUnblocked) {
  test_server server;
  test_client c(server.port());
  ASSERT_TRUE(c.handshake(true));
  server.set_alarms({true, false});
  auto b = c.expect<protocol::connection_blocked>();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->reason, "low on memory");
  server.set_alarms({});
  EXPECT_TRUE(c.expect<protocol::connection_unblocked>());
}

TEST(AlarmBoard, ConnectionOpenedDuringAnAlarmStartsBlocked) {
  test_server server;
  server.set_alarms({false, true});
  test_client c(server.port());
  ASSERT_TRUE(c.open_connection(true));
  c.send(1, protocol::channel_open{});
  ASSERT_TRUE(c.expect<protocol::channel_open_ok>());  // no connection.blocked before it
  // The first publish is read (it is what tells a publisher from a consumer) and brings
  // connection.blocked, as in RabbitMQ; later publishes are not read.
  c.publish(1, "nowhere", "one", true);
  auto b = c.expect<protocol::connection_blocked>();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->reason, "low on disk");
  ASSERT_TRUE(c.expect<basic_return>());
  ASSERT_TRUE(c.next());
  ASSERT_TRUE(c.next());
  c.publish(1, "nowhere", "two", true);
  EXPECT_FALSE(c.next(400ms));
  server.set_alarms({});
  EXPECT_TRUE(c.expect<protocol::connection_unblocked>());
  EXPECT_TRUE(c.expect<basic_return>());
}

TEST(AlarmBoard, ClientNeverToldIsNotToldUnblocked) {
  test_server server;
  server.set_alarms({true, false});
  test_client c(server.port());
  ASSERT_TRUE(c.handshake(true));
  server.set_alarms({});  // blocked since open, never published: nothing to take back
  c.send(1, protocol::channel_flow{true});
  EXPECT_TRUE(c.expect<protocol::channel_flow_ok>());
}

TEST(AlarmBoard, AlarmOnAndOffBeforeOpenLeavesItUnblocked) {
  test_server server;
  server.set_alarms({true, false});
  test_client c(server.port());
  server.set_alarms({});
  ASSERT_TRUE(c.handshake(true));
  c.publish(1, "nowhere", "x", true);
  EXPECT_TRUE(c.expect<basic_return>());  // no connection.blocked came first
}

TEST(AlarmBoard, UnblockedOnlyWhenNoAlarmIsLeft) {
  test_server server;
  test_client c(server.port());
  ASSERT_TRUE(c.handshake(true));
  c.publish(1, "nowhere", "first", true);
  ASSERT_TRUE(c.expect<basic_return>());
  ASSERT_TRUE(c.next());
  ASSERT_TRUE(c.next());

  server.set_alarms({true, false});
  auto b = c.expect<protocol::connection_blocked>();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->reason, "low on memory");
  server.set_alarms({true, true});  // RabbitMQ sends no second connection.blocked
  server.set_alarms({false, true});
  c.publish(1, "nowhere", "second", true);
  EXPECT_FALSE(c.next(400ms));  // neither unblocked nor the return: still blocked by the disk
  server.set_alarms({});
  EXPECT_TRUE(c.expect<protocol::connection_unblocked>());
  EXPECT_TRUE(c.expect<basic_return>());
}

TEST(AlarmBoard, BlockedPublisherIsNotDroppedForMissedHeartbeats) {
  test_server server;
  test_client c(server.port());
  ASSERT_TRUE(c.handshake(true, 1));  // 1 s heartbeats; this client sends none
  c.publish(1, "nowhere", "first", true);
  ASSERT_TRUE(c.expect<basic_return>());
  ASSERT_TRUE(c.next());
  ASSERT_TRUE(c.next());
  server.set_alarms({true, false});
  ASSERT_TRUE(c.expect<protocol::connection_blocked>());
  // Two silent intervals would drop a client that is being read; this one is not read.
  std::this_thread::sleep_for(3s);
  server.set_alarms({});
  EXPECT_TRUE(c.expect<protocol::connection_unblocked>());
}

}  // namespace
}  // namespace warren::amqp::server::testing
