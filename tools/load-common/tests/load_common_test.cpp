// The load tools' shared pieces: tokens the gateway's verifier accepts, source address
// arithmetic, the event scan, and the streaming HTTP decoders with input split at every byte.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "load-common/event_scan.hpp"
#include "load-common/http_stream.hpp"
#include "load-common/source_address.hpp"
#include "web/jwt.hpp"

namespace warren::load {
namespace {

TEST(JwtSign, TheGatewaysVerifierAcceptsTheToken) {
  web::jwt_config c;
  c.hs256_secret = "s3cret";
  web::jwt_verifier v(c);
  auto token = web::jwt_sign_hs256({{"sub", "user-7"}, {"exp", 2000000000}}, "s3cret");
  auto r = v.verify(token, 1900000000);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.claims.sub, "user-7");
  EXPECT_FALSE(v.verify(web::jwt_sign_hs256({{"sub", "user-7"}}, "other"), 1900000000).ok());
}

TEST(SourceAddresses, SpreadOverLoopbackSkippingZeroAnd255) {
  source_addresses s("127.1.0.1", 1000);
  EXPECT_EQ(s.for_connection(0).to_string(), "127.1.0.1");
  EXPECT_EQ(s.for_connection(999).to_string(), "127.1.0.1");
  EXPECT_EQ(s.for_connection(1000).to_string(), "127.1.0.2");
  EXPECT_EQ(s.for_connection(253 * 1000).to_string(), "127.1.0.254");
  EXPECT_EQ(s.for_connection(254 * 1000).to_string(), "127.1.1.1");
  EXPECT_EQ(s.after(0).to_string(), "127.1.0.1");
  EXPECT_EQ(s.after(1).to_string(), "127.1.0.2");
  EXPECT_EQ(s.after(1000).to_string(), "127.1.0.2");
  EXPECT_EQ(s.after(1001).to_string(), "127.1.0.3");
  EXPECT_EQ(source_addresses("127.0.0.0", 1).for_connection(0).to_string(), "127.0.0.1");
  EXPECT_EQ(source_addresses("127.0.0.255", 1).for_connection(0).to_string(), "127.0.1.1");
  EXPECT_THROW(source_addresses("10.0.0.1", 1), std::invalid_argument);
  EXPECT_THROW(source_addresses("127.0.0.1", 0), std::invalid_argument);
  EXPECT_THROW(source_addresses("127.255.255.254", 1).for_connection(1), std::out_of_range);
}

TEST(EventScan, WarrenEventsRepliesAndBareBodies) {
  auto e = scan_event(R"({"seq":1764000000000041,"type":"message","room":null,"from":null,)"
                      R"("data":{"t":1764000000123456},"ts":1764000000124})");
  EXPECT_TRUE(e.has_seq);
  EXPECT_EQ(e.seq, 1764000000000041);
  EXPECT_EQ(e.type, "message");
  EXPECT_TRUE(e.has_t);
  EXPECT_EQ(e.t, 1764000000123456u);

  e = scan_event(R"({"seq": null, "type": "ok", "op": "join", "room": "lobby", "id": 1})");
  EXPECT_FALSE(e.has_seq);
  EXPECT_EQ(e.type, "ok");
  EXPECT_EQ(e.op, "join");
  EXPECT_FALSE(e.has_t);  // "ts" is not "t"

  e = scan_event(R"({"t":42})");
  EXPECT_FALSE(e.has_seq);
  EXPECT_TRUE(e.type.empty());
  EXPECT_EQ(e.t, 42u);
  EXPECT_FALSE(scan_event("not json").has_t);
}

TEST(ResponseHead, UpgradeAndEventStream) {
  std::string up =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "sec-websocket-accept:  s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x02hi";
  for (size_t k = 0; k < up.size(); ++k) {
    auto h = parse_response_head(std::string_view(up).substr(0, k));
    EXPECT_EQ(h.size, k < up.size() - 4 ? 0u : up.size() - 4) << k;
  }
  auto h = parse_response_head(up);
  EXPECT_EQ(h.status, 101);
  EXPECT_EQ(h.size, up.size() - 4);
  EXPECT_EQ(h.websocket_accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  EXPECT_FALSE(h.chunked);

  h = parse_response_head(
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(h.status, 200);
  EXPECT_TRUE(h.chunked);
  EXPECT_EQ(h.content_type, "text/event-stream");
  EXPECT_EQ(parse_response_head("HTTP/1.1 401 Unauthorized\r\n\r\n").status, 401);
  EXPECT_EQ(parse_response_head("SSH-2.0-x\r\n\r\n").status, -1);
}

// Feeds `wire` to a decoder in two pieces split at `k`, as the flood client does (each read's
// bytes decoded in place), and returns the body.
std::string dechunk(std::string wire, size_t k, chunked_decoder& d) {
  std::string body;
  for (auto piece : {wire.substr(0, k), wire.substr(k)}) {
    size_t n = d.decode(piece);
    body.append(piece, 0, n);
  }
  return body;
}

TEST(ChunkedDecoder, EverySplit) {
  std::string wire = "5\r\nhello\r\n1;ext=1\r\n \r\nB\r\nworld\nagain\r\n0\r\n\r\nignored";
  for (size_t k = 0; k <= wire.size(); ++k) {
    chunked_decoder d;
    EXPECT_EQ(dechunk(wire, k, d), "hello world\nagain") << k;
    EXPECT_TRUE(d.done());
  }
  // One byte at a time.
  chunked_decoder d;
  std::string body;
  for (char c : wire) {
    std::string one(1, c);
    body.append(one, 0, d.decode(one));
  }
  EXPECT_EQ(body, "hello world\nagain");
}

TEST(ChunkedDecoder, MalformedFails) {
  for (std::string bad : {"x\r\n", "5\r\nhelloXX", "5\n", "fffffffffffffffff\r\n"}) {
    chunked_decoder d;
    d.decode(bad);
    EXPECT_TRUE(d.failed()) << bad;
  }
}

TEST(SseParser, EventsAtEverySplit) {
  std::string wire =
      "retry: 3000\n\n: ping\n\nid: 7\ndata: {\"seq\":7}\n\nid: 8\r\ndata:a\r\ndata: b\r\n\r\n";
  std::vector<std::string> expected{"{\"seq\":7}", "a\nb"};
  for (size_t k = 0; k <= wire.size(); ++k) {
    sse_parser p;
    std::vector<std::string> got;
    auto on = [&](std::string_view d) { got.emplace_back(d); };
    p.feed(std::string_view(wire).substr(0, k), on);
    p.feed(std::string_view(wire).substr(k), on);
    EXPECT_EQ(got, expected) << k;
  }
}

}  // namespace
}  // namespace warren::load
