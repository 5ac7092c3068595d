// A channel's permission checks follow the user store: basic.publish remembers the last exchange
// it allowed, and forgets it when the store changes, so a revoked permission refuses the very
// next publish on a channel that was publishing.
#include <gtest/gtest.h>

#include "amqp/server/tests/test_server.hpp"

namespace warren::amqp::server::testing {
namespace {

void publish_to(test_client& c, uint16_t ch, std::string exchange, std::string_view rk) {
  protocol::basic_publish p;
  p.exchange = std::move(exchange);
  p.routing_key = std::string(rk);
  std::string out;
  protocol::write_method(out, ch, p);
  protocol::content_header h;
  h.body_size = 1;
  protocol::write_content_header_frame(out, ch, h);
  protocol::write_body_frames(out, ch, "m", 131072);
  c.send_raw(out);
}

void set_write(test_server& s, std::string pattern) {
  s.users().update([&](auth::user_map& m) {
    auth::user u = *m.at("guest");
    u.permissions["/"].write = std::move(pattern);
    m["guest"] = std::make_shared<const auth::user>(std::move(u));
  });
}

// Confirm mode on `ch` (opened here unless it is 1).
void confirming(test_client& c, uint16_t ch) {
  if (ch != 1) {
    c.send(ch, protocol::channel_open{});
    ASSERT_TRUE(c.expect<protocol::channel_open_ok>());
  }
  c.send(ch, protocol::confirm_select{});
  ASSERT_TRUE(c.expect<protocol::confirm_select_ok>());
}

std::string refusal(test_client& c) {
  auto close = c.expect<protocol::channel_close>();
  if (!close) return "no channel.close";
  return std::to_string(close->reply_code) + " " + close->reply_text;
}

const std::string refused_default =
    "403 ACCESS_REFUSED - write access to exchange 'amq.default' in vhost '/' refused for user "
    "'guest'";

TEST(PermissionCache, ARevokedWriteRefusesTheNextPublishOnTheSameChannel) {
  test_server server;
  test_client c(server.port());
  ASSERT_TRUE(c.handshake(false));
  confirming(c, 1);
  publish_to(c, 1, "", "q");
  ASSERT_TRUE(c.expect<protocol::basic_ack>());
  publish_to(c, 1, "", "q");  // allowed from the channel's memory
  ASSERT_TRUE(c.expect<protocol::basic_ack>());
  set_write(server, "^$");
  publish_to(c, 1, "", "q");
  EXPECT_EQ(refusal(c), refused_default);
}

TEST(PermissionCache, AnUnrelatedChangeDoesNotRefuse) {
  test_server server;
  test_client c(server.port());
  ASSERT_TRUE(c.handshake(false));
  confirming(c, 1);
  publish_to(c, 1, "", "q");
  ASSERT_TRUE(c.expect<protocol::basic_ack>());
  // Another user: the generation moves, the channel checks again and is still allowed.
  server.users().add_user(auth::user{"other", auth::hash_password("pw"), {}, {}});
  publish_to(c, 1, "", "q");
  EXPECT_TRUE(c.expect<protocol::basic_ack>());
}

TEST(PermissionCache, OnlyTheLastExchangeAllowedIsRemembered) {
  test_server server;
  set_write(server, "^amq\\.default$");
  test_client c(server.port());
  ASSERT_TRUE(c.handshake(false));
  confirming(c, 1);
  publish_to(c, 1, "", "q");
  ASSERT_TRUE(c.expect<protocol::basic_ack>());
  publish_to(c, 1, "amq.direct", "q");
  EXPECT_EQ(refusal(c),
            "403 ACCESS_REFUSED - write access to exchange 'amq.direct' in vhost '/' refused for "
            "user 'guest'");
}

TEST(PermissionCache, EachChannelChecksForItself) {
  test_server server;
  test_client c(server.port());
  ASSERT_TRUE(c.handshake(false));
  confirming(c, 1);
  publish_to(c, 1, "", "q");
  ASSERT_TRUE(c.expect<protocol::basic_ack>());
  set_write(server, "^$");
  confirming(c, 2);
  publish_to(c, 2, "", "q");
  EXPECT_EQ(refusal(c), refused_default);
  // Granted again: channel 1, which remembered an older generation, publishes.
  set_write(server, ".*");
  publish_to(c, 1, "", "q");
  EXPECT_TRUE(c.expect<protocol::basic_ack>());
}

}  // namespace
}  // namespace warren::amqp::server::testing
