// The parts of a management request every resource uses.
#include <fmt/format.h>

#include <algorithm>

#include "mgmt/resources.hpp"

namespace warren::mgmt {

namespace bhttp = boost::beast::http;

void call::json_reply(const json& body, bhttp::status s) {
  done(json_response(req, s, body));
}

void call::error(bhttp::status s, std::string_view e, std::string_view reason) {
  done(json_error(req, s, e, reason));
}

void call::bad_request(std::string_view reason) {
  error(bhttp::status::bad_request, "bad_request", reason);
}

void call::bad_request_error(const query_error& e) {
  error(bhttp::status::bad_request, e.error, e.reason);
}

void call::not_found() {
  error(bhttp::status::not_found, "Object Not Found", "Not Found");
}

namespace {
http::response empty(const http::request_header& req, bhttp::status s) {
  http::response res{s, req.version()};
  res.set(bhttp::field::server, "Warren");
  res.prepare_payload();
  return res;
}
}  // namespace

void call::no_content() {
  done(empty(req, bhttp::status::no_content));
}

void call::created() {
  done(empty(req, bhttp::status::created));
}

void call::list(json items) {
  auto r = answer_list(query, std::move(items));
  if (auto* e = std::get_if<query_error>(&r)) return bad_request_error(*e);
  json_reply(std::get<json>(r));
}

bool call::may_see(std::string_view vhost) const {
  return sees_all_vhosts(*user) || auth::user_store::may_access_vhost(*user, vhost);
}

broker::vhost* call::vhost_arg(size_t i) {
  broker::vhost* v = api.vhosts->find(args.at(i));
  if (!v && args[i].find('+') != std::string::npos) {
    // rabbitmqadmin's list, export and import encode a vhost with quote_plus (a space as '+'),
    // its other commands with quote (%20): a '+' is taken for a space when no vhost has the
    // name as written (docs/compatibility.md).
    std::string spaced = args[i];
    std::replace(spaced.begin(), spaced.end(), '+', ' ');
    if ((v = api.vhosts->find(spaced))) args[i] = spaced;
  }
  if (!v) {
    not_found();
    return nullptr;
  }
  if (!may_see(args[i])) {
    error(bhttp::status::unauthorized, "not_authorised", "Access refused.");
    return nullptr;
  }
  return v;
}

broker::access_checks call::checks_in(const broker::vhost& v) const {
  if (local) return broker::access_checks{nullptr, user->name, true};
  return broker::access_checks{api.users->access(user->name, v.name()), user->name};
}

bool call::vhosts_arg(bool one_vhost, std::vector<broker::vhost*>& out) {
  if (!one_vhost) {
    out = visible_vhosts();
    return true;
  }
  broker::vhost* v = vhost_arg(0);
  if (!v) return false;
  out.push_back(v);
  return true;
}

std::vector<broker::vhost*> call::visible_vhosts() const {
  std::vector<broker::vhost*> out;
  for (const auto& n : api.vhosts->names())
    if (may_see(n))
      if (broker::vhost* v = api.vhosts->find(n)) out.push_back(v);
  return out;
}

std::optional<json> call::body_object() {
  if (req.body().empty()) return json::object();
  json j = json::parse(req.body(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    bad_request("the body is not a JSON object");
    return std::nullopt;
  }
  return j;
}

std::optional<bool> json_bool(const json& j, std::string_view key) {
  auto it = j.find(key);
  if (it == j.end()) return std::nullopt;
  if (it->is_boolean()) return it->get<bool>();
  if (it->is_string()) {
    auto s = it->get<std::string>();
    if (s == "true") return true;
    if (s == "false") return false;
  }
  return std::nullopt;
}

std::optional<int64_t> json_int(const json& j, std::string_view key) {
  auto it = j.find(key);
  if (it == j.end()) return std::nullopt;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_number()) return int64_t(it->get<double>());
  if (it->is_string()) {
    const std::string s = it->get<std::string>();
    char* end = nullptr;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (!s.empty() && end && *end == '\0') return v;
  }
  return std::nullopt;
}

std::string json_text(const json& j, std::string_view key, std::string_view fallback) {
  auto it = j.find(key);
  if (it != j.end() && it->is_string()) return it->get<std::string>();
  return std::string(fallback);
}

void all_connections(const call_ptr& c,
                     std::function<void(std::vector<broker::connection_view>)> done) {
  struct job {
    std::vector<broker::connection_view> out;
    size_t left = 0;
    std::function<void(std::vector<broker::connection_view>)> done;
  };
  auto j = std::make_shared<job>();
  j->done = std::move(done);
  size_t n = c->api.pool->size();
  if (!c->api.list_connections || n == 0) return j->done({});
  j->left = n;
  net::worker* back = &c->here;
  for (size_t i = 0; i < n; ++i) {
    net::worker& w = c->api.pool->at(i);
    w.post([j, &w, back, list = c->api.list_connections] {
      std::vector<broker::connection_view> mine;
      list(w, mine);
      back->post([j, mine = std::move(mine)]() mutable {
        std::move(mine.begin(), mine.end(), std::back_inserter(j->out));
        if (--j->left == 0) j->done(std::move(j->out));
      });
    });
  }
}

}  // namespace warren::mgmt
