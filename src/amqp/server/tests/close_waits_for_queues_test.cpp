// A client's channel.close and connection.close are answered once the workers holding the
// channel's consumers have dropped them, as RabbitMQ's channel waits for its queues: an
// auto-delete queue the consumers held is gone, and the vhost knows it, when close-ok arrives, so
// a client that declares it again at once gets a new queue rather than the old one about to go.
// A channel that never asked for deliveries has nothing to wait for and closes at once.
#include <gtest/gtest.h>

#include "amqp/server/tests/test_server.hpp"

namespace warren::amqp::server::testing {
namespace {

using namespace std::chrono_literals;

// A connection on another worker than the queue `queue`'s, consuming from it on channel 1. The
// kernel spreads connections over the workers' acceptors: a few tries find one.
std::unique_ptr<test_client> consumer_away_from_queue(test_server& server, size_t& accepted,
                                                      const std::string& queue) {
  for (int attempt = 0; attempt < 64; ++attempt) {
    auto c = std::make_unique<test_client>(server.port());
    auto worker = server.accepted_on(accepted++);
    if (!worker || !c->handshake(false)) return nullptr;
    if (*worker == server.queue_worker(queue)) continue;
    protocol::basic_consume consume;
    consume.queue = queue;
    consume.consumer_tag = "ctag";
    c->send(1, consume);
    if (!c->expect<protocol::basic_consume_ok>()) return nullptr;
    return c;
  }
  return nullptr;
}

std::optional<uint16_t> passive_declare_code(test_server& server, size_t& accepted,
                                             const std::string& queue) {
  test_client c(server.port());
  ++accepted;
  if (!c.handshake(false)) return std::nullopt;
  protocol::queue_declare d;
  d.queue = queue;
  d.passive = true;
  c.send(1, d);
  auto f = c.next();
  if (!f) return std::nullopt;
  auto m = f->decoded();
  if (!m) return std::nullopt;
  if (std::holds_alternative<protocol::queue_declare_ok>(*m)) return 200;
  if (auto* close = std::get_if<protocol::channel_close>(&*m)) return close->reply_code;
  return std::nullopt;
}

void declare_auto_delete(test_server& server, size_t& accepted, const std::string& queue) {
  test_client c(server.port());
  ++accepted;
  ASSERT_TRUE(c.handshake(false));
  protocol::queue_declare d;
  d.queue = queue;
  d.auto_delete = true;
  c.send(1, d);
  ASSERT_TRUE(c.expect<protocol::queue_declare_ok>());
}

enum class closing { channel, connection };

void close_ok_waits_for_the_queue(closing how) {
  test_server server(2);
  size_t accepted = 0;
  const std::string queue = "ad";
  declare_auto_delete(server, accepted, queue);
  auto c = consumer_away_from_queue(server, accepted, queue);
  ASSERT_TRUE(c) << "no connection landed on the other worker";

  // The queue's worker is busy for a while: the close reaches it only afterwards.
  server.stall(400ms, server.queue_worker(queue));
  if (how == closing::channel)
    c->send(1, protocol::channel_close{200, "bye", 0, 0});
  else
    c->send(0, protocol::connection_close{200, "bye", 0, 0});
  EXPECT_FALSE(c->next(200ms)) << "close-ok before the queue's worker dropped the consumer";
  if (how == closing::channel)
    EXPECT_TRUE(c->expect<protocol::channel_close_ok>());
  else
    EXPECT_TRUE(c->expect<protocol::connection_close_ok>());

  // Gone, and known to be gone: another client's declaration right after the close-ok says 404.
  EXPECT_EQ(passive_declare_code(server, accepted, queue), uint16_t(404));
}

TEST(CloseWaitsForQueues, ChannelCloseOkComesOnceTheQueuesDroppedItsConsumers) {
  close_ok_waits_for_the_queue(closing::channel);
}

TEST(CloseWaitsForQueues, ConnectionCloseOkComesOnceTheQueuesDroppedItsConsumers) {
  close_ok_waits_for_the_queue(closing::connection);
}

// A channel that never sent basic.consume or basic.get holds nothing on any worker: its close
// (and its connection's) is answered at once, even while another worker is busy.
void close_ok_at_once_without_deliveries(closing how) {
  test_server server(2);
  test_client c(server.port());
  auto worker = server.accepted_on(0);
  ASSERT_TRUE(worker);
  ASSERT_TRUE(c.handshake(false));
  protocol::queue_declare d;
  d.queue = "declared";
  c.send(1, d);
  ASSERT_TRUE(c.expect<protocol::queue_declare_ok>());
  server.stall(600ms, 1 - *worker);
  if (how == closing::channel)
    c.send(1, protocol::channel_close{200, "bye", 0, 0});
  else
    c.send(0, protocol::connection_close{200, "bye", 0, 0});
  auto f = c.next(300ms);
  ASSERT_TRUE(f) << "close-ok waited for the other worker";
  auto m = f->decoded();
  ASSERT_TRUE(m);
  if (how == closing::channel)
    EXPECT_TRUE(std::holds_alternative<protocol::channel_close_ok>(*m));
  else
    EXPECT_TRUE(std::holds_alternative<protocol::connection_close_ok>(*m));
}

TEST(CloseWaitsForQueues, AChannelThatNeverConsumedClosesWithoutWaiting) {
  close_ok_at_once_without_deliveries(closing::channel);
}

TEST(CloseWaitsForQueues, AConnectionWhoseChannelsNeverConsumedClosesWithoutWaiting) {
  close_ok_at_once_without_deliveries(closing::connection);
}

// The channel number is free again after close-ok: the client opens it at once and uses it.
TEST(CloseWaitsForQueues, AClosedChannelsNumberIsUsableRightAfterCloseOk) {
  test_server server(2);
  test_client c(server.port());
  ASSERT_TRUE(c.handshake(false));
  c.send(1, protocol::channel_close{200, "bye", 0, 0});
  ASSERT_TRUE(c.expect<protocol::channel_close_ok>());
  c.send(1, protocol::channel_open{});
  ASSERT_TRUE(c.expect<protocol::channel_open_ok>());
  protocol::queue_declare d;
  d.queue = "again";
  c.send(1, d);
  EXPECT_TRUE(c.expect<protocol::queue_declare_ok>());
}

}  // namespace
}  // namespace warren::amqp::server::testing
