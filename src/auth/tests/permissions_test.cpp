// Permission patterns (RabbitMQ's semantics on PCRE2), topic variable expansion, refusal texts
// and the user store's compiled access with its generation (what invalidates channels' caches).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "auth/password.hpp"
#include "auth/permissions.hpp"
#include "auth/user_store.hpp"

namespace warren::auth {
namespace {

TEST(Pattern, UnanchoredSearchAsErlangRe) {
  auto p = pattern::compile("gen");
  EXPECT_TRUE(p.matches("amq.gen-abc"));
  EXPECT_TRUE(p.matches("gen"));
  EXPECT_FALSE(p.matches("ge-n"));
  auto anchored = pattern::compile("^app\\.");
  EXPECT_TRUE(anchored.matches("app.orders"));
  EXPECT_FALSE(anchored.matches("myapp.orders"));
  EXPECT_FALSE(anchored.matches("appXorders"));
  EXPECT_EQ(anchored.source(), "^app\\.");
}

TEST(Pattern, EmptyMeansOnlyTheEmptyName) {
  auto p = pattern::compile("");
  EXPECT_TRUE(p.matches(""));
  EXPECT_FALSE(p.matches("q"));
  EXPECT_FALSE(p.matches("amq.default"));
}

TEST(Pattern, DotStarMatchesEverything) {
  auto p = pattern::compile(".*");
  EXPECT_TRUE(p.matches(""));
  EXPECT_TRUE(p.matches("anything at all"));
  EXPECT_TRUE(p.matches(std::string("\0\xff\n", 3)));
}

TEST(Pattern, PcreFeaturesRabbitMqUsersWrite) {
  // Alternation, classes, lookahead (not in POSIX regexes), and bytes that are not UTF-8.
  auto alt = pattern::compile("^(orders|billing)-[0-9]+$");
  EXPECT_TRUE(alt.matches("orders-12"));
  EXPECT_TRUE(alt.matches("billing-7"));
  EXPECT_FALSE(alt.matches("orders-"));
  EXPECT_FALSE(alt.matches("shipping-1"));
  auto ahead = pattern::compile("^(?!amq\\.)");
  EXPECT_TRUE(ahead.matches("mine"));
  EXPECT_FALSE(ahead.matches("amq.gen-x"));
  auto bytes = pattern::compile("^\\xff");
  EXPECT_TRUE(bytes.matches("\xff-raw"));
  // Capture groups beyond the one the match block holds still count as a match.
  EXPECT_TRUE(pattern::compile("(a)(b)(c)").matches("xabc"));
}

TEST(Pattern, InvalidPatternsAllowNothingAndAreReported) {
  EXPECT_FALSE(pattern::compile("(unclosed").matches("(unclosed"));
  EXPECT_FALSE(pattern::compile("[z-a]").matches("a"));
  EXPECT_FALSE(pattern{}.matches(""));
  ASSERT_TRUE(pattern::check("(unclosed"));
  EXPECT_NE(pattern::check("(unclosed")->find("position"), std::string::npos);
  EXPECT_FALSE(pattern::check(""));
  EXPECT_FALSE(pattern::check(".*"));
  EXPECT_FALSE(pattern::check("^a{2,3}$"));
  // RabbitMQ's limit: 1024 bytes.
  EXPECT_FALSE(pattern::check(std::string(1024, 'a')));
  EXPECT_TRUE(pattern::check(std::string(1025, 'a')));
  EXPECT_FALSE(pattern::compile(std::string(1025, 'a')).matches(std::string(1025, 'a')));
}

TEST(Pattern, RunawayBacktrackingIsRefusedAtTheStepLimit) {
  // The second branch matches, but only after the first has backtracked through 2^n ways:
  // RabbitMQ's limit of 50 000 steps stops it first at n = 18 (PCRE2's own default of ten
  // million would let it match), and an error counts as no match.
  auto p = pattern::compile("^(?:(a+)+x|a+!)");
  EXPECT_TRUE(p.matches(std::string(12, 'a') + "!"));
  EXPECT_FALSE(p.matches(std::string(18, 'a') + "!"));
}

TEST(Pattern, MatchesFromManyThreadsAtOnce) {
  auto p = pattern::compile("^(orders|billing)\\.[a-z]+$");
  std::atomic<int> wrong{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 5000; ++i) {
        if (!p.matches("orders.new")) ++wrong;
        if (p.matches("orders.New")) ++wrong;
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(TopicVariables, UsernameAndVhostAreExpandedAndEscaped) {
  topic_variables v{"bob.smith", "/prod", std::nullopt};
  EXPECT_EQ(expand_topic_variables("^{username}\\.", v), "^bob\\.smith\\.");
  EXPECT_EQ(expand_topic_variables("^{vhost}-{username}$", v), "^/prod-bob\\.smith$");
  // Every occurrence, and unknown or unset names stay as written.
  EXPECT_EQ(expand_topic_variables("{username}|{username}", v), "bob\\.smith|bob\\.smith");
  EXPECT_EQ(expand_topic_variables("^{client_id}$", v), "^{client_id}$");
  EXPECT_EQ(expand_topic_variables("a{2}{other}{", v), "a{2}{other}{");
  EXPECT_EQ(expand_topic_variables("", v), "");
}

TEST(TopicVariables, ClientIdWhenTheProtocolHasOne) {
  topic_variables v{"u", "/", std::string_view("dev-1")};
  EXPECT_EQ(expand_topic_variables("^{client_id}\\.", v), "^dev\\-1\\.");
}

TEST(TopicVariables, AValueCannotInjectRegexOrVariables) {
  // A user named "x.*" must not gain every key; one named "{vhost}" is not expanded again.
  topic_variables v{"x.*|{vhost}", "/", std::nullopt};
  auto p = pattern::compile(expand_topic_variables("^{username}$", v));
  EXPECT_TRUE(p.matches("x.*|{vhost}"));
  EXPECT_FALSE(p.matches("xyz"));
  EXPECT_FALSE(p.matches("x.*|/"));
  EXPECT_EQ(regex_escape("a.b-c(d)"), "a\\.b\\-c\\(d\\)");
}

TEST(VhostAccess, ChecksEachKindAndTheDefaultExchangeAsAmqDefault) {
  permission p{"^conf-", "^(amq\\.default|out)$", ""};
  vhost_access a(p, nullptr, {"u", "/", std::nullopt});
  EXPECT_TRUE(a.allows(perm::configure, resource::queue, "conf-q"));
  EXPECT_FALSE(a.allows(perm::configure, resource::queue, "q"));
  EXPECT_TRUE(a.allows(perm::write, resource::exchange, ""));  // checked as "amq.default"
  EXPECT_TRUE(a.allows(perm::write, resource::exchange, "out"));
  EXPECT_FALSE(a.allows(perm::write, resource::queue, ""));  // only exchanges are renamed
  EXPECT_FALSE(a.allows(perm::read, resource::queue, "conf-q"));
  EXPECT_TRUE(a.allows_any(resource::queue, "conf-q"));
  EXPECT_FALSE(a.allows_any(resource::queue, "q"));
  EXPECT_EQ(a.topic("amq.topic"), nullptr);
}

TEST(VhostAccess, TopicRulesAreCompiledWithTheUsersVariables) {
  topic_permissions_by_exchange t;
  t["amq.topic"] = topic_permission{"^{username}\\.", "^(public|{username})\\."};
  vhost_access a(permission{}, &t, {"ann", "/", std::nullopt});
  const topic_rule* r = a.topic("amq.topic");
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(r->write.matches("ann.news"));
  EXPECT_FALSE(r->write.matches("bob.news"));
  EXPECT_TRUE(r->read.matches("public.x"));
  EXPECT_TRUE(r->read.matches("ann.x"));
  EXPECT_FALSE(r->read.matches("bob.x"));
  EXPECT_EQ(a.topic("other"), nullptr);
}

TEST(Refusals, RabbitMqsTexts) {
  EXPECT_EQ(resource_refusal(perm::write, resource::exchange, "", "/", "u"),
            "write access to exchange 'amq.default' in vhost '/' refused for user 'u'");
  EXPECT_EQ(resource_refusal(perm::configure, resource::queue, "q", "v1", "bob"),
            "configure access to queue 'q' in vhost 'v1' refused for user 'bob'");
  EXPECT_EQ(resource_refusal(perm::read, resource::queue, "q", "/", "u"),
            "read access to queue 'q' in vhost '/' refused for user 'u'");
  EXPECT_EQ(
      topic_refusal(perm::write, "a.b", "amq.topic", "/", "u"),
      "write access to topic 'a.b' in exchange 'amq.topic' in vhost '/' refused for user 'u'");
}

user with_perm(std::string name, std::string vhost, permission p) {
  user u{std::move(name), hash_password("pw"), {}, {}};
  u.permissions[vhost] = p;
  return u;
}

TEST(UserStoreAccess, CompiledPerUserAndVhost) {
  user_store s;
  user u = with_perm("ann", "/", permission{"^a", ".*", ""});
  u.permissions["v2"] = permission{"", "", "^r"};
  u.topic_permissions["/"]["amq.topic"] = topic_permission{"^{username}\\.", ".*"};
  s.add_user(u);
  auto root = s.access("ann", "/");
  ASSERT_TRUE(root);
  EXPECT_TRUE(root->allows(perm::configure, resource::queue, "aq"));
  EXPECT_FALSE(root->allows(perm::read, resource::queue, "aq"));
  ASSERT_TRUE(root->topic("amq.topic"));
  EXPECT_TRUE(root->topic("amq.topic")->write.matches("ann.x"));
  auto v2 = s.access("ann", "v2");
  ASSERT_TRUE(v2);
  EXPECT_TRUE(v2->allows(perm::read, resource::queue, "rq"));
  EXPECT_EQ(v2->topic("amq.topic"), nullptr);  // topic permissions are per vhost
  EXPECT_FALSE(s.access("ann", "v3"));
  EXPECT_FALSE(s.access("nobody", "/"));
}

TEST(UserStoreAccess, EveryChangeBumpsTheGenerationAfterRecompiling) {
  user_store s;
  s.add_user(with_perm("ann", "/", permission{".*", ".*", ".*"}));
  s.add_user(with_perm("bob", "/", permission{".*", ".*", ".*"}));
  uint64_t g0 = s.generation();
  auto before = s.access("ann", "/");
  ASSERT_TRUE(before->allows(perm::write, resource::exchange, "x"));

  // Revoking write: a holder of the old access keeps it (immutable), the store answers anew.
  s.update([](user_map& m) {
    user u = *m.at("ann");
    u.permissions["/"].write = "^$";
    m["ann"] = std::make_shared<const user>(std::move(u));
  });
  uint64_t g1 = s.generation();
  EXPECT_GT(g1, g0);
  EXPECT_TRUE(before->allows(perm::write, resource::exchange, "x"));
  EXPECT_FALSE(s.access("ann", "/")->allows(perm::write, resource::exchange, "x"));

  // A user untouched by a change keeps the very same compiled object.
  auto bob = s.access("bob", "/");
  s.add_user(with_perm("carl", "/", permission{}));
  EXPECT_GT(s.generation(), g1);
  EXPECT_EQ(s.access("bob", "/"), bob);

  // Removing the permission or the user: nothing is allowed any more.
  s.update([](user_map& m) {
    user u = *m.at("bob");
    u.permissions.erase("/");
    m["bob"] = std::make_shared<const user>(std::move(u));
  });
  EXPECT_FALSE(s.access("bob", "/"));
  s.update([](user_map& m) { m.erase("carl"); });
  EXPECT_FALSE(s.access("carl", "/"));
}

// What a connection does (amqp_connection::access): it keeps the access it fetched with the
// generation it read before fetching, and fetches again when the generation moves. Under
// concurrent changes it may fetch more than needed, never answer from a stale version.
TEST(UserStoreAccess, GenerationCacheNeverServesARevokedPermission) {
  user_store s;
  s.add_user(with_perm("ann", "/", permission{".*", ".*", ".*"}));
  std::atomic<bool> stop{false};
  std::atomic<int> revoked_at_gen{0};
  std::thread writer([&] {
    for (int i = 0; i < 200; ++i) {
      bool allow = i % 2 == 1;
      s.update([&](user_map& m) {
        user u = *m.at("ann");
        u.permissions["/"].write = allow ? ".*" : "^$";
        m["ann"] = std::make_shared<const user>(std::move(u));
      });
    }
    // Ends revoked.
    s.update([&](user_map& m) {
      user u = *m.at("ann");
      u.permissions["/"].write = "^$";
      m["ann"] = std::make_shared<const user>(std::move(u));
    });
    revoked_at_gen = int(s.generation());
    stop = true;
  });
  uint64_t seen = 0;
  std::shared_ptr<const vhost_access> cached;
  auto allowed = [&] {
    uint64_t g = s.generation();
    if (g != seen) {
      cached = s.access("ann", "/");
      seen = g;
    }
    return cached && cached->allows(perm::write, resource::exchange, "x");
  };
  while (!stop) (void)allowed();
  writer.join();
  ASSERT_GE(s.generation(), uint64_t(revoked_at_gen.load()));
  EXPECT_FALSE(allowed());
}

}  // namespace
}  // namespace warren::auth
