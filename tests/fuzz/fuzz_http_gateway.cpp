// Fuzzes the web gateway as a socket feeds it: raw bytes into a net::connection whose handler is
// the real web::gateway_handler of a fresh gateway (its own vhost, with a journal that keeps
// nothing, and warren.users, warren.rooms
// and warren.feed, the hub, an HS256 secret, dev tokens on, an anonymous room "lobby", an
// administrator "admin"/"admin" for the backend API). Beast's request parser, the routes and
// their query strings, token checks, the WebSocket upgrade and then frames, browser operations
// in JSON, SSE, streams, long-polls and the backend's JSON bodies all see the input; the hub's
// worker is the same, so what they ask of the hub runs too. The first byte picks how the rest is
// split. The bytes are sent once whole and once in pieces, each to a fresh gateway; what comes
// back must be the same apart from what the clock decides (see normalize). WARREN_FUZZ_SHOW=1 in
// the environment prints what came back.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "auth/password.hpp"
#include "auth/user_store.hpp"
#include "broker/vhost.hpp"
#include "fuzz_support.hpp"
#include "loopback.hpp"
#include "null_journal.hpp"
#include "web/gateway.hpp"

using namespace warren;

namespace {

net::worker_pool& pool() {
  static auto* p = new net::worker_pool(1);
  return *p;
}

// A WebSocket's frames from the gateway without the replies and events of the operations that go
// through the hub (join, leave, publish, members, read): the hub answers them asynchronously, so
// whether an answer comes before the gateway fails the connection on a later bad frame depends on
// how the input was split. Given whole, a join followed by a frame with a reserved bit set gets
// only the close (the join's answer arrives after it and is dropped); in pieces, the join is
// answered first. What the gateway answers at once (bad JSON, an unknown op, ping) and the close
// must still agree.
std::string without_hub_answers(const std::string& frames) {
  static const std::set<std::string> async_ops = {"join", "leave", "publish", "members", "read"};
  std::string out;
  size_t p = 0;
  while (p + 2 <= frames.size()) {
    uint8_t b0 = uint8_t(frames[p]), b1 = uint8_t(frames[p + 1]);
    size_t head = 2;
    uint64_t len = b1 & 0x7f;
    if (len == 126 || len == 127) {
      size_t n = len == 126 ? 2 : 8;
      if (p + 2 + n > frames.size()) break;
      len = 0;
      for (size_t i = 0; i < n; ++i) len = len << 8 | uint8_t(frames[p + 2 + i]);
      head += n;
    }
    if (b1 & 0x80 || len > frames.size() - p - head) break;  // masked, or cut short: kept raw
    std::string_view payload(frames.data() + p + head, size_t(len));
    bool drop = false;
    if ((b0 & 0x0f) == 1) {
      auto j = nlohmann::json::parse(payload, nullptr, false);
      if (j.is_object()) {
        auto type = j.value("type", std::string());
        auto op = j.contains("op") && j["op"].is_string() ? j["op"].get<std::string>() : "";
        drop = (type != "ok" && type != "error") || async_ops.count(op) > 0;
      }
    }
    if (!drop) out.append(frames, p, head + size_t(len));
    p += head + size_t(len);
  }
  out.append(frames, p);
  return out;
}

// What must not differ between two runs: the output with what the clock decides left out. Digits
// are masked (sequence numbers start from the clock in microseconds), and long base64url runs
// (a dev token's expiry and signature); after a WebSocket upgrade with permessage-deflate only the
// handshake counts, since the compressed events differ with their sequence numbers.
std::string normalize(std::string s) {
  size_t deflate = s.find("Sec-WebSocket-Extensions: permessage-deflate");
  if (deflate != std::string::npos) s.resize(std::min(s.size(), s.find("\r\n\r\n", deflate) + 4));
  if (s.starts_with("HTTP/1.1 101 ")) {
    size_t end = s.find("\r\n\r\n");
    if (end != std::string::npos) s = s.substr(0, end + 4) + without_hub_answers(s.substr(end + 4));
  }
  std::string out;
  size_t run = 0;
  for (char c : s) {
    if (c >= '0' && c <= '9') c = '#';
    bool token = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '#' || c == '-' ||
                 c == '_' || c == '.';
    run = token ? run + 1 : 0;
    if (run <= 40) out += c;
  }
  return out;
}

struct run {
  auth::user_store users;
  fuzz::null_journal journal;
  broker::vhost vhost{"/", 0};
  std::unique_ptr<web::gateway> g;

  run() {
    users.add_user(auth::user{"admin",
                              auth::hash_password_with_salt("admin", "salt"),
                              {"administrator"},
                              {{"/", auth::permission{}}}});
    vhost.set_journal(&journal);
    web::gateway_settings s;
    // Longer than any run, even a fuzzer starved of CPU for seconds: a linger that ends in one of
    // the two runs (whole, pieces) and not the other sends presence events to one only.
    s.inbox_linger = std::chrono::hours(1);
    s.inbox_size = 50;
    s.room_history = 5;
    s.room_presence_events = true;
    s.anonymous_rooms = {"lobby"};
    s.max_connections_per_ip = 0;
    s.publish_rate = 1e9;  // the limit depends on the clock; whole and pieces must agree
    s.max_bulk_body = 1 << 20;
    s.dev_tokens = true;
    s.jwt_secret = "fuzz-secret";
    web::jwt_config jwt;
    jwt.hs256_secret = "fuzz-secret";
    g = std::make_unique<web::gateway>(s, jwt, web::gateway::deps{&users, &vhost, &pool(), nullptr},
                                       std::filesystem::path());
    g->prepare();
  }

  std::string feed(const std::vector<std::string_view>& pieces) {
    std::string out;
    {
      fuzz::loopback lb(pool().at(0), [&](std::shared_ptr<net::connection> c) { g->accept(c); });
      for (std::string_view p : pieces) lb.send(p);
      // An unfinished head is finished before the end: given a head whole, Beast reports some
      // errors (a bad character in a field) as soon as it sees them; given it in pieces, only
      // once the head is complete. Both are right, and they agree once the head ends.
      lb.send("\r\n\r\n");
      lb.finish();
      out = lb.received();
    }
    pool().at(0).poll();
    return out;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  fuzz::quiet_logs();
  std::string_view in = fuzz::as_text(data + 1, size - 1);
  std::string whole, pieces;
  {
    run r;
    whole = r.feed({in});
  }
  pool().at(0).poll();
  {
    run r;
    pieces = r.feed(fuzz::split(in, data[0]));
  }
  pool().at(0).poll();
  if (std::getenv("WARREN_FUZZ_SHOW")) {
    std::fprintf(stderr, "--- whole:\n%.*s\n--- in pieces:\n%.*s\n---\n", int(whole.size()),
                 whole.data(), int(pieces.size()), pieces.data());
  }
  FUZZ_CHECK(normalize(whole) == normalize(pieces));
  return 0;
}
