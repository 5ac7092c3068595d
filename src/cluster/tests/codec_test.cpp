// etcd's JSON gateway format: requests, answers as etcd 3.4 writes them, the watch stream split
// at every byte.
#include "cluster/etcd_client.hpp"
#include "cluster/etcd_codec.hpp"

#include <gtest/gtest.h>

using namespace warren::cluster;

TEST(etcd_codec, prefix_end) {
  EXPECT_EQ(prefix_end("/warren/c/"), "/warren/c0");
  EXPECT_EQ(prefix_end("a\xff"), "b");
  EXPECT_EQ(prefix_end("\xff\xff"), std::string(1, '\0'));
  EXPECT_EQ(prefix_end(""), std::string(1, '\0'));
}

TEST(etcd_codec, requests_are_base64_and_strings) {
  EXPECT_EQ(put_request("a", "b", 255).dump(), R"({"key":"YQ==","lease":"255","value":"Yg=="})");
  EXPECT_EQ(range_request("a", "b").dump(), R"({"key":"YQ==","range_end":"Yg=="})");
  EXPECT_EQ(cmp_version_equal("a", 0).dump(),
            R"({"key":"YQ==","result":"EQUAL","target":"VERSION","version":"0"})");
  EXPECT_EQ(cmp_lease_equal("a", 9).dump(),
            R"({"key":"YQ==","lease":"9","result":"EQUAL","target":"LEASE"})");
  EXPECT_EQ(cmp_value_equal("a", "b").dump(),
            R"({"key":"YQ==","result":"EQUAL","target":"VALUE","value":"Yg=="})");
  EXPECT_EQ(cmp_version_greater("a", 0).dump(),
            R"({"key":"YQ==","result":"GREATER","target":"VERSION","version":"0"})");
  EXPECT_EQ(op_delete("a").dump(), R"({"request_delete_range":{"key":"YQ=="}})");
  EXPECT_EQ(watch_create_request("a", "b", 7).dump(),
            R"({"create_request":{"key":"YQ==","range_end":"Yg==","start_revision":"7"}})");
}

TEST(etcd_codec, range_answer) {
  // As etcd 3.4.23 answers.
  auto j = json::parse(
      R"({"header":{"cluster_id":"3249","member_id":"3319","revision":"2","raft_term":"2"},)"
      R"("kvs":[{"key":"YQ==","create_revision":"2","mod_revision":"2","version":"1","value":"Yg==","lease":"77"}],"count":"1"})");
  std::string err;
  auto r = parse_range(j, err);
  ASSERT_TRUE(r) << err;
  EXPECT_EQ(r->revision, 2);
  ASSERT_EQ(r->kvs.size(), 1u);
  EXPECT_EQ(r->kvs[0].key, "a");
  EXPECT_EQ(r->kvs[0].value, "b");
  EXPECT_EQ(r->kvs[0].lease, 77);
  EXPECT_EQ(r->kvs[0].version, 1);
  // No kvs: nothing there.
  r = parse_range(json::parse(R"({"header":{"revision":"5"}})"), err);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->kvs.empty());
  // Not base64, not a number.
  EXPECT_FALSE(parse_range(json::parse(R"({"kvs":[{"key":"!!"}]})"), err));
  EXPECT_NE(err.find("base64"), std::string::npos);
  EXPECT_FALSE(parse_range(json::parse(R"({"header":{"revision":"x"}})"), err));
}

TEST(etcd_codec, txn_answer) {
  std::string err;
  // A failed compare: no "succeeded", the failure branch's range.
  auto r = parse_txn(
      json::parse(
          R"({"header":{"revision":"2"},"responses":[{"response_range":{"header":)"
          R"({"revision":"2"},"kvs":[{"key":"YQ==","value":"Yg==","lease":"9"}],"count":"1"}}]})"),
      err);
  ASSERT_TRUE(r) << err;
  EXPECT_FALSE(r->succeeded);
  ASSERT_EQ(r->ranges.size(), 1u);
  EXPECT_EQ(r->ranges[0].kvs[0].lease, 9);
  r = parse_txn(
      json::parse(
          R"({"header":{"revision":"3"},"succeeded":true,"responses":[{"response_put":{}}]})"),
      err);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->succeeded);
  EXPECT_EQ(r->revision, 3);
}

TEST(etcd_codec, leases) {
  std::string err;
  auto g =
      parse_lease_grant(json::parse(R"({"header":{},"ID":"2324035853827294981","TTL":"3"})"), err);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->id, 2324035853827294981);
  EXPECT_EQ(g->ttl, 3);
  EXPECT_FALSE(parse_lease_grant(json::parse(R"({"TTL":"3"})"), err));
  // A keepalive of an unknown lease answers without TTL.
  EXPECT_EQ(parse_keepalive(json::parse(R"({"result":{"header":{},"ID":"1"}})"), err), 0);
  EXPECT_EQ(parse_keepalive(json::parse(R"({"result":{"ID":"1","TTL":"2"}})"), err), 2);
  EXPECT_FALSE(parse_keepalive(json::parse(R"({"error":"x"})"), err));
  EXPECT_EQ(gateway_error(json::parse(
                R"({"error":"etcdserver: requested lease not found","message":"m","code":5})")),
            "etcdserver: requested lease not found");
}

TEST(etcd_codec, watch_messages) {
  std::string err;
  auto m = parse_watch_message(
      json::parse(
          R"({"result":{"header":{"revision":"4"},"events":[{"kv":{"key":"YQ==","mod_revision":"3","value":"ZA=="}},)"
          R"({"type":"DELETE","kv":{"key":"YQ==","mod_revision":"4"}}]}})"),
      err);
  ASSERT_TRUE(m) << err;
  ASSERT_EQ(m->events.size(), 2u);
  EXPECT_FALSE(m->events[0].deleted);
  EXPECT_EQ(m->events[0].kv.value, "d");
  EXPECT_TRUE(m->events[1].deleted);
  EXPECT_EQ(m->events[1].kv.mod_revision, 4);
  m = parse_watch_message(
      json::parse(R"({"result":{"header":{"revision":"9"},"canceled":true,"compact_revision":"5",)"
                  R"("cancel_reason":"mvcc: required revision has been compacted"}})"),
      err);
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->canceled);
  EXPECT_EQ(m->compact_revision, 5);
  EXPECT_FALSE(parse_watch_message(json::parse(R"({"error":"grpc: stopped","code":14})"), err));
  EXPECT_EQ(err, "grpc: stopped");
}

TEST(etcd_codec, stream_split_at_every_byte) {
  const std::string stream =
      "{\"result\":{\"created\":true}}\n"
      "{\"result\":{\"events\":[{\"kv\":{\"key\":\"e30=\",\"value\":\"In0iXFwi\"}}]}}\n"
      "{\"s\":\"a \\\" } brace in a string\"}\n";
  const std::vector<std::string> want = {
      "{\"result\":{\"created\":true}}",
      "{\"result\":{\"events\":[{\"kv\":{\"key\":\"e30=\",\"value\":\"In0iXFwi\"}}]}}",
      "{\"s\":\"a \\\" } brace in a string\"}"};
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    for (size_t cut2 = cut; cut2 <= stream.size(); cut2 += 7) {
      json_stream_splitter s;
      std::vector<std::string> got;
      auto out = [&](std::string_view o) { got.emplace_back(o); };
      ASSERT_TRUE(s.feed(std::string_view(stream).substr(0, cut), out));
      ASSERT_TRUE(s.feed(std::string_view(stream).substr(cut, cut2 - cut), out));
      ASSERT_TRUE(s.feed(std::string_view(stream).substr(cut2), out));
      EXPECT_EQ(got, want) << "cut at " << cut << ", " << cut2;
      EXPECT_EQ(s.buffered(), 0u);
    }
  }
  json_stream_splitter bad;
  EXPECT_FALSE(bad.feed("x{}", [](std::string_view) {}));
  json_stream_splitter unbalanced;
  EXPECT_FALSE(unbalanced.feed("{]]", [](std::string_view) {}));
}

TEST(etcd_endpoints, parsing) {
  std::string err;
  auto e = parse_endpoints("http://127.0.0.1:2379,http://[::1]:2380/,localhost", err);
  ASSERT_TRUE(e) << err;
  ASSERT_EQ(e->size(), 3u);
  EXPECT_EQ((*e)[0].host, "127.0.0.1");
  EXPECT_EQ((*e)[0].port, "2379");
  EXPECT_EQ((*e)[1].host, "::1");
  EXPECT_EQ((*e)[1].port, "2380");
  EXPECT_EQ((*e)[2].text(), "http://localhost:2379");
  EXPECT_FALSE(parse_endpoints("https://x:1", err));
  EXPECT_NE(err.find("https"), std::string::npos);
  EXPECT_FALSE(parse_endpoints("http://x:99999", err));
  EXPECT_FALSE(parse_endpoints("http://x:12/path", err));
  EXPECT_FALSE(parse_endpoints("", err));
}
