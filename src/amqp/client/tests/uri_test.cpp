#include "amqp/client/uri.hpp"

#include <gtest/gtest.h>

namespace warren::amqp::client {
namespace {

uri ok(std::string_view text) {
  auto r = parse_uri(text);
  EXPECT_TRUE(std::holds_alternative<uri>(r)) << text;
  return std::holds_alternative<uri>(r) ? std::get<uri>(r) : uri{};
}

std::string bad(std::string_view text) {
  auto r = parse_uri(text);
  EXPECT_TRUE(std::holds_alternative<std::string>(r)) << text;
  return std::holds_alternative<std::string>(r) ? std::get<std::string>(r) : "";
}

TEST(Uri, Defaults) {
  uri u = ok("amqp://");
  EXPECT_EQ(u.host, "localhost");
  EXPECT_EQ(u.port, 5672);
  EXPECT_EQ(u.user, "guest");
  EXPECT_EQ(u.password, "guest");
  EXPECT_EQ(u.vhost, "/");
  EXPECT_FALSE(u.tls);
  EXPECT_EQ(ok("amqps://h").port, 5671);
  EXPECT_TRUE(ok("amqps://h").tls);
}

TEST(Uri, AllParts) {
  uri u = ok("amqp://us%40er:p%3Ass@127.0.0.1:5673/v%2Fh?heartbeat=3");
  EXPECT_EQ(u.user, "us@er");
  EXPECT_EQ(u.password, "p:ss");
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 5673);
  EXPECT_EQ(u.vhost, "v/h");
  EXPECT_EQ(u.heartbeat, 3);
  EXPECT_EQ(u.safe, "amqp://127.0.0.1:5673/v%2Fh");
  EXPECT_EQ(ok("amqp://h/").vhost, "");  // an empty path is the vhost "" (amqp_uri)
  EXPECT_EQ(ok("amqp://[::1]:99").host, "::1");
  EXPECT_EQ(ok("amqp://[::1]:99").port, 99);
}

TEST(Uri, Errors) {
  EXPECT_EQ(bad("http://x"), "{unexpected_uri_scheme,\"http\"}");
  EXPECT_EQ(bad("nonsense"), "{unexpected_uri_scheme,\"nonsense\"}");
  EXPECT_EQ(bad("amqp://h:notaport"), "{port_invalid,\"amqp://h:notaport\"}");
  EXPECT_EQ(bad("amqp://h:0"), "{port_invalid,\"amqp://h:0\"}");
  EXPECT_EQ(bad("amqp://h/a/b"), "{malformed_uri,\"amqp://h/a/b\"}");
  EXPECT_EQ(bad("amqp://h/%zz"), "{malformed_uri,\"amqp://h/%zz\"}");
  EXPECT_EQ(bad("amqp://h/%2"), "{malformed_uri,\"amqp://h/%2\"}");
}

}  // namespace
}  // namespace warren::amqp::client
