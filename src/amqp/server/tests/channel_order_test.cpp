// A channel's operations reach its vhost in the order the client sent them, also when the channel
// lives on the vhost's home worker (where they run inline rather than through the mailbox).
#include <gtest/gtest.h>

#include "amqp/server/tests/test_server.hpp"

namespace warren::amqp::server::testing {
namespace {

using namespace std::chrono_literals;

TEST(ChannelOrder, AConsumePipelinedAfterChannelOpenFindsTheChannel) {
  test_server server;  // one worker: every channel is on the vhost's home worker
  test_client c(server.port());
  ASSERT_TRUE(c.handshake(false));
  protocol::queue_declare d;
  d.queue = "q";
  c.send(1, d);
  ASSERT_TRUE(c.expect<protocol::queue_declare_ok>());

  // channel.open and basic.consume without waiting for open-ok, read by the broker in one go.
  server.stall(300ms);
  c.send(2, protocol::channel_open{});
  protocol::basic_consume consume;
  consume.queue = "q";
  consume.consumer_tag = "ctag";
  c.send(2, consume);
  ASSERT_TRUE(c.expect<protocol::channel_open_ok>());
  auto f = c.next();
  ASSERT_TRUE(f);
  auto m = f->decoded();
  ASSERT_TRUE(m);
  if (auto* close = std::get_if<protocol::channel_close>(&*m))
    FAIL() << "channel closed: " << close->reply_code << " " << close->reply_text;
  ASSERT_TRUE(std::holds_alternative<protocol::basic_consume_ok>(*m));
  EXPECT_EQ(std::get<protocol::basic_consume_ok>(*m).consumer_tag, "ctag");
}

}  // namespace
}  // namespace warren::amqp::server::testing
