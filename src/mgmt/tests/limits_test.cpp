// Vhost and user limits: RabbitMQ's validation texts, the Erlang terms in them, definitions with
// limits, the vhost limits file, and the counts the broker enforces them with (common's
// limited_count; the users' counts are tested with the user store, auth/tests).
#include "mgmt/limits.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

namespace warren::mgmt {
namespace {

std::string refusal(const std::variant<limit_map, std::string>& r) {
  return std::holds_alternative<std::string>(r) ? std::get<std::string>(r) : "(accepted)";
}

TEST(Limits, ErlangTermsAsRabbitMqPrintsThem) {
  EXPECT_EQ(erlang_term(json("ten")), R"(<<"ten">>)");
  EXPECT_EQ(erlang_term(json(R"(a"b\c)")), R"(<<"a\"b\\c">>)");
  EXPECT_EQ(erlang_term(json(5)), "5");
  EXPECT_EQ(erlang_term(json(-1)), "-1");
  EXPECT_EQ(erlang_term(json(1.5)), "1.5");
  EXPECT_EQ(erlang_term(json(true)), "true");
  EXPECT_EQ(erlang_term(json(nullptr)), "null");
  EXPECT_EQ(erlang_term(json::parse(R"([1,"a"])")), R"([1,<<"a">>])");
  EXPECT_EQ(erlang_term(json::parse(R"({"k":2})")), R"(#{<<"k">> => 2})");
}

TEST(Limits, VhostLimitsAreCheckedAsRabbitMqChecksThem) {
  auto ok = check_vhost_limits(json::parse(R"({"max-connections": 10, "max-queues": -1})"));
  ASSERT_TRUE(std::holds_alternative<limit_map>(ok));
  EXPECT_EQ(std::get<limit_map>(ok), (limit_map{{"max-connections", 10}, {"max-queues", -1}}));
  EXPECT_EQ(refusal(check_vhost_limits(json::parse(R"({"max-connections": "ten"})"))),
            R"(max-connections should be a number, actually was <<"ten">>)");
  EXPECT_EQ(refusal(check_vhost_limits(json::parse(R"({"max-queues": 2.0})"))),
            "max-queues should be a number, actually was 2.0");
  EXPECT_EQ(refusal(check_vhost_limits(json::parse(R"({"max-foo": 5})"))),
            R"(Unrecognised terms [{<<"max-foo">>,5}] in limits)");
  // User limits are not vhost limits.
  EXPECT_EQ(refusal(check_vhost_limits(json::parse(R"({"max-channels": 5})"))),
            R"(Unrecognised terms [{<<"max-channels">>,5}] in limits)");
  EXPECT_EQ(validation_failed("x"), "Validation failed\n\nx\n");
  auto huge = check_vhost_limits(json::parse(R"({"max-queues": 18446744073709551615})"));
  ASSERT_TRUE(std::holds_alternative<limit_map>(huge));
  EXPECT_EQ(std::get<limit_map>(huge).at("max-queues"), INT64_MAX);  // not wrapped to -1
}

TEST(Limits, UserLimitsAreCheckedAsRabbitMqChecksThem) {
  auto ok = check_user_limits(json::parse(R"({"max-connections": 0, "max-channels": 20})"));
  ASSERT_TRUE(std::holds_alternative<limit_map>(ok));
  EXPECT_EQ(std::get<limit_map>(ok), (limit_map{{"max-channels", 20}, {"max-connections", 0}}));
  EXPECT_EQ(refusal(check_user_limits(json::parse(R"({"max-channels": null})"))),
            "max-channels should be a number, actually was null");
  EXPECT_EQ(refusal(check_user_limits(json::parse(R"({"max-queues": 1})"))),
            R"(Unrecognised terms [{<<"max-queues">>,1}] in user-limits)");
  EXPECT_EQ(refusal(check_user_limits(json::parse("[]"))), "user-limits not a list []");
}

TEST(Limits, DefinitionsCarryVhostLimitsAsParametersAndUserLimitsInUsers) {
  auto r = parse_definitions(R"({
    "users": [{"name": "u", "password_hash": "", "tags": [], "limits": {"max-connections": 2}},
              {"name": "v", "password_hash": "", "tags": []}],
    "parameters": [
      {"vhost": "/", "component": "vhost-limits", "name": "limits", "value": {"max-queues": 3}},
      {"vhost": "/", "component": "mqtt-port-to-vhost-mapping", "name": "x", "value": {}},
      {"vhost": "/", "component": "federation-upstream", "name": "up", "value": {"uri": "amqp://h"}}],
    "policies": [
      {"vhost": "/", "name": "fed", "pattern": "^f", "definition": {"federation-upstream": "up"}},
      {"vhost": "/", "name": "ml", "pattern": ".", "definition": {"max-length": 5}}]})");
  ASSERT_TRUE(std::holds_alternative<definitions>(r)) << std::get<std::string>(r);
  const auto& d = std::get<definitions>(r);
  ASSERT_EQ(d.users.size(), 2u);
  EXPECT_EQ(d.users[0].limits, (limit_map{{"max-connections", 2}}));
  EXPECT_EQ(d.users[1].limits, std::nullopt);  // absent: left as they are on import
  ASSERT_EQ(d.vhost_limits.size(), 1u);
  EXPECT_EQ(d.vhost_limits[0], (vhost_limits_def{"/", {{"max-queues", 3}}}));
  EXPECT_EQ(d.ignored_parameters, 1u);
  ASSERT_EQ(d.runtime_parameters.size(), 1u);
  EXPECT_EQ(d.runtime_parameters[0].name, "up");
  ASSERT_EQ(d.policies.size(), 1u);  // max-length is not applied by Warren: skipped
  EXPECT_EQ(d.policies[0].name, "fed");
  EXPECT_EQ(d.ignored_policies, 1u);
  auto bad_upstream = parse_definitions(R"({"parameters": [{"vhost": "/",
    "component": "federation-upstream", "name": "x", "value": {}}]})");
  ASSERT_TRUE(std::holds_alternative<std::string>(bad_upstream));
  EXPECT_NE(std::get<std::string>(bad_upstream).find("Key \"uri\" not found in x"),
            std::string::npos);

  auto bad = parse_definitions(R"({"parameters": [{"vhost": "/", "component": "vhost-limits",
    "name": "limits", "value": {"max-queues": "3"}}]})");
  ASSERT_TRUE(std::holds_alternative<std::string>(bad));
  EXPECT_NE(std::get<std::string>(bad).find(
                "Validation failed\n\nmax-queues should be a number, actually was <<\"3\">>"),
            std::string::npos)
      << std::get<std::string>(bad);

  // Per-vhost: the parameter goes to the path's vhost, and is exported without its vhost key.
  auto one = parse_definitions(R"({"parameters": [{"component": "vhost-limits", "name": "limits",
    "value": {"max-connections": 1}}]})",
                               std::string("v"));
  ASSERT_TRUE(std::holds_alternative<definitions>(one));
  EXPECT_EQ(std::get<definitions>(one).vhost_limits[0].vhost, "v");
  EXPECT_EQ(dump(export_json(std::get<definitions>(one), export_info{"0", std::string("v")})
                     .at("parameters")),
            R"([{"component":"vhost-limits","name":"limits","value":{"max-connections":1}}])");
}

TEST(Limits, VhostLimitsLiveOnTheVhostAndInTheirFile) {
  broker::vhost_registry reg;
  broker::vhost& v = reg.add("v");
  reg.add("w");
  EXPECT_TRUE(vhost_limits(v).empty());
  set_vhost_limits(v, {{"max-connections", 3}, {"max-queues", 0}});
  EXPECT_EQ(v.connections().limit(), 3);
  EXPECT_EQ(v.max_queues(), 0);
  EXPECT_EQ(vhost_limits(v), (limit_map{{"max-connections", 3}, {"max-queues", 0}}));

  auto path = std::filesystem::path(testing::TempDir()) / "warren-vhost-limits-test.json";
  vhost_limits_file file(path);
  std::string error;
  ASSERT_TRUE(file.save(reg, error)) << error;
  broker::vhost_registry fresh;
  fresh.add("v");
  fresh.add("w");
  ASSERT_TRUE(file.load(fresh, error)) << error;
  EXPECT_EQ(vhost_limits(*fresh.find("v")), vhost_limits(v));
  EXPECT_TRUE(vhost_limits(*fresh.find("w")).empty());
  set_vhost_limits(v, {});
  EXPECT_EQ(v.connections().limit(), common::limited_count::unset);

  std::ofstream(path) << R"({"v": {"max-queues": "x"}})";
  EXPECT_FALSE(file.load(fresh, error));
  EXPECT_NE(error.find("vhost 'v'"), std::string::npos) << error;
  std::filesystem::remove(path);
  EXPECT_TRUE(file.load(fresh, error));  // a missing file: nothing set yet
}

TEST(LimitedCount, LimitsAsRabbitMqReadsThem) {
  common::limited_count c;
  EXPECT_FALSE(c.try_acquire());  // unset: no limit
  c.set_limit(-1);                // negative: no limit
  EXPECT_FALSE(c.try_acquire());
  EXPECT_EQ(c.count(), 2);
  c.set_limit(2);  // at the limit: refused, with the limit
  EXPECT_EQ(c.try_acquire(), 2);
  EXPECT_EQ(c.count(), 2);
  c.set_limit(1);  // lowered below the count: nothing taken back
  EXPECT_EQ(c.count(), 2);
  c.release();
  EXPECT_EQ(c.try_acquire(), 1);
  c.release();
  EXPECT_FALSE(c.try_acquire());
  c.set_limit(0);  // none allowed
  EXPECT_EQ(c.try_acquire(), 0);
  {
    common::limit_slot s(&c);
    common::limit_slot moved = std::move(s);
    EXPECT_FALSE(s.held());
    EXPECT_TRUE(moved.held());
  }
  EXPECT_EQ(c.count(), 0);  // given back once
}

TEST(LimitedCount, RacingWorkersNeverGoPastTheLimit) {
  common::limited_count c;
  c.set_limit(100);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 10'000; ++i) {
        if (c.try_acquire()) continue;
        EXPECT_LE(c.count(), 100);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.count(), 100);
}

}  // namespace
}  // namespace warren::mgmt
