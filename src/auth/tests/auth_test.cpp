// Password hashes, SASL parsing, CIDR matching and the login decision.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "auth/password.hpp"
#include "auth/sasl.hpp"
#include "auth/user_store.hpp"

namespace warren::auth {
namespace {

using boost::asio::ip::make_address;

TEST(Password, RabbitMqSha256FormatIsVerified) {
  // The layout RabbitMQ's rabbit_password_hashing_sha256 uses:
  // base64(salt[4] ++ sha256(salt[4] ++ password)).
  std::string salt("\x90\x8d\xc6\x0a", 4);
  std::string h = hash_password_with_salt("guest", salt);
  std::string raw;
  ASSERT_TRUE(base64_decode(h, raw));
  EXPECT_EQ(raw.size(), 36u);
  EXPECT_EQ(raw.substr(0, 4), salt);
  EXPECT_TRUE(verify_password(h, "guest"));
  EXPECT_FALSE(verify_password(h, "Guest"));
  EXPECT_FALSE(verify_password("not base64!", "guest"));
  EXPECT_FALSE(verify_password(base64_encode("short"), "guest"));
}

TEST(Password, FreshSaltsDiffer) {
  std::string a = hash_password("pw"), b = hash_password("pw");
  EXPECT_NE(a, b);
  EXPECT_TRUE(verify_password(a, "pw"));
  EXPECT_TRUE(verify_password(b, "pw"));
}

TEST(Base64, RoundTrip) {
  for (const std::string& s :
       std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)}) {
    std::string back;
    ASSERT_TRUE(base64_decode(base64_encode(s), back));
    EXPECT_EQ(back, s);
  }
}

TEST(Sasl, Plain) {
  auto c = parse_plain(std::string("\0guest\0secret", 13));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->username, "guest");
  EXPECT_EQ(c->password, "secret");
  EXPECT_TRUE(parse_plain(std::string("guest\0guest\0pw", 14)));
  EXPECT_FALSE(parse_plain(std::string("other\0guest\0pw", 14)));
  EXPECT_FALSE(parse_plain("guestsecret"));
  EXPECT_FALSE(parse_plain(std::string("\0\0pw", 4)));
}

TEST(Sasl, AmqPlain) {
  std::string r;
  auto put = [&](std::string_view k, std::string_view v) {
    r += char(k.size());
    r += k;
    r += 'S';
    uint32_t n = uint32_t(v.size());
    r += char(n >> 24);
    r += char(n >> 16);
    r += char(n >> 8);
    r += char(n);
    r += v;
  };
  put("LOGIN", "bob");
  put("PASSWORD", "pw");
  auto c = parse_amqplain(r);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->username, "bob");
  EXPECT_EQ(c->password, "pw");
  EXPECT_FALSE(parse_amqplain(r.substr(0, r.size() - 1)));
  EXPECT_FALSE(parse_amqplain(r.substr(0, 10)));
  EXPECT_TRUE(parse_response("AMQPLAIN", r));
  EXPECT_FALSE(parse_response("CRAM-MD5", r));
  EXPECT_TRUE(is_offered_mechanism("PLAIN"));
  EXPECT_FALSE(is_offered_mechanism("EXTERNAL"));
}

TEST(IpNetwork, Matching) {
  auto nets = parse_ip_networks("127.0.0.0/8, ::1/128");
  ASSERT_TRUE(nets);
  EXPECT_TRUE(in_any(*nets, make_address("127.0.0.1")));
  EXPECT_TRUE(in_any(*nets, make_address("127.255.1.2")));
  EXPECT_TRUE(in_any(*nets, make_address("::ffff:127.0.0.1")));
  EXPECT_TRUE(in_any(*nets, make_address("::1")));
  EXPECT_FALSE(in_any(*nets, make_address("128.0.0.1")));
  EXPECT_FALSE(in_any(*nets, make_address("10.0.0.1")));
  EXPECT_FALSE(in_any(*nets, make_address("::2")));
  auto one = parse_ip_networks("127.0.0.1/32");
  ASSERT_TRUE(one);
  EXPECT_FALSE(in_any(*one, make_address("127.0.0.2")));
  EXPECT_FALSE(parse_ip_networks("127.0.0.0/33"));
  EXPECT_FALSE(parse_ip_networks("nonsense"));
  EXPECT_FALSE(parse_ip_networks("1.2.3.4/x"));
}

TEST(UserStore, LoginAndLoopbackRule) {
  user_store s;
  user g{"guest", hash_password("guest"), {"administrator"}, {}};
  g.permissions["/"] = permission{};
  s.add_user(g);
  s.add_user(user{"bob", hash_password("pw"), {}, {}});
  s.set_loopback_networks(*parse_ip_networks("127.0.0.0/8,::1"));
  user_ptr who;
  EXPECT_EQ(s.login({"guest", "guest"}, make_address("127.0.0.1"), &who), login_result::ok);
  EXPECT_EQ(who->name, "guest");
  EXPECT_EQ(s.login({"guest", "guest"}, make_address("10.1.1.1"), &who),
            login_result::loopback_only);
  EXPECT_EQ(s.login({"guest", "nope"}, make_address("10.1.1.1"), &who),
            login_result::invalid_credentials);
  EXPECT_EQ(s.login({"bob", "pw"}, make_address("10.1.1.1"), &who), login_result::ok);
  EXPECT_EQ(s.login({"nobody", "pw"}, make_address("127.0.0.1"), &who),
            login_result::invalid_credentials);
  EXPECT_TRUE(user_store::may_access_vhost(*s.find("guest"), "/"));
  EXPECT_FALSE(user_store::may_access_vhost(*s.find("bob"), "/"));
}

TEST(UserStore, LoginWithoutPasswordNeedsTheUserAndKeepsTheLoopbackRule) {
  // SASL EXTERNAL: the client certificate stood in for the password.
  user_store s;
  s.add_user(user{"guest", hash_password("guest"), {}, {}});
  s.add_user(user{"carol", hash_password("pw"), {}, {}});
  s.set_loopback_networks(*parse_ip_networks("127.0.0.0/8"));
  user_ptr who;
  EXPECT_EQ(s.login_without_password("carol", make_address("10.1.1.1"), &who), login_result::ok);
  EXPECT_EQ(who->name, "carol");
  EXPECT_EQ(s.login_without_password("nobody", make_address("127.0.0.1"), &who),
            login_result::invalid_credentials);
  EXPECT_EQ(s.login_without_password("guest", make_address("10.1.1.1"), &who),
            login_result::loopback_only);
  EXPECT_EQ(s.login_without_password("guest", make_address("127.0.0.1"), &who), login_result::ok);
}

TEST(UserStore, ReplacingAUserLeavesHoldersWithTheirVersion) {
  user_store s;
  s.add_user(user{"ann", hash_password("old"), {}, {}});
  user_ptr held = s.find("ann");
  s.update([](user_map& m) {
    user u = *m.at("ann");
    u.password_hash = hash_password("new");
    u.tags = {"administrator"};
    m["ann"] = std::make_shared<const user>(std::move(u));
  });
  EXPECT_TRUE(verify_password(held->password_hash, "old"));  // still the login-time version
  EXPECT_TRUE(user_store::has_tag(*s.find("ann"), "administrator"));
  EXPECT_FALSE(user_store::has_tag(*held, "administrator"));
  user_ptr who;
  EXPECT_EQ(s.login({"ann", "old"}, make_address("10.0.0.1"), &who),
            login_result::invalid_credentials);
  EXPECT_EQ(s.login({"ann", "new"}, make_address("10.0.0.1"), &who), login_result::ok);
  ASSERT_EQ(s.all().size(), 1u);
}

// Readers on several threads while a writer keeps replacing the user (run under TSan too).
TEST(UserStore, ConcurrentLoginsWhileUsersChange) {
  user_store s;
  const std::string h1 = hash_password("pw"), h2 = hash_password("pw");
  s.add_user(user{"ann", h1, {}, {}});
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t)
    readers.emplace_back([&] {
      while (!stop) {
        user_ptr who;
        if (s.login({"ann", "pw"}, make_address("10.0.0.1"), &who) != login_result::ok ||
            who->name != "ann")
          ++failures;
      }
    });
  for (int i = 0; i < 2000; ++i)
    s.update([&](user_map& m) {
      m["ann"] = std::make_shared<const user>(user{"ann", i % 2 ? h1 : h2, {}, {}});
      m["other" + std::to_string(i % 10)] = std::make_shared<const user>(user{"x", h1, {}, {}});
    });
  stop = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(s.all().size(), 11u);
}

TEST(UserCounts, FollowTheUsersLimits) {
  user_store store;
  auth::user u{"u", "", {}, {}};
  u.limits = {{"max-connections", 2}};
  store.add_user(u);
  auto counts = store.counts("u");
  EXPECT_EQ(counts->connections.limit(), 2);
  EXPECT_EQ(counts->channels.limit(), common::limited_count::unset);
  EXPECT_EQ(store.counts("u"), counts);  // one per name
  EXPECT_FALSE(counts->connections.try_acquire());
  store.update([](user_map& m) {
    auto copy = std::make_shared<user>(*m.at("u"));
    copy->limits["max-channels"] = 0;
    m["u"] = std::move(copy);
  });
  EXPECT_EQ(counts->channels.limit(), 0);
  EXPECT_EQ(counts->connections.count(), 1);  // counts outlive the change
  store.update([](user_map& m) { m.erase("u"); });
  EXPECT_EQ(counts->connections.limit(), common::limited_count::unset);  // deletion lifts them
  EXPECT_EQ(store.counts("nobody")->connections.limit(), common::limited_count::unset);
}

TEST(UserStore, ClusterNodeIdentityOnlyWithTheSecret) {
  user_store s;
  // A user of the store under a node name never logs in as one (nor over EXTERNAL).
  s.add_user(user{"warren-node:b", hash_password("pw"), {}, {}});
  user_ptr who;
  auto peer = make_address("127.0.0.1");
  EXPECT_EQ(s.login({"warren-node:b", "pw"}, peer, &who), login_result::invalid_credentials);
  EXPECT_EQ(s.login({"warren-node:b", ""}, peer, &who), login_result::invalid_credentials);
  EXPECT_EQ(s.access("warren-node:b", "/"), nullptr);
  s.set_cluster_secret("s3cret");
  EXPECT_EQ(s.login({"warren-node:b", "s3cret-"}, peer, &who), login_result::invalid_credentials);
  EXPECT_EQ(s.login({"warren-node:b", "s3cre"}, peer, &who), login_result::invalid_credentials);
  EXPECT_EQ(s.login_without_password("warren-node:b", peer, &who),
            login_result::invalid_credentials);
  ASSERT_EQ(s.login({"warren-node:b", "s3cret"}, peer, &who), login_result::ok);
  EXPECT_TRUE(who->cluster_node);
  EXPECT_TRUE(user_store::may_access_vhost(*who, "any"));
  EXPECT_NE(s.access("warren-node:b", "any"), nullptr);
  // Ordinary users are not node identities.
  user_ptr bob;
  s.add_user(user{"bob", hash_password("pw"), {}, {}});
  ASSERT_EQ(s.login({"bob", "pw"}, peer, &bob), login_result::ok);
  EXPECT_FALSE(bob->cluster_node);
  EXPECT_FALSE(user_store::may_access_vhost(*bob, "any"));
}

}  // namespace
}  // namespace warren::auth
