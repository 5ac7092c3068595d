// Definitions as etcd keys and values: every kind survives the round trip through its key and
// value, names with "/" and "%" stay one key part, and a value that does not match its key (or is
// not a definition) is refused rather than half-read.
#include <gtest/gtest.h>

#include "app/cluster_definitions_codec.hpp"

namespace warren::app {
namespace {

void round_trip(const definition& d) {
  std::string key = definition_key(d), value = definition_value(d);
  auto back = parse_definition(key, value);
  ASSERT_TRUE(back) << key << " " << value;
  EXPECT_EQ(*back, d);
  EXPECT_EQ(definition_value(*back), value);  // canonical
}

TEST(ClusterDefinitions, PercentEncoding) {
  EXPECT_EQ(percent_encode("/"), "%2F");
  EXPECT_EQ(percent_encode("a b/c%d.e_f-g~h"), "a%20b%2Fc%25d.e_f-g~h");
  EXPECT_EQ(percent_decode("a%20b%2Fc%25d"), "a b/c%d");
  EXPECT_EQ(percent_decode(percent_encode("\xff\x01\xe2\x82\xac")), "\xff\x01\xe2\x82\xac");
  EXPECT_FALSE(percent_decode("%2"));
  EXPECT_FALSE(percent_decode("%zz"));
  EXPECT_FALSE(percent_decode("abc%"));
}

TEST(ClusterDefinitions, RoundTrips) {
  common::field_table args;
  args.set("alternate-exchange", "ae");
  args.set("x-n", int32_t(5));
  round_trip(mgmt::exchange_def{"/", "logs/a%b", "topic", true, false, true, args});
  round_trip(queue_record{mgmt::queue_def{"v 2", "q/1", false, true, args}, "node-a"});
  round_trip(queue_record{mgmt::queue_def{"/", "mine", false, false, {}}, "node-a", true});
  round_trip(mgmt::binding_def{"/", "x", "q/1", true, "", {}});
  round_trip(mgmt::binding_def{"/", "x", "y", false, "a.#/b", args});
}

TEST(ClusterDefinitions, ExclusiveIsWrittenOnlyWhenTrue) {
  // A record written before exclusive queues were recorded reads back as not exclusive.
  std::string plain =
      definition_value(queue_record{mgmt::queue_def{"/", "q", true, false, {}}, "a"});
  EXPECT_EQ(plain.find("exclusive"), std::string::npos);
  auto d = parse_definition("%2F/queues/q", plain);
  ASSERT_TRUE(d);
  EXPECT_FALSE(std::get<queue_record>(*d).exclusive);
  std::string mine =
      definition_value(queue_record{mgmt::queue_def{"/", "q", false, false, {}}, "a", true});
  d = parse_definition("%2F/queues/q", mine);
  ASSERT_TRUE(d);
  EXPECT_TRUE(std::get<queue_record>(*d).exclusive);
}

TEST(ClusterDefinitions, Keys) {
  EXPECT_EQ(definition_key(mgmt::exchange_def{"/", "x", "fanout", true, false, false, {}}),
            "%2F/exchanges/x");
  EXPECT_EQ(definition_key(queue_record{mgmt::queue_def{"/", "q", true, false, {}}, "a"}),
            "%2F/queues/q");
  EXPECT_EQ(definition_key(mgmt::binding_def{"/", "x", "q", true, "k", {}}),
            "%2F/bindings/x/queue/q/k/%7B%7D");
  EXPECT_EQ(key_vhost("%2F/queues/q"), "/");
  // Bindings differing only in their arguments are two keys.
  common::field_table args;
  args.set("x-match", "all");
  EXPECT_NE(definition_key(mgmt::binding_def{"/", "x", "q", true, "k", {}}),
            definition_key(mgmt::binding_def{"/", "x", "q", true, "k", args}));
}

TEST(ClusterDefinitions, Refused) {
  std::string x = definition_value(mgmt::exchange_def{"/", "x", "fanout", true, false, false, {}});
  EXPECT_TRUE(parse_definition("%2F/exchanges/x", x));
  EXPECT_FALSE(parse_definition("%2F/exchanges/y", x));  // the value's name is not the key's
  EXPECT_FALSE(parse_definition("%2F/queues/x", x));     // not a queue record
  EXPECT_FALSE(parse_definition("%2F/other/x", x));
  EXPECT_FALSE(parse_definition("%2F/exchanges/x", "not json"));
  EXPECT_FALSE(parse_definition("%2F/exchanges/x", R"({"name":"x"})"));
  EXPECT_FALSE(parse_definition("%zz/exchanges/x", x));
}

}  // namespace
}  // namespace warren::app
