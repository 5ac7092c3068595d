// Fuzzes the management API's HTTP path as a socket feeds it: raw bytes into a net::connection
// whose handler is http::http_handler with the real management router (mgmt::make_router) over a
// fresh broker (a vhost "/" with a journal that keeps nothing, an administrator "admin" with
// password "admin"), so Beast's request parser, the handler's keep-alive, pipelining, body limits
// and early refusals, basic authentication, the routes, their path and query decoding and the
// resources' JSON bodies all see the input. The first byte: bit 0, the request comes over the
// control socket (authenticated as the local administrator without credentials); the whole byte
// also picks how the rest is split. The bytes are sent once whole and once in pieces, each on a
// fresh broker; the requests the router is handed (heads and whole requests) must be the same both
// times. WARREN_FUZZ_SHOW=1 in the environment prints what came back.
#include <boost/beast/http/parser.hpp>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "auth/password.hpp"
#include "broker/vhost.hpp"
#include "fuzz_support.hpp"
#include "loopback.hpp"
#include "mgmt/routes.hpp"
#include "null_journal.hpp"

using namespace warren;

namespace {

net::worker_pool& pool() {
  static auto* p = new net::worker_pool(1);
  return *p;
}

std::string describe(const http::request_header& h) {
  std::string out(h.method_string());
  out += ' ';
  out += h.target();
  out += ' ' + std::to_string(h.version()) + '\n';
  for (const auto& f : h) {
    out += f.name_string();
    out += ':';
    out += f.value();
    out += '\n';
  }
  return out;
}

// One broker, one connection, the router's view of what arrived.
struct run {
  auth::user_store users;
  std::vector<std::unique_ptr<fuzz::null_journal>> journals;  // outlive the vhosts
  broker::vhost_registry vhosts;
  mgmt::api_context api;
  http::router inner;
  http::router recording;
  std::vector<std::string> seen;

  run() {
    users.add_user(auth::user{"admin",
                              auth::hash_password_with_salt("admin", "salt"),
                              {"administrator"},
                              {{"/", auth::permission{}}}});
    users.add_user(auth::user{
        "watcher", auth::hash_password_with_salt("watcher", "salt"), {"monitoring"}, {}});
    add_vhost("/");
    api.users = &users;
    api.vhosts = &vhosts;
    api.pool = &pool();
    api.version = "0.0.0-fuzz";
    api.started_at = 1'700'000'000'000;
    api.node = [] { return mgmt::node_status{}; };
    api.create_vhost = [this](const std::string& name, const std::string&) -> std::string {
      if (vhosts.size() >= 8) return "too many vhosts for a fuzz run";
      add_vhost(name);
      return {};
    };
    api.delete_vhost = [this](const std::string& name, std::function<void(std::string)> done) {
      done(vhosts.retire(name) ? "" : "no such vhost");
    };
    inner = mgmt::make_router(api);
    recording.on_head = [this](const http::request_header& h, const http::request_context& c) {
      seen.push_back("head " + describe(h));
      return inner.on_head(h, c);
    };
    recording.handle = [this](http::request req, const http::request_context& c,
                              http::responder done) {
      seen.push_back("request " + describe(req.base()) + req.body());
      inner.handle(std::move(req), c, std::move(done));
    };
  }

  void add_vhost(const std::string& name) {
    journals.push_back(std::make_unique<fuzz::null_journal>());
    vhosts.add(name, 0).set_journal(journals.back().get());
  }

  std::vector<std::string> feed(const std::vector<std::string_view>& pieces, bool local) {
    {
      fuzz::loopback lb(pool().at(0), [&](std::shared_ptr<net::connection> c) {
        c->start(std::make_unique<http::http_handler>(recording, local));
      });
      for (std::string_view p : pieces) lb.send(p);
      // An unfinished head is finished before the end: given a head whole, Beast reports some
      // errors (a bad character in a field) as soon as it sees them; given it in pieces, only
      // once the head is complete. Both are right, and they agree once the head ends.
      lb.send("\r\n\r\n");
      lb.finish();
      if (std::getenv("WARREN_FUZZ_SHOW"))
        std::fwrite(lb.received().data(), 1, lb.received().size(), stderr);
    }
    pool().at(0).poll();
    return seen;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  fuzz::quiet_logs();
  const bool local = data[0] & 1;
  std::string_view in = fuzz::as_text(data + 1, size - 1);
  auto whole = std::make_unique<run>()->feed({in}, local);
  auto pieces = std::make_unique<run>()->feed(fuzz::split(in, data[0]), local);
  FUZZ_CHECK(whole == pieces);
  return 0;
}
