// Vhost and user limits over the management API, as RabbitMQ's rabbit_mgmt_wm_limits,
// rabbit_mgmt_wm_limit, rabbit_mgmt_wm_user_limits and rabbit_mgmt_wm_user_limit (3.13):
//
// | request                                  | who                         | answer            |
// | ---------------------------------------- | --------------------------- | ----------------- |
// | GET /api/vhost-limits[/{vhost}]          | management, vhosts it sees  | [{vhost, value}]  |
// | PUT, DELETE /api/vhost-limits/{v}/{name} | administrator               | 204               |
// | GET /api/user-limits[/{user}]            | administrator               | [{user, value}]   |
// | PUT, DELETE /api/user-limits/{u}/{name}  | administrator               | 204               |
//
// PUT takes {"value": N}; a negative N means no limit, 0 allows none. Vhost limits are atomics on
// the vhost and so set from this worker directly; user limits change the user in the store.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "mgmt/limits.hpp"
#include "mgmt/resources.hpp"

namespace warren::mgmt {

namespace bhttp = boost::beast::http;

namespace {

json vhost_item(const std::string& vhost, const limit_map& limits) {
  return {{"vhost", vhost}, {"value", limits_json(limits)}};
}

json user_item(const std::string& user, const limit_map& limits) {
  return {{"user", user}, {"value", limits_json(limits)}};
}

// RabbitMQ's with_decode([value], ...): the body must be a JSON object with a "value".
std::optional<json> value_arg(const call_ptr& c) {
  json body = c->req.body().empty() ? json::object() : json::parse(c->req.body(), nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    c->bad_request("not_json");
    return std::nullopt;
  }
  auto it = body.find("value");
  if (it == body.end()) {
    c->bad_request("[{key_missing,value}]");
    return std::nullopt;
  }
  return *it;
}

bool save_vhost_limits(const call_ptr& c) {
  std::string error;
  if (c->api.limits_file && !c->api.limits_file->save(*c->api.vhosts, error)) {
    spdlog::error("vhost limits not saved: {}", error);
    c->error(bhttp::status::internal_server_error, "internal_server_error",
             "the change was made but could not be saved: " + error);
    return false;
  }
  return true;
}

// Sets (value) or clears (nullopt) one limit of the user `name`; false if there is no such user.
bool change_user_limit(const call_ptr& c, const std::string& name, const std::string& limit,
                       std::optional<int64_t> value) {
  bool found = false;
  c->api.users->update([&](auth::user_map& m) {
    auto it = m.find(name);
    if (it == m.end()) return;
    found = true;
    auto u = std::make_shared<auth::user>(*it->second);
    if (value)
      u->limits[limit] = *value;
    else if (limit == "all")  // rabbit_auth_backend_internal:clear_user_limits(U, <<"all">>, _)
      u->limits.clear();
    else
      u->limits.erase(limit);
    it->second = std::move(u);
  });
  return found;
}

}  // namespace

void list_vhost_limits(const call_ptr& c, bool one) {
  std::vector<broker::vhost*> vs;
  if (!c->vhosts_arg(one, vs)) return;
  json items = json::array();
  for (broker::vhost* v : vs)
    if (limit_map l = vhost_limits(*v); !l.empty()) items.push_back(vhost_item(v->name(), l));
  c->list(std::move(items));
}

void put_vhost_limit(const call_ptr& c) {
  const std::string &name = c->args[0], &limit = c->args[1];
  broker::vhost* v = c->api.vhosts->find(name);
  if (!v) return c->error(bhttp::status::not_found, "not_found", "vhost_not_found");
  auto value = value_arg(c);
  if (!value) return;
  // The vhost's whole definition is checked, as RabbitMQ's update_limit does; only the new key
  // can be wrong.
  limit_map current = vhost_limits(*v);
  json def = limits_json(current);
  def[limit] = *value;
  auto checked = check_vhost_limits(def);
  if (auto* why = std::get_if<std::string>(&checked))
    return c->bad_request(validation_failed(*why));
  set_vhost_limits(*v, std::get<limit_map>(checked));
  if (!save_vhost_limits(c)) return;
  spdlog::info("vhost '{}': limit {} set to {} by '{}'", name, limit, value->dump(), c->user->name);
  c->no_content();
}

void delete_vhost_limit(const call_ptr& c) {
  const std::string &name = c->args[0], &limit = c->args[1];
  broker::vhost* v = c->api.vhosts->find(name);
  if (!v) return c->error(bhttp::status::not_found, "not_found", "vhost_not_found");
  // As RabbitMQ: clearing a limit that is not set (or not known) is no error.
  limit_map limits = vhost_limits(*v);
  limits.erase(limit);
  set_vhost_limits(*v, limits);
  if (!save_vhost_limits(c)) return;
  spdlog::info("vhost '{}': limit {} cleared by '{}'", name, limit, c->user->name);
  c->no_content();
}

void list_user_limits(const call_ptr& c, bool one) {
  json items = json::array();
  if (one) {
    auto u = c->api.users->find(c->args[0]);
    if (!u) return c->not_found();
    if (!u->limits.empty()) items.push_back(user_item(u->name, u->limits));
  } else {
    for (const auto& u : c->api.users->all())
      if (!u->limits.empty()) items.push_back(user_item(u->name, u->limits));
  }
  c->list(std::move(items));
}

void put_user_limit(const call_ptr& c) {
  const std::string &name = c->args[0], &limit = c->args[1];
  if (!c->api.users->find(name))
    return c->error(bhttp::status::not_found, "not_found", "user_not_found");
  auto value = value_arg(c);
  if (!value) return;
  auto checked = check_user_limits(json{{limit, *value}});
  if (auto* why = std::get_if<std::string>(&checked)) return c->bad_request(*why);
  if (!change_user_limit(c, name, limit, std::get<limit_map>(checked).at(limit)))
    return c->error(bhttp::status::not_found, "not_found", "user_not_found");
  if (!save_users(c)) return;
  spdlog::info("user '{}': limit {} set to {} by '{}'", name, limit, value->dump(), c->user->name);
  c->no_content();
}

void delete_user_limit(const call_ptr& c) {
  const std::string &name = c->args[0], &limit = c->args[1];
  if (!change_user_limit(c, name, limit, std::nullopt))
    return c->error(bhttp::status::not_found, "not_found", "user_not_found");
  if (!save_users(c)) return;
  spdlog::info("user '{}': limit {} cleared by '{}'", name, limit, c->user->name);
  c->no_content();
}

}  // namespace warren::mgmt
