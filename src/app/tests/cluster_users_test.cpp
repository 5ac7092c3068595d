// A user as its value in etcd: every field survives the round trip, and text that is not a user
// is refused rather than half-read.
#include <gtest/gtest.h>

#include "app/cluster_users.hpp"

namespace warren::app {
namespace {

TEST(ClusterUsers, RoundTrip) {
  auth::user u;
  u.name = "bob";
  u.password_hash = "hash";
  u.tags = {"administrator", "monitoring"};
  u.permissions["/"] = auth::permission{"", "^w", ".*"};
  u.permissions["v2"] = auth::permission{};
  u.topic_permissions["/"]["amq.topic"] = auth::topic_permission{"^a", "^b"};
  u.limits["max-connections"] = 3;
  std::string text = user_to_text(u);
  auto back = user_from_text(text);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, u);
  EXPECT_EQ(user_to_text(*back), text);  // canonical: equal users, equal text
}

TEST(ClusterUsers, NotAUser) {
  EXPECT_FALSE(user_from_text("not json"));
  EXPECT_FALSE(user_from_text("[]"));
  EXPECT_FALSE(user_from_text(R"({"name":"x"})"));
  EXPECT_FALSE(user_from_text(
      R"({"name":"x","password_hash":"h","tags":[],"permissions":{"/":{"configure":1}},"topic_permissions":{},"limits":{}})"));
}

}  // namespace
}  // namespace warren::app
