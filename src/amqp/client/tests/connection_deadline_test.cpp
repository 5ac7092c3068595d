// The client's deadline for connecting and the handshake (uri::connection_timeout): a peer that
// accepts and never answers, as a node cut off mid-handshake or paused does, must end the
// connection within the deadline the owner chose (links between nodes: the lease's TTL, at
// least 5 s), not after the default.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <optional>
#include <string>

#include "amqp/client/connection.hpp"

namespace warren::amqp::client {
namespace {

using boost::asio::ip::tcp;

TEST(ConnectionDeadline, APeerThatNeverAnswersIsGivenUpWithinTheConnectionTimeout) {
  boost::asio::io_context io;
  tcp::acceptor silent(io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket accepted(io);
  silent.async_accept(accepted, [](const boost::system::error_code&) {});  // and never a byte

  uri u;
  u.host = "127.0.0.1";
  u.port = silent.local_endpoint().port();
  u.safe = "silent peer";
  u.connection_timeout = std::chrono::milliseconds(300);
  std::optional<std::string> closed;
  bool ready = false;
  events ev;
  ev.ready = [&] { ready = true; };
  ev.closed = [&](const std::string& why) { closed = why; };
  auto c = std::make_shared<connection>(io, u, "deadline test", std::move(ev));
  auto started = std::chrono::steady_clock::now();
  c->start();
  while (!closed && std::chrono::steady_clock::now() - started < std::chrono::seconds(5))
    io.run_for(std::chrono::milliseconds(50));
  auto took = std::chrono::steady_clock::now() - started;

  ASSERT_TRUE(closed) << "not given up within 5 s";
  EXPECT_FALSE(ready);
  EXPECT_EQ(*closed, "no connection and handshake within 300 ms");
  EXPECT_GE(took, std::chrono::milliseconds(250));
  EXPECT_LT(took, std::chrono::seconds(2));
  EXPECT_TRUE(accepted.is_open());  // it did connect: the handshake is what never came
}

}  // namespace
}  // namespace warren::amqp::client
