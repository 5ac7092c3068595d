// Definitions: field tables to JSON and back, RabbitMQ's document layout both ways, collecting
// from and declaring into a real vhost with its real store (what is imported survives a
// "restart"), merging users, and the users file.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "auth/password.hpp"
#include "broker/vhost.hpp"
#include "mgmt/definitions.hpp"
#include "mgmt/definitions_json.hpp"
#include "mgmt/users_file.hpp"
#include "store/message_store.hpp"

namespace warren::mgmt {
namespace {

namespace fs = std::filesystem;
using common::field_array;
using common::field_table;
using common::field_value;

field_table table(std::initializer_list<std::pair<const char*, field_value>> kv) {
  field_table t;
  for (const auto& [k, v] : kv) t.set(k, v);
  return t;
}

definitions parse_ok(std::string_view text, std::optional<std::string> vhost = std::nullopt) {
  auto r = parse_definitions(text, vhost);
  if (auto* e = std::get_if<std::string>(&r)) ADD_FAILURE() << *e;
  return std::get_if<definitions>(&r) ? std::get<definitions>(r) : definitions{};
}

std::string parse_error(std::string_view text, std::optional<std::string> vhost = std::nullopt) {
  auto r = parse_definitions(text, vhost);
  if (std::holds_alternative<definitions>(r)) return "(parsed)";
  return std::get<std::string>(r);
}

// ------------------------------------------------------------------------- field tables

TEST(FieldTableJson, EveryTypeToJson) {
  field_table nested = table({{"inner", field_value(int32_t(-5))}});
  field_table t = table({
      {"void", field_value{}},
      {"bool", field_value(true)},
      {"i8", field_value(int8_t(-8))},
      {"u8", field_value(uint8_t(200))},
      {"i16", field_value(int16_t(-300))},
      {"u16", field_value(uint16_t(60000))},
      {"i32", field_value(int32_t(-70000))},
      {"u32", field_value(uint32_t(4000000000u))},
      {"i64", field_value(int64_t(-5000000000))},
      {"u64", field_value(uint64_t(18000000000000000000ull))},
      {"f", field_value(1.5f)},
      {"d", field_value(2.25)},
      {"nan", field_value(std::nan(""))},
      {"dec", field_value(common::decimal{2, 12345})},
      {"s", field_value(std::string("text"))},
      {"bytes", field_value(common::byte_array{"raw"})},
      {"ts", field_value(common::timestamp{1700000000})},
      {"arr", field_value(field_array({field_value(int64_t(1)), field_value("two")}))},
      {"tbl", field_value(nested)},
  });
  json j = to_json(t);
  EXPECT_EQ(dump(j),
            R"({"void":null,"bool":true,"i8":-8,"u8":200,"i16":-300,"u16":60000,"i32":-70000,)"
            R"("u32":4000000000,"i64":-5000000000,"u64":18000000000000000000,"f":1.5,"d":2.25,)"
            R"("nan":null,"dec":123.45,"s":"text","bytes":"raw","ts":1700000000,)"
            R"("arr":[1,"two"],"tbl":{"inner":-5}})");
}

TEST(FieldTableJson, FromJsonUsesTheTypesClientsSend) {
  json j = json::parse(
      R"({"n":5,"neg":-7,"big":5000000000,"f":0.5,"s":"x","b":false,"null":null,"a":[1,[2]],)"
      R"("t":{"k":"v"}})");
  std::string err;
  auto t = table_from_json(j, err);
  ASSERT_TRUE(t) << err;
  field_table want = table({
      {"n", field_value(int32_t(5))},  // 'I' when it fits, as pika sends it
      {"neg", field_value(int32_t(-7))},
      {"big", field_value(int64_t(5000000000))},  // 'l' beyond
      {"f", field_value(0.5)},
      {"s", field_value("x")},
      {"b", field_value(false)},
      {"null", field_value{}},
      {"a", field_value(field_array(
                {field_value(int32_t(1)), field_value(field_array({field_value(int32_t(2))}))}))},
      {"t", field_value(table({{"k", field_value("v")}}))},
  });
  EXPECT_EQ(*t, want);
  EXPECT_EQ(t->entries[0].key, "n");  // file order kept
}

TEST(FieldTableJson, RoundTripOfTheLosslessTypes) {
  field_table t = table({{"x-max-length", field_value(int32_t(10))},
                         {"x-max-length-bytes", field_value(int64_t(1) << 40)},
                         {"x-dead-letter-exchange", field_value("dlx")},
                         {"ratio", field_value(0.75)},
                         {"flag", field_value(true)},
                         {"list", field_value(field_array({field_value("a"), field_value("b")}))},
                         {"sub", field_value(table({{"deep", field_value(int32_t(-1))}}))}});
  std::string err;
  auto back = table_from_json(json::parse(dump(to_json(t))), err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(*back, t);
}

TEST(FieldTableJson, RefusesWhatATableCannotHold) {
  std::string err;
  EXPECT_FALSE(table_from_json(json::parse("[1]"), err));
  EXPECT_FALSE(table_from_json(json::parse(R"({"big":18446744073709551615})"), err));
  EXPECT_NE(err.find("'big'"), std::string::npos) << err;
}

TEST(FieldTableJson, DeepNestingIsRefusedNotRecursedInto) {
  std::string deep = "{\"x\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  std::string err;
  EXPECT_FALSE(table_from_json(json::parse(deep), err));
  EXPECT_NE(err.find("nested deeper than"), std::string::npos) << err;
  std::string fine = "{\"x\":" + std::string(30, '[') + std::string(30, ']') + "}";
  EXPECT_TRUE(table_from_json(json::parse(fine), err)) << err;
}

TEST(FieldTableJson, InvalidUtf8IsReplacedNotThrown) {
  field_table t = table({{"s", field_value(std::string("a\xff"))}});
  EXPECT_EQ(dump(to_json(t)), "{\"s\":\"a\xEF\xBF\xBD\"}");
}

// ------------------------------------------------------------------------- documents

// Shaped like a RabbitMQ 3.10 export (GET /api/definitions).
constexpr std::string_view rabbit_export = R"({
  "rabbit_version": "3.10.8", "rabbitmq_version": "3.10.8",
  "product_name": "RabbitMQ", "product_version": "3.10.8",
  "users": [{"name": "ops", "password_hash": "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR",
             "hashing_algorithm": "rabbit_password_hashing_sha256",
             "tags": ["administrator"], "limits": {}},
            {"name": "old", "password_hash": "", "tags": "management, monitoring"},
            {"name": "plain", "password": "secret"}],
  "vhosts": [{"name": "/"}],
  "permissions": [{"user": "ops", "vhost": "/", "configure": ".*", "write": ".*", "read": "^r"}],
  "topic_permissions": [{"user": "ops", "vhost": "/", "exchange": "amq.topic",
                         "write": "^{username}\\.", "read": ".*"}],
  "parameters": [],
  "global_parameters": [{"name": "internal_cluster_id", "value": "rabbitmq-cluster-id-x"}],
  "policies": [{"vhost": "/", "name": "p", "pattern": ".*", "apply-to": "queues",
                "definition": {"max-length": 5}, "priority": 0}],
  "queues": [{"name": "orders", "vhost": "/", "durable": true, "auto_delete": false,
              "arguments": {"x-max-length": 100, "x-queue-type": "classic"}},
             {"name": "amq.skipped", "vhost": "/", "durable": true, "auto_delete": false,
              "arguments": {}}],
  "exchanges": [{"name": "events", "vhost": "/", "type": "topic", "durable": true,
                 "auto_delete": false, "internal": false, "arguments": {}},
                {"name": "amq.topic", "vhost": "/", "type": "topic", "durable": true,
                 "auto_delete": false, "internal": false, "arguments": {}}],
  "bindings": [{"source": "events", "vhost": "/", "destination": "orders",
                "destination_type": "queue", "routing_key": "order.*", "arguments": {}}]
})";

TEST(DefinitionsJson, ParsesARabbitMqExport) {
  definitions d = parse_ok(rabbit_export);
  ASSERT_EQ(d.users.size(), 3u);
  EXPECT_EQ(d.users[0].name, "ops");
  EXPECT_EQ(d.users[0].tags, std::vector<std::string>{"administrator"});
  EXPECT_EQ(d.users[1].tags, (std::vector<std::string>{"management", "monitoring"}));
  EXPECT_TRUE(auth::verify_password(d.users[2].password_hash, "secret"));
  EXPECT_EQ(d.vhosts, std::vector<std::string>{"/"});
  ASSERT_EQ(d.permissions.size(), 1u);
  EXPECT_EQ(d.permissions[0].perm.read, "^r");
  ASSERT_EQ(d.topic_permissions.size(), 1u);
  EXPECT_EQ(d.topic_permissions[0],
            (topic_permission_def{"ops", "/", "amq.topic", {"^{username}\\.", ".*"}}));
  EXPECT_EQ(d.ignored_global_parameters, 1u);
  EXPECT_EQ(d.ignored_policies, 1u);
  // amq.* queues and exchanges are skipped, as RabbitMQ does.
  ASSERT_EQ(d.queues.size(), 1u);
  EXPECT_EQ(d.queues[0], (queue_def{"/", "orders", true, false,
                                    table({{"x-max-length", field_value(int32_t(100))},
                                           {"x-queue-type", field_value("classic")}})}));
  ASSERT_EQ(d.exchanges.size(), 1u);
  EXPECT_EQ(d.exchanges[0], (exchange_def{"/", "events", "topic", true, false, false, {}}));
  ASSERT_EQ(d.bindings.size(), 1u);
  EXPECT_EQ(d.bindings[0], (binding_def{"/", "events", "orders", true, "order.*", {}}));
}

TEST(DefinitionsJson, PerVhostImportPutsEverythingInThePathVhost) {
  definitions d = parse_ok(rabbit_export, "other");
  EXPECT_TRUE(d.users.empty());  // ignored for one vhost, as RabbitMQ
  EXPECT_TRUE(d.permissions.empty());
  EXPECT_TRUE(d.topic_permissions.empty());
  EXPECT_EQ(d.queues.at(0).vhost, "other");
  EXPECT_EQ(d.exchanges.at(0).vhost, "other");
  EXPECT_EQ(d.bindings.at(0).vhost, "other");
  // ... and needs no "vhost" keys.
  definitions bare = parse_ok(R"({"queues": [{"name": "q"}]})", "v");
  ASSERT_EQ(bare.queues.size(), 1u);
  EXPECT_EQ(bare.queues[0], (queue_def{"v", "q", true, false, {}}));
}

TEST(DefinitionsJson, EmptyBodyIsNothingToDo) {
  definitions d = parse_ok("");
  EXPECT_TRUE(d.queues.empty() && d.users.empty());
}

TEST(DefinitionsJson, RefusalsSayWhatIsWrong) {
  EXPECT_EQ(parse_error("{not json"), "failed_to_parse_json");
  EXPECT_EQ(parse_error("[]"), "definitions must be a JSON object");
  EXPECT_EQ(parse_error(R"({"queues": {}})"), "'queues' must be an array");
  EXPECT_EQ(parse_error(R"({"queues": [{"name": "q", "durable": true}]})"),
            "queue 'q': has no vhost");
  EXPECT_EQ(parse_error(R"({"queues": [{"name": "q", "vhost": "/", "durable": "yes"}]})"),
            "queue 'q': 'durable' must be true or false");
  EXPECT_EQ(parse_error(R"({"exchanges": [{"name": "x", "vhost": "/"}]})"),
            "exchange 'x': 'type' is missing");
  EXPECT_EQ(parse_error(R"({"bindings": [{"source": "x", "vhost": "/", "destination": "q",
                             "destination_type": "topic"}]})"),
            R"(binding from 'x' to topic 'q': 'destination_type' must be "queue" or "exchange")");
  EXPECT_EQ(parse_error(R"({"users": [{"name": "u", "password_hash": "abc",
                           "hashing_algorithm": "rabbit_password_hashing_sha512"}]})"),
            "user 'u': hashing algorithm 'rabbit_password_hashing_sha512' is not supported "
            "(only rabbit_password_hashing_sha256)");
  EXPECT_EQ(parse_error(R"({"users": [{"name": "u", "password_hash": "abc"}]})"),
            "user 'u': password_hash is not a salted SHA-256 hash in base64");
  EXPECT_EQ(parse_error(R"({"queues": [{"name": "q", "vhost": "/",
                            "arguments": {"x": 10000000000000000000}}]})"),
            "queue 'q': 'arguments' argument 'x': integer 10000000000000000000 does not fit a "
            "signed 64-bit field");
  // Patterns are checked as RabbitMQ's set_permissions checks them.
  std::string bad = parse_error(
      R"({"permissions": [{"user": "u", "vhost": "/", "configure": "(", "write": "", "read": ""}]})");
  EXPECT_EQ(bad.rfind("permission of user 'u' in vhost '/': invalid regular expression '(': ", 0),
            0u)
      << bad;
  bad = parse_error(R"({"topic_permissions": [{"user": "u", "vhost": "/", "exchange": "t",
                                               "write": ".*", "read": "[z-a]"}]})");
  EXPECT_EQ(bad.rfind("topic permission of user 'u' in vhost '/' on exchange 't': invalid "
                      "regular expression '[z-a]': ",
                      0),
            0u)
      << bad;
  EXPECT_EQ(parse_error(R"({"topic_permissions": [{"user": "u", "vhost": "/", "exchange": "t",
                                                   "read": ".*"}]})"),
            "topic permission of user 'u' in vhost '/' on exchange 't': 'write' is missing");
}

TEST(DefinitionsJson, ExportLayoutForAllVhosts) {
  definitions d;
  d.users.push_back(user_def{"guest", "HASH", {"administrator"}});
  d.vhosts = {"/"};
  d.permissions.push_back(permission_def{"guest", "/", {}});
  d.topic_permissions.push_back(topic_permission_def{"guest", "/", "amq.topic", {"^a", "^b"}});
  d.queues.push_back(
      queue_def{"/", "q", true, false, table({{"x-max-length", field_value(int64_t(5))}})});
  d.exchanges.push_back(exchange_def{"/", "x", "direct", true, false, true, {}});
  d.bindings.push_back(binding_def{"/", "x", "x2", false, "k", {}});
  EXPECT_EQ(
      dump(export_json(d, export_info{"0.1.0", std::nullopt})),
      R"({"rabbit_version":"3.10.8","rabbitmq_version":"3.10.8","product_name":"Warren",)"
      R"("product_version":"0.1.0","users":[{"name":"guest","password_hash":"HASH",)"
      R"("hashing_algorithm":"rabbit_password_hashing_sha256","tags":["administrator"],)"
      R"("limits":{}}],"vhosts":[{"name":"/"}],"permissions":[{"user":"guest","vhost":"/",)"
      R"("configure":".*","write":".*","read":".*"}],"topic_permissions":[{"user":"guest",)"
      R"("vhost":"/","exchange":"amq.topic","write":"^a","read":"^b"}],"parameters":[],)"
      R"("global_parameters":[],"policies":[],"queues":[{"name":"q","vhost":"/","durable":true,)"
      R"("auto_delete":false,"arguments":{"x-max-length":5}}],"exchanges":[{"name":"x",)"
      R"("vhost":"/","type":"direct","durable":true,"auto_delete":false,"internal":true,)"
      R"("arguments":{}}],"bindings":[{"source":"x","vhost":"/","destination":"x2",)"
      R"("destination_type":"exchange","routing_key":"k","arguments":{}}]})");
}

TEST(DefinitionsJson, ExportLayoutForOneVhostHasNoVhostKeys) {
  definitions d;
  d.queues.push_back(queue_def{"v", "q", true, true, {}});
  EXPECT_EQ(dump(export_json(d, export_info{"0.1.0", std::string("v")})),
            R"({"rabbit_version":"3.10.8","parameters":[],"policies":[],)"
            R"("queues":[{"name":"q","durable":true,"auto_delete":true,"arguments":{}}],)"
            R"("exchanges":[],"bindings":[]})");
}

TEST(DefinitionsJson, ExportThenImportGivesTheSameDefinitions) {
  definitions d;
  d.users.push_back(user_def{
      "u", auth::hash_password("pw"), {"management", "x"}, limit_map{{"max-channels", 3}}});
  d.vhosts = {"/", "v2"};
  d.permissions.push_back(permission_def{"u", "v2", {"^c", "^w", "^r"}});
  d.vhost_limits.push_back(vhost_limits_def{"v2", {{"max-connections", 0}, {"max-queues", -1}}});
  d.queues.push_back(queue_def{"v2", "q", true, false, table({{"a", field_value(int32_t(1))}})});
  d.exchanges.push_back(exchange_def{"/", "x", "fanout", true, true, false, {}});
  d.bindings.push_back(binding_def{"/", "x", "q", true, "", {}});
  definitions back = parse_ok(dump(export_json(d, export_info{"0.1.0", std::nullopt})));
  EXPECT_EQ(back.users, d.users);
  EXPECT_EQ(back.vhosts, d.vhosts);
  EXPECT_EQ(back.permissions, d.permissions);
  EXPECT_EQ(back.vhost_limits, d.vhost_limits);
  EXPECT_EQ(back.queues, d.queues);
  EXPECT_EQ(back.exchanges, d.exchanges);
  EXPECT_EQ(back.bindings, d.bindings);
}

// ------------------------------------------------------------------------- with a vhost

// The vhost lists exchanges by name and bindings in creation order: compare as sets.
std::string dump_key(const exchange_def& x) {
  return x.vhost + "/" + x.name;
}
std::string dump_key(const queue_def& q) {
  return q.vhost + "/" + q.name;
}
std::string dump_key(const binding_def& b) {
  return b.vhost + "/" + b.source + "/" + b.destination + "/" + b.routing_key;
}

template <typename T>
std::vector<T> sorted(std::vector<T> v) {
  std::sort(v.begin(), v.end(), [](const T& a, const T& b) { return dump_key(a) < dump_key(b); });
  return v;
}

struct temp_dir {
  temp_dir() {
    path = fs::temp_directory_path() /
           ("warren-mgmt-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~temp_dir() { fs::remove_all(path); }
  fs::path path;
  static inline int counter = 0;
};

// One broker "life": a vhost recovered from its store on `dir`.
struct life {
  explicit life(const fs::path& dir, std::string name = "/")
      : v(std::move(name), 0), store(dir, store::store_options{.fsync = false}) {
    store.recover(v);
  }
  ~life() { store.flush(); }
  broker::vhost v;
  store::message_store store;
};

TEST(DefinitionsVhost, CollectsDurableDefinitionsOnly) {
  temp_dir dir;
  life l(dir.path);
  auto& v = l.v;
  ASSERT_FALSE(v.declare_exchange({"dx", "topic", true, false, false, {}}, false));
  ASSERT_FALSE(v.declare_exchange({"tx", "fanout", false, false, false, {}}, false));
  broker::queue_declare_request q;
  q.name = "dq";
  q.durable = true;
  q.arguments = table({{"x-max-length", field_value(int32_t(7))}});
  ASSERT_TRUE(std::holds_alternative<broker::queue_declare_ok>(v.declare_queue(q)));
  q.name = "tq";
  q.durable = false;
  q.arguments = {};
  ASSERT_TRUE(std::holds_alternative<broker::queue_declare_ok>(v.declare_queue(q)));
  q.name = "xq";
  q.durable = true;
  q.exclusive = true;
  q.connection_id = 9;
  ASSERT_TRUE(std::holds_alternative<broker::queue_declare_ok>(v.declare_queue(q)));
  ASSERT_FALSE(v.bind("dx", std::get<broker::dest_id>(v.queue_dest("dq", 0, false)), "a.#",
                      table({{"k", field_value("v")}})));
  ASSERT_FALSE(v.bind("dx", std::get<broker::dest_id>(v.queue_dest("tq", 0, false)), "b", {}));

  definitions d;
  collect(v, d);
  ASSERT_EQ(d.exchanges.size(), 1u);  // not "", not amq.*, not the transient one
  EXPECT_EQ(d.exchanges[0], (exchange_def{"/", "dx", "topic", true, false, false, {}}));
  ASSERT_EQ(d.queues.size(), 1u);  // not the transient or the exclusive one
  EXPECT_EQ(d.queues[0].name, "dq");
  // Arguments keep their field types (an int32 stays one until it goes through JSON).
  EXPECT_EQ(d.queues[0].arguments, table({{"x-max-length", field_value(int32_t(7))}}));
  ASSERT_EQ(d.bindings.size(), 1u);
  EXPECT_EQ(d.bindings[0],
            (binding_def{"/", "dx", "dq", true, "a.#", table({{"k", field_value("v")}})}));
}

TEST(DefinitionsVhost, ImportedDefinitionsAreJournalledAndComeBackAfterARestart) {
  temp_dir dir;
  definitions want = parse_ok(R"({
    "exchanges": [{"name": "in", "vhost": "/", "type": "direct", "durable": true,
                   "auto_delete": false, "internal": false, "arguments": {}},
                  {"name": "fan", "vhost": "/", "type": "fanout", "durable": true,
                   "auto_delete": false, "internal": true, "arguments": {}}],
    "queues": [{"name": "work", "vhost": "/", "durable": true, "auto_delete": false,
                "arguments": {"x-max-length": 3, "x-dead-letter-exchange": "fan"}}],
    "bindings": [{"source": "in", "vhost": "/", "destination": "fan",
                  "destination_type": "exchange", "routing_key": "k", "arguments": {}},
                 {"source": "fan", "vhost": "/", "destination": "work",
                  "destination_type": "queue", "routing_key": "", "arguments": {"h": 1}}]
  })");
  ASSERT_FALSE(precheck(want));
  {
    life l(dir.path);
    auto err = apply(l.v, want);
    ASSERT_FALSE(err) << *err;
    // Applying again changes nothing and is no error (existing ones are left alone).
    err = apply(l.v, want);
    ASSERT_FALSE(err) << *err;
  }
  life again(dir.path);
  definitions got;
  collect(again.v, got);
  EXPECT_EQ(sorted(got.exchanges), sorted(want.exchanges));
  EXPECT_EQ(sorted(got.queues), sorted(want.queues));
  EXPECT_EQ(sorted(got.bindings), sorted(want.bindings));
}

TEST(DefinitionsVhost, SlicesResumeWhereTheyStopped) {
  temp_dir dir;
  life l(dir.path, "v");
  definitions d = parse_ok(R"({
    "exchanges": [{"name": "x", "vhost": "v", "type": "direct"},
                  {"name": "elsewhere", "vhost": "other", "type": "direct"}],
    "queues": [{"name": "q1", "vhost": "v"}, {"name": "q2", "vhost": "v"}],
    "bindings": [{"source": "x", "vhost": "v", "destination": "q1", "destination_type": "queue",
                  "routing_key": "a"},
                 {"source": "x", "vhost": "v", "destination": "q2", "destination_type": "queue",
                  "routing_key": "b"}]
  })");
  size_t next = 0, calls = 0;
  for (;;) {
    ++calls;
    auto r = apply_some(l.v, d, next, 2);
    ASSERT_FALSE(std::holds_alternative<std::string>(r)) << std::get<std::string>(r);
    if (std::holds_alternative<apply_done>(r)) break;
    ASSERT_LT(calls, 10u);
  }
  EXPECT_EQ(calls, 3u);  // five items of vhost "v", two per slice
  definitions got;
  collect(l.v, got);
  EXPECT_EQ(got.exchanges.size(), 1u);
  EXPECT_EQ(got.queues.size(), 2u);
  EXPECT_EQ(got.bindings.size(), 2u);
}

TEST(DefinitionsVhost, FirstErrorIsReportedInRabbitMqWords) {
  temp_dir dir;
  life l(dir.path);
  definitions d = parse_ok(R"({
    "queues": [{"name": "q", "vhost": "/"}],
    "bindings": [{"source": "amq.direct", "vhost": "/", "destination": "q",
                  "destination_type": "queue", "routing_key": "ok"},
                 {"source": "nope", "vhost": "/", "destination": "q",
                  "destination_type": "queue"},
                 {"source": "amq.direct", "vhost": "/", "destination": "missing",
                  "destination_type": "queue"}]
  })");
  auto err = apply(l.v, d);
  ASSERT_TRUE(err);
  EXPECT_EQ(*err, "not_found: no exchange 'nope' in vhost '/'");
  // What came before the error stays, as in RabbitMQ.
  definitions got;
  collect(l.v, got);
  EXPECT_EQ(got.queues.size(), 1u);
  EXPECT_EQ(got.bindings.size(), 1u);
}

TEST(DefinitionsVhost, PrecheckRefusesBadTypesAndArguments) {
  definitions d =
      parse_ok(R"({"exchanges": [{"name": "x", "vhost": "/", "type": "x-no-such-type"}]})");
  EXPECT_EQ(precheck(d).value_or(""),
            "command_invalid: unknown exchange type 'x-no-such-type' (exchange 'x' in vhost '/')");
  d = parse_ok(R"({"queues": [{"name": "q", "vhost": "/", "arguments": {"x-max-length": -1}}]})");
  auto why = precheck(d);
  ASSERT_TRUE(why);
  EXPECT_EQ(why->rfind("precondition_failed: ", 0), 0u) << *why;
  EXPECT_NE(why->find("(queue 'q' in vhost '/')"), std::string::npos) << *why;
}

// ------------------------------------------------------------------------- users

TEST(DefinitionsUsers, AddReplaceAndPermissions) {
  auth::user_store store;
  auth::user guest{"guest", auth::hash_password("guest"), {"administrator"}, {}};
  guest.permissions["/"] = auth::permission{};
  store.add_user(guest);
  definitions d = parse_ok(R"({
    "users": [{"name": "guest", "password": "changed", "tags": []},
              {"name": "new", "password": "pw", "tags": ["management"]}],
    "permissions": [{"user": "new", "vhost": "/", "configure": "", "write": "w", "read": "r"}]
  })");
  ASSERT_FALSE(apply_users(store, d));
  auto g = store.find("guest");
  EXPECT_TRUE(auth::verify_password(g->password_hash, "changed"));
  EXPECT_TRUE(g->tags.empty());
  EXPECT_TRUE(auth::user_store::may_access_vhost(*g, "/"));  // kept its permissions
  auto n = store.find("new");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->permissions.at("/"), (auth::permission{"", "w", "r"}));
}

TEST(DefinitionsUsers, TopicPermissionsAreSetAndKeptOnReplace) {
  auth::user_store store;
  auth::user guest{"guest", auth::hash_password("guest"), {"administrator"}, {}};
  guest.permissions["/"] = auth::permission{};
  guest.topic_permissions["/"]["amq.topic"] = auth::topic_permission{"^g", "^g"};
  store.add_user(guest);
  uint64_t before = store.generation();
  definitions d = parse_ok(R"({
    "users": [{"name": "guest", "password": "changed"}, {"name": "n", "password": "pw"}],
    "permissions": [{"user": "n", "vhost": "/", "configure": "", "write": ".*", "read": ".*"}],
    "topic_permissions": [{"user": "n", "vhost": "/", "exchange": "amq.topic",
                           "write": "^{username}\\.", "read": ".*"}]
  })");
  ASSERT_FALSE(apply_users(store, d));
  EXPECT_EQ(store.find("guest")->topic_permissions, guest.topic_permissions);
  EXPECT_EQ(store.find("n")->topic_permissions.at("/").at("amq.topic"),
            (auth::topic_permission{"^{username}\\.", ".*"}));
  // Compiled for the store's checks, with the user's name expanded.
  EXPECT_GT(store.generation(), before);
  auto a = store.access("n", "/");
  ASSERT_TRUE(a && a->topic("amq.topic"));
  EXPECT_TRUE(a->topic("amq.topic")->write.matches("n.x"));
  EXPECT_FALSE(a->topic("amq.topic")->write.matches("guest.x"));

  definitions ghost = parse_ok(R"({"topic_permissions": [{"user": "ghost", "vhost": "/",
      "exchange": "t", "write": "", "read": ""}]})");
  auto err = apply_users(store, ghost);
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("topic permission in vhost '/' for user 'ghost'"), std::string::npos) << *err;
}

TEST(DefinitionsUsers, PermissionForAnUnknownUserChangesNothing) {
  auth::user_store store;
  definitions d = parse_ok(R"({
    "users": [{"name": "a", "password": "pw"}],
    "permissions": [{"user": "ghost", "vhost": "/", "configure": "", "write": "", "read": ""}]
  })");
  auto err = apply_users(store, d);
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("'ghost'"), std::string::npos) << *err;
  EXPECT_FALSE(store.find("a"));
}

TEST(UsersFile, SavedUsersLoadIntoAFreshStore) {
  temp_dir dir;
  auth::user_store store;
  auth::user a{"alice", auth::hash_password("pw"), {"administrator", "management"}, {}};
  a.permissions["/"] = auth::permission{};
  a.permissions["v2"] = auth::permission{"^a", "^b", "^c"};
  a.topic_permissions["v2"]["t"] = auth::topic_permission{"^{username}-", ""};
  store.add_user(a);
  store.add_user(auth::user{"bob", "", {}, {}});
  users_file f(dir.path / "users.json");
  std::string err;
  ASSERT_TRUE(f.save(store, err)) << err;
  EXPECT_FALSE(fs::exists(dir.path / "users.json.tmp"));
  EXPECT_EQ(fs::status(dir.path / "users.json").permissions() & fs::perms::others_read,
            fs::perms::none);  // password hashes are not for everyone

  auth::user_store fresh;
  fresh.add_user(auth::user{"alice", auth::hash_password("config"), {}, {}});  // the file wins
  ASSERT_TRUE(f.load(fresh, err)) << err;
  EXPECT_EQ(*fresh.find("alice"), a);
  EXPECT_EQ(*fresh.find("bob"), (auth::user{"bob", "", {}, {}}));
}

TEST(UsersFile, MissingIsFineMalformedIsNot) {
  temp_dir dir;
  auth::user_store store;
  std::string err;
  EXPECT_TRUE(users_file(dir.path / "absent.json").load(store, err));
  std::ofstream(dir.path / "bad.json") << "{\"users\": 3}";
  EXPECT_FALSE(users_file(dir.path / "bad.json").load(store, err));
  EXPECT_NE(err.find("'users' must be an array"), std::string::npos) << err;
}

}  // namespace
}  // namespace warren::mgmt
