// The opening handshake: the RFC 6455 example key, each refusal with its status, header lists
// in any case and on several lines, subprotocol choice, and permessage-deflate offers.
#include <gtest/gtest.h>

#include "web/ws_handshake.hpp"

namespace warren::web {
namespace {

constexpr std::string_view sample_key = "dGhlIHNhbXBsZSBub25jZQ==";  // RFC 6455 1.3

std::vector<http_header> good_headers() {
  return {{"Host", "server.example.com"},   {"Upgrade", "websocket"},
          {"Connection", "Upgrade"},        {"Sec-WebSocket-Key", sample_key},
          {"Origin", "http://example.com"}, {"Sec-WebSocket-Version", "13"}};
}

ws_handshake_result run(const std::vector<http_header>& h, ws_handshake_options o = {},
                        std::string_view method = "GET", unsigned version = 11) {
  ws_upgrade_request req;
  req.method = method;
  req.version = version;
  req.headers = h;
  return ws_handshake(req, o);
}

std::string header(const ws_handshake_result& r, std::string_view name) {
  for (const auto& [n, v] : r.headers)
    if (n == name) return v;
  return "<none>";
}

std::vector<http_header> without(std::vector<http_header> h, std::string_view name) {
  std::erase_if(h, [&](const http_header& x) { return x.name == name; });
  return h;
}

std::vector<http_header> with(std::vector<http_header> h, std::string_view name,
                              std::string_view value) {
  h = without(h, name);
  h.push_back({name, value});
  return h;
}

TEST(WsHandshake, Rfc6455Example) {
  EXPECT_EQ(ws_accept_key(sample_key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  auto r = run(good_headers());
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(header(r, "Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  EXPECT_EQ(header(r, "Upgrade"), "websocket");
  EXPECT_EQ(header(r, "Connection"), "Upgrade");
  EXPECT_EQ(header(r, "Sec-WebSocket-Protocol"), "<none>");
  EXPECT_EQ(header(r, "Sec-WebSocket-Extensions"), "<none>");
  EXPECT_FALSE(r.deflate);
  EXPECT_EQ(ws_format_response(r),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
}

TEST(WsHandshake, HeaderNamesAndTokensInAnyCaseAndLists) {
  std::vector<http_header> h = {{"host", "x"},
                                {"UPGRADE", "WebSocket"},
                                {"connection", "keep-alive, upgrade"},
                                {"sec-websocket-key", sample_key},
                                {"SEC-WEBSOCKET-VERSION", " 13 "}};
  EXPECT_TRUE(run(h).ok()) << run(h).error;
  // Connection on two header lines.
  std::vector<http_header> split = {{"Host", "x"},
                                    {"Upgrade", "websocket"},
                                    {"Connection", "keep-alive"},
                                    {"Connection", "Upgrade"},
                                    {"Sec-WebSocket-Key", sample_key},
                                    {"Sec-WebSocket-Version", "13"}};
  EXPECT_TRUE(run(split).ok());
  EXPECT_TRUE(http_list_has_token("a,b ,\tUpgrade\t", "upgrade"));
  EXPECT_FALSE(http_list_has_token("Upgrades", "upgrade"));
  EXPECT_FALSE(http_list_has_token("keep-alive", "upgrade"));
  EXPECT_FALSE(http_list_has_token("", "upgrade"));
}

TEST(WsHandshake, Refusals) {
  struct refusal {
    std::vector<http_header> headers;
    unsigned status;
  };
  auto h = good_headers();
  const refusal cases[] = {
      {without(h, "Host"), 400},
      {without(h, "Upgrade"), 400},
      {with(h, "Upgrade", "h2c"), 400},
      {without(h, "Connection"), 400},
      {with(h, "Connection", "keep-alive"), 400},
      {without(h, "Sec-WebSocket-Key"), 400},
      {with(h, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ"), 400},    // unpadded
      {with(h, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZSE="), 400},  // 17 bytes
      {with(h, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25j"), 400},      // 15 bytes
      {with(h, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=!"), 400},
      {with(h, "Sec-WebSocket-Key", ""), 400},
      {without(h, "Sec-WebSocket-Version"), 400},
      {with(h, "Sec-WebSocket-Version", "8"), 426},
      {with(h, "Sec-WebSocket-Version", "13, 8"), 426},
      {with(h, "Sec-WebSocket-Version", "14"), 426},
  };
  for (const auto& c : cases) {
    auto r = run(c.headers);
    EXPECT_EQ(r.status, c.status) << r.error;
    EXPECT_FALSE(r.error.empty());
    EXPECT_FALSE(r.ok());
    if (c.status == 426) {
      EXPECT_EQ(header(r, "Sec-WebSocket-Version"), "13");
      EXPECT_NE(ws_format_response(r).find("\r\nSec-WebSocket-Version: 13\r\n"), std::string::npos);
    }
  }
  auto twice_key = good_headers();
  twice_key.push_back({"Sec-WebSocket-Key", sample_key});
  EXPECT_EQ(run(twice_key).status, 400u);
  auto twice_version = good_headers();
  twice_version.push_back({"Sec-WebSocket-Version", "13"});
  EXPECT_EQ(run(twice_version).status, 400u);

  auto post = run(good_headers(), {}, "POST");
  EXPECT_EQ(post.status, 405u);
  EXPECT_EQ(header(post, "Allow"), "GET");
  EXPECT_EQ(run(good_headers(), {}, "GET", 10).status, 400u);

  std::string resp = ws_format_response(run(without(h, "Host")));
  EXPECT_EQ(resp.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u);
  EXPECT_NE(resp.find("Connection: close\r\n"), std::string::npos);
  EXPECT_NE(resp.find("Content-Length: "), std::string::npos);
}

TEST(WsHandshake, KeyValidity) {
  EXPECT_TRUE(ws_valid_key(sample_key));
  EXPECT_TRUE(ws_valid_key("AAAAAAAAAAAAAAAAAAAAAA=="));
  EXPECT_FALSE(ws_valid_key("AAAAAAAAAAAAAAAAAAAAAB=="));  // non-zero unused bits
  EXPECT_FALSE(ws_valid_key("AAAAAAAAAAAAAAAAAAAAAAAA"));  // 18 bytes
}

TEST(WsHandshake, SubprotocolIsTheClientsFirstThatWeSpeak) {
  std::string_view ours[] = {"warren.v1", "chat"};
  ws_handshake_options o;
  o.subprotocols = ours;
  auto h = good_headers();
  h.push_back({"Sec-WebSocket-Protocol", "mqtt, chat"});
  h.push_back({"Sec-WebSocket-Protocol", "warren.v1"});
  auto r = run(h, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.subprotocol, "chat");
  EXPECT_EQ(header(r, "Sec-WebSocket-Protocol"), "chat");
  EXPECT_EQ(ws_select_subprotocol("mqtt, stomp", ours), "");
  EXPECT_EQ(ws_select_subprotocol("Chat", ours), "");  // names are case-sensitive
  // Nothing in common: accepted without a subprotocol.
  auto none = run(with(good_headers(), "Sec-WebSocket-Protocol", "mqtt"), o);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(header(none, "Sec-WebSocket-Protocol"), "<none>");
}

TEST(WsHandshake, DeflateNegotiation) {
  const std::string agreed =
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
  // What browsers send, and other acceptable offers.
  for (std::string_view offer :
       {"permessage-deflate; client_max_window_bits", "permessage-deflate",
        "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits=10",
        "permessage-deflate;server_max_window_bits=15",
        "permessage-deflate; client_max_window_bits=\"12\"",
        "x-webkit-deflate-frame, permessage-deflate",
        "permessage-deflate; server_max_window_bits=10, permessage-deflate"}) {
    EXPECT_EQ(ws_negotiate_deflate(offer), agreed) << offer;
  }
  for (std::string_view offer :
       {"", "x-webkit-deflate-frame", "permessage-deflate; server_max_window_bits=10",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=08",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover=1", "permessage-deflate; unknown_param",
        "permessage-deflate; client_max_window_bits=\"1 2\"",
        "permessage-deflate; client_max_window_bits=\"12"}) {
    EXPECT_EQ(ws_negotiate_deflate(offer), "") << offer;
  }

  auto h = with(good_headers(), "Sec-WebSocket-Extensions",
                "permessage-deflate; client_max_window_bits");
  ws_handshake_options o;
  EXPECT_FALSE(run(h, o).deflate);  // not enabled on our side
  o.permessage_deflate = true;
  auto r = run(h, o);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.deflate);
  EXPECT_EQ(header(r, "Sec-WebSocket-Extensions"), agreed);
}

}  // namespace
}  // namespace warren::web
