#include "federation/parameters.hpp"

#include <gtest/gtest.h>

#include <filesystem>

#include "broker/exchange.hpp"

namespace warren::federation {
namespace {

std::string problem(const std::string& component, const json& v) {
  return check_parameter(component, "up1", v).value_or("");
}

TEST(Parameters, UpstreamValidationTexts) {
  EXPECT_EQ(problem("federation-upstream", json{{"uri", "amqp://h"}}), "");
  EXPECT_EQ(problem("federation-upstream", json::object()), "Key \"uri\" not found in up1");
  EXPECT_EQ(problem("federation-upstream", json{{"uri", "amqp://h"}, {"prefetch-count", "x"}}),
            "prefetch-count should be a number, actually was <<\"x\">>");
  EXPECT_EQ(problem("federation-upstream", json{{"uri", "amqp://h"}, {"ack-mode", "later"}}),
            "ack-mode should be one of [<<\"no-ack\">>,<<\"on-publish\">>,<<\"on-confirm\">>], "
            "actually was <<\"later\">>");
  EXPECT_EQ(problem("federation-upstream", json{{"uri", "amqp://h"}, {"trust-user-id", 1}}),
            "trust-user-id should be boolean, actually was 1");
  EXPECT_EQ(problem("federation-upstream", json{{"uri", "http://h"}}),
            "\"http://h\" not a valid URI: {unexpected_uri_scheme,\"http\"}");
  EXPECT_EQ(problem("federation-upstream", json{{"uri", "amqp://h"}, {"colour", "red"}}),
            "Unrecognised terms [{<<\"colour\">>,<<\"red\">>}] in up1");
  EXPECT_EQ(problem("federation-upstream", json{{"uri", json::array({"amqp://a", "amqp://b"})}}),
            "");
  EXPECT_EQ(problem("federation-upstream-set", json::array({json{{"upstream", "a"}}})), "");
  EXPECT_EQ(problem("federation-upstream-set", json::array({json{{"max-hops", 2}}})),
            "Key \"upstream\" not found in up1");
  EXPECT_EQ(problem("nope", json::object()), "component <<\"nope\">> not found");
}

TEST(Parameters, ShovelValidationTexts) {
  json ok = {
      {"src-uri", "amqp://"}, {"src-queue", "a"}, {"dest-uri", "amqp://"}, {"dest-queue", "b"}};
  EXPECT_EQ(problem("shovel", ok), "");
  json none = ok;
  none.erase("src-queue");
  EXPECT_EQ(problem("shovel", none), "Must specify 'src-exchange' or 'src-queue'");
  json both = ok;
  both["src-exchange"] = "x";
  EXPECT_EQ(problem("shovel", both), "Cannot specify 'src-exchange' and 'src-queue'");
  json after = ok;
  after["src-delete-after"] = "sometime";
  EXPECT_EQ(problem("shovel", after),
            "src-delete-after should be a number greater than or equal to 0, \"never\" or "
            "\"queue-length\", actually was <<\"sometime\">>");
  json noack = ok;
  noack["src-delete-after"] = 5;
  noack["ack-mode"] = "no-ack";
  EXPECT_EQ(problem("shovel", noack), "Cannot specify 'no-ack' and numerical 'delete-after'");
  json nodest = ok;
  nodest.erase("dest-uri");
  EXPECT_EQ(problem("shovel", nodest), "Key \"dest-uri\" not found in up1");
}

TEST(Policies, ValidationAndMatching) {
  auto p = check_policy("/", "fed",
                        json{{"pattern", "^fed\\."},
                             {"definition", {{"federation-upstream-set", "all"}}},
                             {"apply-to", "exchanges"},
                             {"priority", 1}});
  ASSERT_TRUE(std::holds_alternative<policy>(p));
  auto err = [](const json& body) {
    auto r = check_policy("/", "p", body);
    return std::holds_alternative<std::string>(r) ? std::get<std::string>(r) : "";
  };
  EXPECT_EQ(err(json{{"pattern", "x"}}), "Key \"definition\" not found in p");
  EXPECT_EQ(err(json{{"pattern", "x"}, {"definition", json::object()}}), "no policy provided");
  EXPECT_EQ(err(json{{"pattern", "x"}, {"definition", {{"max-length", 5}}}}),
            "[{<<\"max-length\">>,5}] are not recognised policy settings");
  EXPECT_EQ(err(json{{"pattern", "x"}, {"definition", {{"federation-upstream", 5}}}}),
            "5 is not a valid federation upstream name");
  EXPECT_EQ(err(json{{"pattern", "x"},
                     {"definition", {{"federation-upstream", "a"}}},
                     {"apply-to", "topics"}}),
            "apply-to 'topics' unrecognised; should be 'queues', 'exchanges' or 'all'");
  EXPECT_EQ(err(json{{"pattern", "("}, {"definition", {{"federation-upstream", "a"}}}})
                .rfind("pattern should be regular expression but is invalid", 0),
            0u);

  std::vector<policy> all;
  all.push_back(std::get<policy>(p));
  auto low = std::get<policy>(check_policy(
      "/", "all", json{{"pattern", "."}, {"definition", {{"federation-upstream", "u"}}}}));
  all.push_back(low);
  EXPECT_EQ(effective_policy(all, "/", "fed.x", true)->name, "fed");
  EXPECT_EQ(effective_policy(all, "/", "other", true)->name, "all");
  EXPECT_EQ(effective_policy(all, "/", "fed.x", false)->name, "all");  // "fed" is for exchanges
  EXPECT_EQ(effective_policy(all, "other-vhost", "fed.x", true), nullptr);
}

TEST(RuntimeStore, KeepsAcrossRestarts) {
  auto dir =
      std::filesystem::temp_directory_path() / ("warren-params-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto file = dir / "parameters.json";
  {
    runtime_store s(file);
    int changes = 0;
    s.on_change([&] { ++changes; });
    EXPECT_EQ(s.set_parameter({"/", "federation-upstream", "up", json{{"uri", "amqp://h"}}}), "");
    EXPECT_EQ(
        s.set_policy(std::get<policy>(check_policy(
            "/", "p", json{{"pattern", "."}, {"definition", {{"federation-upstream", "up"}}}}))),
        "");
    EXPECT_EQ(changes, 2);
    std::string err;
    EXPECT_FALSE(s.clear_parameter("shovel", "/", "up", err));
  }
  // URIs carry passwords: only the broker's user may read the file.
  EXPECT_EQ(std::filesystem::status(file).permissions() & std::filesystem::perms::others_read,
            std::filesystem::perms::none);
  runtime_store again(file);
  std::string err;
  ASSERT_TRUE(again.load(err)) << err;
  ASSERT_EQ(again.parameters().size(), 1u);
  EXPECT_EQ(again.parameters()[0].value["uri"], "amqp://h");
  ASSERT_TRUE(again.find_policy("/", "p"));
  std::filesystem::remove_all(dir);
}

TEST(FederationUpstreamExchange, BreaksLoopsAndCountsHops) {
  common::field_table args;
  args.set("x-max-hops", int64_t(2));
  args.set("x-downstream-name", "B");
  args.set("x-downstream-vhost", "/");
  broker::federation_upstream_exchange x({"fx", "x-federation-upstream", true, true, true, args},
                                         1);
  x.add_binding(7, "", {});
  auto routed = [&](std::optional<common::field_table> headers) {
    broker::message m;
    m.properties.headers = std::move(headers);
    std::vector<broker::dest_id> out;
    x.route(m, out);
    return out.size();
  };
  auto hop = [](const char* cluster) {
    common::field_table t;
    t.set("cluster-name", cluster);
    t.set("vhost", "/");
    return common::field_value(t);
  };
  EXPECT_EQ(routed(std::nullopt), 1u);
  common::field_table one;
  one.set("x-received-from", common::field_array({hop("A")}));
  EXPECT_EQ(routed(one), 1u);
  common::field_table seen;
  seen.set("x-received-from", common::field_array({hop("B")}));
  EXPECT_EQ(routed(seen), 0u);  // it came through B: B does not get it back
  common::field_table two;
  two.set("x-received-from", common::field_array({hop("A"), hop("C")}));
  EXPECT_EQ(routed(two), 0u);  // max-hops used up
  EXPECT_TRUE(broker::check_federation_upstream_arguments({}).has_value());
}

}  // namespace
}  // namespace warren::federation
