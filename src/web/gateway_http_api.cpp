// The HTTP APIs on the web port (docs/web-api.md): the backend's (sends, rooms, follows, feeds,
// presence and inboxes, for a broker user with the management or administrator tag), and a
// browser's operations with its token (rooms; its own inbox and read position).
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/write.hpp>

#include <cstdio>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "auth/user_store.hpp"
#include "broker/vhost.hpp"
#include "http/url.hpp"
#include "mgmt/api.hpp"
#include "mgmt/definitions_json.hpp"
#include "web/gateway.hpp"
#include "web/gateway_handler.hpp"

namespace warren::web {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;

std::shared_ptr<broker::message> make_message(std::string exchange, std::string key,
                                              std::string body,
                                              const std::optional<std::string>& from) {
  auto m = std::make_shared<broker::message>();
  m->exchange = std::move(exchange);
  m->routing_key = std::move(key);
  m->body = std::move(body);
  m->properties.content_type = "application/json";
  m->properties.delivery_mode = 2;  // its record is on disk before the answer says "taken"
  if (from) {
    common::field_table h;
    h.set("from", *from);
    m->properties.headers = std::move(h);
  }
  return m;
}

// Publishes on the hub's worker; true if routed. Errors (no exchange) count as not routed.
bool publish(broker::vhost& v, broker::message_ptr m, uint64_t* ticket) {
  auto r = v.publish(std::move(m), 0, ticket);
  auto* o = std::get_if<broker::publish_outcome>(&r);
  return o && *o == broker::publish_outcome::routed;
}

std::function<void(uint64_t, bool)> node_answers::answer() {
  return [self = shared_from_this()](uint64_t ticket, bool rejected) {
    std::unique_lock lk(self->mutex_);
    ++self->got_;
    self->ticket_ = std::max(self->ticket_, ticket);
    self->rejected_ = self->rejected_ || rejected;
    self->finish_if_complete(lk);
  };
}

void node_answers::expect(uint32_t n) {
  std::unique_lock lk(mutex_);
  expected_ = n;
  finish_if_complete(lk);
}

void node_answers::then(std::function<void(uint64_t, bool)> done) {
  std::unique_lock lk(mutex_);
  done_ = std::move(done);
  finish_if_complete(lk);
}

void node_answers::finish_if_complete(std::unique_lock<std::mutex>& lk) {
  if (!expected_ || got_ < *expected_ || !done_) return;
  auto d = std::move(done_);
  done_ = nullptr;
  uint64_t t = ticket_;
  bool r = rejected_;
  lk.unlock();
  d(t, r);
}

void wait_for_nodes(node_answers& n, store::message_store* st, uint64_t ticket,
                    std::function<void()> answer, std::function<void()> refused) {
  n.then([st, ticket, answer = std::move(answer), refused = std::move(refused)](
             uint64_t theirs, bool rejected) mutable {
    if (rejected) return refused();
    uint64_t t = std::max(ticket, theirs);
    if (st && t)
      st->when_synced(t, std::move(answer));
    else
      answer();
  });
}

json members_json(const hub& h, const std::string& room) {
  json list = json::array();
  for (const auto& m : h.members(room))
    list.push_back({{"user", m.user}, {"connections", m.connections}});
  return list;
}

// A browser's room operation (join, leave, publish, members), on the hub's worker; the
// WebSocket and the HTTP paths both answer from it.
op_outcome run_room_op(gateway& g, const std::string& user, const std::string& op,
                       const std::string& room, const std::string& data) {
  hub& h = g.the_hub();
  op_outcome r;
  if (op == "join") {
    auto j = h.join(user, room);
    r.code = j.code;
    r.error = j.error;
    if (j.already) r.extra["already"] = true;
  } else if (op == "leave") {
    auto l = h.leave(user, room);
    r.code = l.code;
    r.error = l.error;
  } else if (op == "publish") {
    r.extra["routed"] = publish(g.vhost(), make_message("warren.rooms", room, data, user));
  } else if (!h.room_exists(room)) {
    r.code = 404;
    r.error = "no room '" + room + "'";
  } else if (op != "list" && !h.is_member(user, room)) {
    r.code = 403;
    r.error = "only members see who is in a room";
  } else {
    r.extra["members"] = members_json(h, room);
  }
  return r;
}

namespace {

constexpr size_t default_limit = 100;
constexpr size_t max_limit = 1000;

json page_json(const std::string& user, const inbox_page& p) {
  std::string events = "[";
  for (const auto& e : p.events) {
    if (events.size() > 1) events += ',';
    append_event_json(events, e);
  }
  events += ']';
  json j = {{"user", user},           {"first_seq", p.first_seq}, {"last_seq", p.last_seq},
            {"read_seq", p.read_seq}, {"unread", p.unread},       {"more", p.more}};
  j["events"] = json::parse(events);
  return j;
}

// ?since=N&limit=M; an error text if either is malformed.
std::optional<std::string> page_params(std::string_view target, uint64_t& since, size_t& limit) {
  since = 0;
  limit = default_limit;
  size_t q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view query = target.substr(q + 1);
  if (auto s = http::query_param(query, "since")) {
    auto v = parse_u64(*s);
    if (!v) return "since must be a non-negative integer";
    since = *v;
  }
  if (auto l = http::query_param(query, "limit")) {
    auto v = parse_u64(*l);
    if (!v || *v == 0 || *v > max_limit)
      return fmt::format("limit must be an integer from 1 to {}", max_limit);
    limit = size_t(*v);
  }
  return std::nullopt;
}

// {"seq": N}
std::optional<uint64_t> read_seq_of(const std::string& body) {
  auto b = json::parse(body, nullptr, false);
  if (!b.is_object() || !b.contains("seq") || !b["seq"].is_number_unsigned()) return std::nullopt;
  return b["seq"].get<uint64_t>();
}

}  // namespace

// The broker's permissions apply to the backend API as to AMQP: the user needs access to the
// gateway's vhost, write permission on the exchange a request publishes through or changes
// (warren.users for a send and a user's inbox, warren.rooms for a room, warren.feed for a feed
// and the follow graph), and read permission on it to look (GET). nullopt: allowed.
std::optional<std::string> gateway_handler::backend_refusal(const auth::user& user,
                                                            bhttp::verb method,
                                                            const std::vector<std::string>& parts) {
  const std::string& vhost = g_.vhost().name();
  auto access = g_.users().access(user.name, vhost);
  if (!access) return fmt::format("access to vhost '{}' refused for user '{}'", vhost, user.name);
  if (parts.empty()) return std::nullopt;
  const std::string& what = parts[0];
  std::string_view exchange =
      what == "send" || what == "presence" || what == "inbox"      ? "warren.users"
      : what == "rooms"                                            ? "warren.rooms"
      : what == "feed" || what == "follows" || what == "followers" ? "warren.feed"
                                                                   : "";
  if (exchange.empty()) return std::nullopt;  // no such route: 404 below
  auto p = method == bhttp::verb::get ? auth::perm::read : auth::perm::write;
  return auth::check_resource(access.get(), p, auth::resource::exchange, exchange, vhost,
                              user.name);
}

void gateway_handler::backend(request& req, std::string_view path,
                              const std::vector<std::string>& parts) {
  auto who = mgmt::authenticate(req.base(), conn().peer_address(), g_.users(), false);
  if (auto* res = std::get_if<http::response>(&who)) {
    res->keep_alive(keep_alive_);
    res->set(bhttp::field::access_control_allow_origin, "*");
    std::ostringstream os;
    os << *res;
    conn().out() += os.str();
    finish_response();
    return;
  }
  const auto& user = *std::get<auth::user_ptr>(who);
  if (!auth::user_store::has_tag(user, "administrator") &&
      !auth::user_store::has_tag(user, "management")) {
    respond_error(403, "not_authorised",
                  "the gateway API needs the management or administrator tag");
    return;
  }
  auto method = req.method();
  if (auto why = backend_refusal(user, method, parts)) {
    respond_error(403, "access_refused", *why);
    return;
  }
  gateway* g = &g_;
  auto need = [&](bhttp::verb v, std::string_view name) {
    if (method == v) return true;
    respond_error(405, "method_not_allowed", fmt::format("use {}", name),
                  fmt::format("Allow: {}\r\n", name));
    return false;
  };
  auto body_object = [&](json& out) {
    out = json::parse(req.body(), nullptr, false);
    if (out.is_object() && out.contains("data")) return true;
    respond_error(400, "bad_request", "the body must be a JSON object with \"data\"");
    return false;
  };
  auto publishing_refused = [&] {
    if (!g_.alarm_on(conn().owner().index())) return false;
    respond_error(503, "unavailable", "publishing is refused while a resource alarm is on");
    return true;
  };
  auto optional_from = [](const json& b) -> std::optional<std::string> {
    if (b.contains("from") && b["from"].is_string()) return b["from"].get<std::string>();
    return std::nullopt;
  };
  auto data_of = [](const json& b) {
    return mgmt::dump((b.contains("data") ? b["data"] : json(nullptr)));
  };

  // Publishes on the hub's worker and answers {"routed": bool} once what it stored is on disk.
  // In a cluster the message may be handed to the node owning its target: its answer counts too.
  auto answer_routed_when_stored = [&](broker::message_ptr m) {
    on_hub_synced([g, m = std::move(m)]() -> hub_answer {
      uint64_t ticket = 0;
      if (!g->vhost().in_cluster()) {
        bool routed = publish(g->vhost(), m, &ticket);
        return {200, mgmt::dump(json{{"routed", routed}}), ticket, nullptr};
      }
      auto nodes = std::make_shared<node_answers>();
      broker::shard_answer a = nodes->answer();
      uint32_t remote = 0;
      auto r = g->vhost().publish(m, 0, &ticket, &a, &remote);
      auto* o = std::get_if<broker::publish_outcome>(&r);
      bool routed = o && *o == broker::publish_outcome::routed;
      if (o && *o == broker::publish_outcome::rejected) routed = false;
      hub_answer h{200, mgmt::dump(json{{"routed", routed}}), ticket, nullptr};
      if (remote) {
        nodes->expect(remote);
        h.nodes = std::move(nodes);
      }
      return h;
    });
  };
  if (parts.size() == 1 && parts[0] == "send") {
    json b;
    if (!need(bhttp::verb::post, "POST") || !body_object(b)) return;
    if (!b.contains("user") || !b["user"].is_string() ||
        !valid_name(b["user"].get_ref<const std::string&>())) {
      respond_error(400, "bad_request", "expected {\"user\": U, \"data\": D}");
      return;
    }
    if (publishing_refused()) return;
    auto m =
        make_message("warren.users", b["user"].get<std::string>(), data_of(b), optional_from(b));
    if (!send_options(b, *m)) return;
    answer_routed_when_stored(m);
    return;
  }
  if (parts.size() >= 2 && parts[0] == "inbox") {
    inbox_api(req, parts);
    return;
  }
  if (parts.size() == 3 && parts[0] == "rooms" && parts[2] == "publish") {
    json b;
    if (!need(bhttp::verb::post, "POST") || !body_object(b)) return;
    if (!valid_name(parts[1])) {
      respond_error(400, "bad_request", "invalid room name");
      return;
    }
    if (publishing_refused()) return;
    auto m = make_message("warren.rooms", parts[1], data_of(b), optional_from(b));
    if (!send_options(b, *m)) return;
    answer_routed_when_stored(m);
    return;
  }
  if (parts.size() == 3 && parts[0] == "rooms" && parts[2] == "members") {
    if (!need(bhttp::verb::get, "GET")) return;
    if (!valid_name(parts[1])) {
      respond_error(400, "bad_request", "invalid room name");
      return;
    }
    std::string room = parts[1];
    // "list": the members op without the membership check (a backend is no member).
    on_hub_async([g, room](std::function<void(int, std::string)> reply) {
      run_room_op_async(
          *g, std::string(), "list", room, std::string(), [room, reply](op_outcome r) {
            if (r.code != 200) return reply(r.code, error_json(error_word(r.code), r.error));
            reply(200, mgmt::dump(json{{"room", room}, {"members", r.extra["members"]}}));
          });
    });
    return;
  }
  if (parts.size() == 3 && parts[0] == "follows") {
    std::string a = parts[1], b = parts[2];
    if (!valid_name(a) || !valid_name(b) || a.find(' ') != std::string::npos ||
        b.find(' ') != std::string::npos || a.find('\n') != std::string::npos ||
        b.find('\n') != std::string::npos) {
      respond_error(400, "bad_request", "user ids must be 1-200 bytes without spaces or newlines");
      return;
    }
    if (method == bhttp::verb::put || method == bhttp::verb::delete_) {
      // In a cluster the edge A -> B is kept at B's owner, with B's other followers.
      std::string op = method == bhttp::verb::put ? "follow" : "unfollow";
      on_hub_async([g, a, b, op](std::function<void(int, std::string)> reply) {
        at_owner(*g, b, a, op, b, {}, [reply](op_outcome r) {
          if (r.code >= 400) return reply(r.code, error_json(error_word(r.code), r.error));
          reply(r.code, {});
        });
      });
    } else {
      respond_error(405, "method_not_allowed", "use PUT or DELETE", "Allow: PUT, DELETE\r\n");
    }
    return;
  }
  if (parts.size() == 1 && parts[0] == "follows") {
    if (!need(bhttp::verb::post, "POST")) return;
    // Parsed on the hub's worker, over the body in place (no copy per edge).
    auto body = std::make_shared<std::string>(std::move(req.body()));
    on_hub_async([g, body](std::function<void(int, std::string)> reply) {
      std::vector<std::pair<std::string_view, std::string_view>> edges;
      std::string_view rest = *body;
      size_t line_no = 0;
      while (!rest.empty()) {
        size_t nl = rest.find('\n');
        std::string_view line = rest.substr(0, nl);
        rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
        ++line_no;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        size_t start = line.find_first_not_of(" \t");
        if (start == std::string_view::npos || line[start] == '#') continue;
        line.remove_prefix(start);
        size_t sp = line.find_first_of(" \t");
        std::string_view a = line.substr(0, sp);
        std::string_view b;
        if (sp != std::string_view::npos) {
          b = line.substr(sp);
          b.remove_prefix(std::min(b.size(), b.find_first_not_of(" \t")));
          while (!b.empty() && (b.back() == ' ' || b.back() == '\t')) b.remove_suffix(1);
        }
        if (!valid_name(a) || !valid_name(b) || b.find_first_of(" \t") != std::string_view::npos)
          return reply(400, error_json("bad_request", fmt::format("line {}: expected \"A B\" (A "
                                                                  "follows B)",
                                                                  line_no)));
        edges.emplace_back(a, b);
      }
      auto counts = [](size_t added, size_t existing) {
        return mgmt::dump(json{{"added", added}, {"existing", existing}});
      };
      if (g->the_hub().other_nodes().empty()) {
        auto r = g->the_hub().follows().follow_all(edges);
        return reply(200, counts(r.added, r.existing));
      }
      // In a cluster each edge A -> B is kept at B's owner, as PUT /api/follows/A/B keeps it: one
      // operation per edge, answered once all are (a 503 naming the first that failed).
      struct tally {
        size_t left = 0, added = 0, existing = 0;
        int code = 200;
        std::string error;
        std::function<void(int, std::string)> reply;
      };
      auto t = std::make_shared<tally>();
      t->left = edges.size();
      t->reply = std::move(reply);
      if (edges.empty()) return t->reply(200, counts(0, 0));
      for (const auto& [a, b] : edges) {
        std::string follower(a), followee(b);
        at_owner(*g, followee, follower, "follow", followee, {}, [t, counts](op_outcome r) {
          if (r.code == 201)
            ++t->added;
          else if (r.code == 204)
            ++t->existing;
          else if (t->code == 200) {
            t->code = r.code >= 400 ? r.code : 503;
            t->error = r.error;
          }
          if (--t->left > 0) return;
          if (t->code != 200) return t->reply(t->code, error_json(error_word(t->code), t->error));
          t->reply(200, counts(t->added, t->existing));
        });
      }
    });
    return;
  }
  if (parts.size() == 2 && (parts[0] == "follows" || parts[0] == "followers")) {
    if (!need(bhttp::verb::get, "GET")) return;
    if (!valid_name(parts[1])) {
      respond_error(400, "bad_request", "invalid user id");
      return;
    }
    std::string who_ = parts[1];
    bool out = parts[0] == "follows";
    if (!out) {
      on_hub_async([g, who_](std::function<void(int, std::string)> reply) {
        at_owner(*g, who_, who_, "followers", who_, {}, [who_, reply](op_outcome r) {
          if (r.code != 200) return reply(r.code, error_json(error_word(r.code), r.error));
          reply(200, mgmt::dump(json{{"user", who_}, {"followers", r.extra["followers"]}}));
        });
      });
      return;
    }
    // In a cluster the edges out of A are kept at each followee's owner: every node of the map
    // is asked, and the answer is their union, or 503 when one of them does not answer (never a
    // list silently missing a node's part).
    on_hub_async([g, who_](std::function<void(int, std::string)> reply) {
      struct gather {
        std::set<std::string> list;
        size_t left = 0;
        int code = 200;
        std::string error;
      };
      auto acc = std::make_shared<gather>();
      for (auto& f : g->the_hub().follows().following(who_)) acc->list.insert(std::move(f));
      auto nodes = g->the_hub().other_nodes();
      auto finish = [acc, who_, reply] {
        if (acc->code != 200)
          return reply(acc->code, error_json(error_word(acc->code), acc->error));
        reply(200, mgmt::dump(json{{"user", who_}, {"follows", acc->list}}));
      };
      if (nodes.empty()) return finish();
      acc->left = nodes.size();
      for (const auto& n : nodes)
        g->the_hub().call_node(
            n, who_, who_, "following", {}, {},
            [acc, finish, n](int code, std::string error, std::string extra) {
              if (code != 200) {
                acc->code = code;
                acc->error = "node '" + n + "': " + error;
              } else {
                auto e = json::parse(extra, nullptr, false);
                if (e.is_object() && e.contains("follows") && e["follows"].is_array())
                  for (const auto& f : e["follows"])
                    if (f.is_string()) acc->list.insert(f.get<std::string>());
              }
              if (--acc->left == 0) finish();
            });
    });
    return;
  }
  if (parts.size() == 2 && parts[0] == "feed") {
    json b;
    if (!need(bhttp::verb::post, "POST") || !body_object(b)) return;
    if (!valid_name(parts[1])) {
      respond_error(400, "bad_request", "invalid user id");
      return;
    }
    if (publishing_refused()) return;
    auto m = make_message("warren.feed", parts[1], data_of(b), std::nullopt);
    if (!send_options(b, *m)) return;
    if (g->vhost().in_cluster()) {
      // Posted at B's owner, where B's followers are: its answer says how many took it.
      json post = {{"data", m->body}, {"transient", false}};
      if (m->properties.expiration) post["expiration"] = *m->properties.expiration;
      if (m->properties.headers)
        post["transient"] =
            common::table_bool(*m->properties.headers, "x-warren-transient") == std::optional(true);
      std::string b = parts[1];
      on_hub_async([g, b, post = mgmt::dump(post)](std::function<void(int, std::string)> reply) {
        at_owner(*g, b, b, "feed", b, post, [reply](op_outcome r) {
          if (r.code != 200) return reply(r.code, error_json(error_word(r.code), r.error));
          reply(200, mgmt::dump(r.extra));
        });
      });
      return;
    }
    on_hub_synced([g, m]() -> hub_answer {
      uint64_t ticket = 0;
      publish(g->vhost(), m, &ticket);
      return {200, mgmt::dump(json{{"delivered", g->the_hub().last_feed_fanout()}}), ticket};
    });
    return;
  }
  if (parts.size() == 2 && parts[0] == "presence") {
    if (!need(bhttp::verb::get, "GET")) return;
    if (!valid_name(parts[1])) {
      respond_error(400, "bad_request", "invalid user id");
      return;
    }
    std::string u = parts[1];
    on_hub_async([g, u](std::function<void(int, std::string)> reply) {
      at_owner(*g, u, u, "presence", {}, {}, [reply](op_outcome r) {
        if (r.code != 200) return reply(r.code, error_json(error_word(r.code), r.error));
        reply(200, mgmt::dump(r.extra));
      });
    });
    return;
  }
  (void)path;
  respond_error(404, "not_found", "no such resource");
}

// --- HTTP operations -----------------------------------------------------------------------------

void gateway_handler::browser_http_op(request& req, const std::vector<std::string>& parts) {
  const std::string& room = parts[1];
  const std::string& op = parts[2];
  bool is_get = req.method() == bhttp::verb::get;
  if (op == "members" ? !is_get : req.method() != bhttp::verb::post) {
    respond_error(405, "method_not_allowed", op == "members" ? "use GET" : "use POST");
    return;
  }
  if (op != "join" && op != "leave" && op != "publish" && op != "members") {
    respond_error(404, "not_found", "no such operation");
    return;
  }
  if (!authenticate_browser(req, {})) return;
  if (!valid_name(room)) {
    respond_error(400, "bad_request", "invalid room name");
    return;
  }
  if (op != "members") {
    if (!take_token()) {
      respond_error(429, "too_many_requests", "rate limit exceeded");
      return;
    }
  }
  if ((op == "join" || op == "members") && !rights_->may_join(room)) {
    respond_error(403, "forbidden", "the token does not allow this room");
    return;
  }
  std::string data;
  if (op == "publish") {
    if (!rights_->may_publish(room)) {
      respond_error(403, "forbidden", "the token does not allow publishing to this room");
      return;
    }
    if (g_.alarm_on(conn().owner().index())) {
      respond_error(503, "unavailable", "publishing is refused while a resource alarm is on");
      return;
    }
    auto body = json::parse(req.body(), nullptr, false);
    if (!body.is_object() || !body.contains("data")) {
      respond_error(400, "bad_request", "expected {\"data\": ...}");
      return;
    }
    data = mgmt::dump((body.contains("data") ? body["data"] : json(nullptr)));
  }
  gateway* g = &g_;
  std::string user = session_->user;
  on_hub_async(
      [g, user, room, op, data = std::move(data)](std::function<void(int, std::string)> reply) {
        run_room_op_async(*g, user, op, room, data, [room, op, reply](op_outcome r) {
          if (r.code != 200) return reply(r.code, error_json(error_word(r.code), r.error));
          if (op == "members")
            return reply(200, mgmt::dump(json{{"room", room}, {"members", r.extra["members"]}}));
          json body = {{"ok", true}};
          body.update(r.extra);
          reply(200, mgmt::dump(body));
        });
      });
}

void gateway_handler::inbox_api(request& req, const std::vector<std::string>& parts) {
  // Authenticated as a backend already (backend()).
  const std::string& user = parts[1];
  if (!valid_name(user)) {
    respond_error(400, "bad_request", "invalid user id");
    return;
  }
  gateway* g = &g_;
  auto method = req.method();
  if (parts.size() == 2) {
    if (method == bhttp::verb::get) {
      answer_inbox_page(req, user);
      return;
    }
    if (method == bhttp::verb::delete_) {
      on_hub_async([g, user](std::function<void(int, std::string)> reply) {
        at_owner(*g, user, user, "erase", {}, {}, [reply](op_outcome r) {
          if (r.code >= 400) return reply(r.code, error_json(error_word(r.code), r.error));
          reply(204, {});
        });
      });
      return;
    }
    respond_error(405, "method_not_allowed", "use GET or DELETE", "Allow: GET, DELETE\r\n");
    return;
  }
  if (parts.size() == 3 && parts[2] == "read") {
    answer_set_read(req, user);
    return;
  }
  respond_error(404, "not_found", "no such resource");
}

void gateway_handler::browser_inbox_op(request& req, const std::vector<std::string>& parts) {
  if (!authenticate_browser(req, {})) return;
  if (rights_->anonymous) {
    respond_error(403, "forbidden", "anonymous connections have no inbox");
    return;
  }
  std::string user = session_->user;
  if (parts.size() == 1 || (parts.size() == 2 && parts[1].empty())) {
    if (req.method() != bhttp::verb::get) {
      respond_error(405, "method_not_allowed", "use GET", "Allow: GET\r\n");
      return;
    }
    answer_inbox_page(req, user);
    return;
  }
  if (parts[1] != "read") {
    respond_error(404, "not_found", "no such resource");
    return;
  }
  answer_set_read(req, user);
}

// GET: a page of the user's inbox, `since` and `limit` from the query (backend and browser).
void gateway_handler::answer_inbox_page(request& req, const std::string& user) {
  uint64_t since;
  size_t limit;
  if (auto err = page_params({req.target().data(), req.target().size()}, since, limit)) {
    respond_error(400, "bad_request", *err);
    return;
  }
  gateway* g = &g_;
  // In a cluster the inbox is its owner's.
  on_hub_async([g, user, since, limit](std::function<void(int, std::string)> reply) {
    at_owner(*g, user, user, "inbox", {}, fmt::format("{} {}", since, limit),
             [reply](op_outcome r) {
               if (r.code != 200) return reply(r.code, error_json(error_word(r.code), r.error));
               reply(200, mgmt::dump(r.extra));
             });
  });
}

// PUT .../read {"seq": N}: the user's read position (backend and browser).
void gateway_handler::answer_set_read(request& req, const std::string& user) {
  if (req.method() != bhttp::verb::put) {
    respond_error(405, "method_not_allowed", "use PUT", "Allow: PUT\r\n");
    return;
  }
  auto seq = read_seq_of(req.body());
  if (!seq) {
    respond_error(400, "bad_request", "expected {\"seq\": N}");
    return;
  }
  gateway* g = &g_;
  on_hub_async([g, user, s = *seq](std::function<void(int, std::string)> reply) {
    at_owner(*g, user, user, "read", {}, std::to_string(s), [reply](op_outcome r) {
      if (r.code != 200) return reply(r.code, error_json(error_word(r.code), r.error));
      reply(200, mgmt::dump(r.extra));
    });
  });
}

void owner_op(gateway& g, const std::string& user, const std::string& op, const std::string& room,
              const std::string& data, std::function<void(std::string)> reply) {
  hub& h = g.the_hub();
  auto answer = [&reply](int code, const std::string& error, json extra) {
    reply(mgmt::dump(json{{"code", code}, {"error", error}, {"extra", std::move(extra)}}));
  };
  if (op == "presence") {
    auto [online, n] = h.presence(user);
    return answer(200, {}, json{{"online", online}, {"connections", n}});
  }
  if (op == "follow") return answer(h.follows().follow(user, room) ? 201 : 204, {}, json::object());
  if (op == "unfollow") {
    if (h.follows().unfollow(user, room)) return answer(204, {}, json::object());
    return answer(404, user + " does not follow " + room, json::object());
  }
  if (op == "followers") return answer(200, {}, json{{"followers", h.follows().followers(room)}});
  if (op == "following") return answer(200, {}, json{{"follows", h.follows().following(user)}});
  if (op == "inbox") {
    uint64_t since = 0;
    size_t limit = default_limit;
    std::sscanf(data.c_str(), "%lu %zu", &since, &limit);
    return answer(200, {}, page_json(user, h.read_inbox(user, since, limit)));
  }
  if (op == "read") {
    uint64_t seq = 0;
    std::sscanf(data.c_str(), "%lu", &seq);
    auto unread = h.set_read(user, seq);
    if (!unread) return answer(404, "nothing held for '" + user + "'", json::object());
    auto p = h.read_inbox(user, 0, 1);
    return answer(200, {}, json{{"read_seq", p.read_seq}, {"unread", *unread}});
  }
  if (op == "erase") {
    uint64_t ticket = h.erase(user);
    store::message_store* st = g.store();
    if (!st || !ticket) return answer(204, {}, json::object());
    net::worker* home = &g.home();
    st->when_synced(ticket, [home, reply = std::move(reply)]() mutable {
      home->post([reply = std::move(reply)] {
        reply(mgmt::dump(json{{"code", 204}, {"error", ""}, {"extra", json::object()}}));
      });
    });
    return;
  }
  if (op == "feed") {
    // A post handed here by the node that took it: published here, answered once stored.
    auto b = json::parse(data, nullptr, false);
    if (!b.is_object()) return answer(400, "bad feed post", json::object());
    auto m = make_message("warren.feed", room, b.value("data", std::string("null")), std::nullopt);
    if (b.contains("expiration") && b["expiration"].is_string())
      m->properties.expiration = b["expiration"].get<std::string>();
    if (b.value("transient", false)) {
      common::field_table t;
      t.set("x-warren-transient", true);
      m->properties.headers = std::move(t);
    }
    // Answered once stored here and at every node it was handed to (followers' owners).
    uint64_t ticket = 0;
    uint32_t remote = 0;
    auto nodes = std::make_shared<node_answers>();
    broker::shard_answer handed = nodes->answer();
    g.vhost().publish(m, 0, &ticket, &handed, &remote);
    size_t n = h.last_feed_fanout();
    nodes->expect(remote);
    net::worker* home = &g.home();
    auto shared_reply = std::make_shared<std::function<void(std::string)>>(std::move(reply));
    wait_for_nodes(
        *nodes, g.store(), ticket,
        [home, shared_reply, n] {
          home->post([shared_reply, n] {
            (*shared_reply)(
                mgmt::dump(json{{"code", 200}, {"error", ""}, {"extra", {{"delivered", n}}}}));
          });
        },
        [home, shared_reply] {
          home->post([shared_reply] {
            (*shared_reply)(
                mgmt::dump(json{{"code", 503},
                                {"error",
                                 "a node of the cluster this post was handed to (the owner of "
                                 "some of its followers) did not store it: it is down or "
                                 "unreachable"},
                                {"extra", json::object()}}));
          });
        });
    return;
  }
  op_outcome r = run_room_op(g, user, op, room, data);
  answer(r.code, r.error, std::move(r.extra));
}

void at_owner(gateway& g, const std::string& key, const std::string& user, const std::string& op,
              const std::string& room, const std::string& data,
              std::function<void(op_outcome)> done) {
  auto outcome = [done](int code, std::string error, std::string extra) {
    op_outcome r;
    r.code = code;
    r.error = std::move(error);
    auto e = json::parse(extra, nullptr, false);
    if (e.is_object()) r.extra = std::move(e);
    done(std::move(r));
  };
  if (g.the_hub().call_owner(key, user, op, room, data, outcome)) return;
  // Owned here, but being handed here by its old owner: asked again once it is.
  if (g.the_hub().hold_local(key, [&g, key, user, op, room, data, done] {
        at_owner(g, key, user, op, room, data, done);
      }))
    return;
  owner_op(g, user, op, room, data, [outcome](std::string res) {
    auto j = json::parse(res, nullptr, false);
    outcome(j.value("code", 500), j.value("error", std::string()),
            j.contains("extra") ? mgmt::dump(j["extra"]) : std::string("{}"));
  });
}

void run_room_op_async(gateway& g, const std::string& user, const std::string& op,
                       const std::string& room, const std::string& data,
                       std::function<void(op_outcome)> done) {
  // A publish goes to warren.rooms here, which hands it to the room's node itself.
  if (op == "publish") return done(run_room_op(g, user, op, room, data));
  if (op == "join" || op == "leave") {
    // Remembered where the member's connection is, to join again if the room's owner goes.
    done = [&g, user, op, room, done = std::move(done)](op_outcome r) {
      if (r.code == 200) g.the_hub().remember_member(room, user, op == "join");
      done(std::move(r));
    };
  }
  at_owner(g, room, user, op, room, data, std::move(done));
}

}  // namespace warren::web
