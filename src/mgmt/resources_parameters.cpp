// Runtime parameters and policies over the management API, as RabbitMQ's
// rabbit_mgmt_wm_parameters/_parameter and rabbit_mgmt_wm_policies/_policy (3.13):
//
// | request                                          | who                        | answer     |
// | ------------------------------------------------ | -------------------------- | ---------- |
// | GET /api/parameters[/{component}[/{vhost}]]      | policymaker, vhosts it sees | list       |
// | GET /api/parameters/{component}/{vhost}/{name}   | policymaker                | the item   |
// | PUT, DELETE the same                             | policymaker                | 201/204    |
// | GET /api/policies[/{vhost}], /{vhost}/{name}     | policymaker                | list, item |
// | PUT, DELETE /api/policies/{vhost}/{name}         | policymaker                | 201/204    |
//
// PUT takes {"value": ...} for a parameter and {pattern, definition, priority, apply-to} for a
// policy; RabbitMQ's validation texts come back as 400 "Validation failed\n\n<text>\n". The
// components are those Warren acts on (federation-upstream, federation-upstream-set, shovel);
// vhost limits keep their own paths (/api/vhost-limits).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "federation/parameters.hpp"
#include "federation/supervisor.hpp"
#include "mgmt/limits.hpp"
#include "mgmt/resources.hpp"

namespace warren::mgmt {

namespace bhttp = boost::beast::http;

namespace {

federation::runtime_store* store_of(const call_ptr& c) {
  if (!c->api.runtime) c->error(bhttp::status::not_found, "not_found", "no runtime parameters");
  return c->api.runtime;
}

void answer_saved(const call_ptr& c, const std::string& save_error, bool existed) {
  if (!save_error.empty()) {
    spdlog::error("runtime parameters not saved: {}", save_error);
    return c->error(bhttp::status::internal_server_error, "internal_server_error",
                    "the change was made but could not be saved: " + save_error);
  }
  if (existed) return c->no_content();
  c->created();
}

}  // namespace

// scope: 0 all, 1 of a component, 2 of a component in a vhost
void list_parameters(const call_ptr& c, int scope) {
  auto* store = store_of(c);
  if (!store) return;
  if (scope == 2 && !c->vhost_arg(1)) return;
  json items = json::array();
  for (const auto& p : store->parameters()) {
    if (scope >= 1 && p.component != c->args[0]) continue;
    if (scope == 2 && p.vhost != c->args[1]) continue;
    if (!c->may_see(p.vhost)) continue;
    items.push_back(federation::to_json(p));
  }
  c->list(std::move(items));
}

void get_parameter(const call_ptr& c) {
  auto* store = store_of(c);
  if (!store || !c->vhost_arg(1)) return;
  auto p = store->find_parameter(c->args[0], c->args[1], c->args[2]);
  if (!p) return c->not_found();
  c->json_reply(federation::to_json(*p));
}

void put_parameter(const call_ptr& c) {
  auto* store = store_of(c);
  if (!store) return;
  const std::string &component = c->args[0], &vhost = c->args[1], &name = c->args[2];
  if (!c->api.vhosts->find(vhost))
    return c->error(bhttp::status::not_found, "not_found", "vhost_not_found");
  auto body = c->body_object();
  if (!body) return;
  auto value = body->find("value");
  if (value == body->end()) return c->bad_request("[{key_missing,value}]");
  if (auto why = federation::check_parameter(component, name, *value))
    return c->bad_request(validation_failed(*why));
  bool existed = store->find_parameter(component, vhost, name).has_value();
  std::string err = store->set_parameter({vhost, component, name, *value});
  spdlog::info("parameter {}/{}/{} set by '{}'", component, vhost, name, c->user->name);
  answer_saved(c, err, existed);
}

void delete_parameter(const call_ptr& c) {
  auto* store = store_of(c);
  if (!store) return;
  std::string err;
  if (!store->clear_parameter(c->args[0], c->args[1], c->args[2], err)) return c->not_found();
  spdlog::info("parameter {}/{}/{} cleared by '{}'", c->args[0], c->args[1], c->args[2],
               c->user->name);
  answer_saved(c, err, true);
}

void list_policies(const call_ptr& c, bool one_vhost) {
  auto* store = store_of(c);
  if (!store) return;
  if (one_vhost && !c->vhost_arg(0)) return;
  json items = json::array();
  for (const auto& p : store->policies()) {
    if (one_vhost && p.vhost != c->args[0]) continue;
    if (!c->may_see(p.vhost)) continue;
    items.push_back(federation::to_json(p));
  }
  c->list(std::move(items));
}

void get_policy(const call_ptr& c) {
  auto* store = store_of(c);
  if (!store || !c->vhost_arg(0)) return;
  auto p = store->find_policy(c->args[0], c->args[1]);
  if (!p) return c->not_found();
  c->json_reply(federation::to_json(*p));
}

void put_policy(const call_ptr& c) {
  auto* store = store_of(c);
  if (!store) return;
  const std::string &vhost = c->args[0], &name = c->args[1];
  if (!c->api.vhosts->find(vhost))
    return c->error(bhttp::status::not_found, "not_found", "vhost_not_found");
  auto body = c->body_object();
  if (!body) return;
  auto checked = federation::check_policy(vhost, name, *body);
  if (auto* why = std::get_if<std::string>(&checked))
    return c->bad_request(validation_failed(*why));
  bool existed = store->find_policy(vhost, name).has_value();
  std::string err = store->set_policy(std::get<federation::policy>(std::move(checked)));
  spdlog::info("policy {}/{} set by '{}'", vhost, name, c->user->name);
  answer_saved(c, err, existed);
}

void delete_policy(const call_ptr& c) {
  auto* store = store_of(c);
  if (!store) return;
  std::string err;
  if (!store->clear_policy(c->args[0], c->args[1], err)) return c->not_found();
  spdlog::info("policy {}/{} cleared by '{}'", c->args[0], c->args[1], c->user->name);
  answer_saved(c, err, true);
}

namespace {

json status_json(const federation::link_status& s, const std::string& node) {
  json j = json::object();
  j["node"] = node;
  j["vhost"] = s.vhost;
  j["timestamp"] = s.timestamp;
  if (s.type == "shovel") {
    j["name"] = s.name;
    j["type"] = "dynamic";
    j["state"] = s.state;
    j["src_uri"] = s.uri;
    j["dest_uri"] = s.dest_uri;
    j["messages_moved"] = s.forwarded;
    if (!s.error.empty()) j["reason"] = s.error;
    return j;
  }
  j["type"] = s.type;  // exchange or queue
  if (s.type == "queue") {
    j["queue"] = s.name;
    j["upstream_queue"] = s.upstream_exchange;
  } else {
    j["exchange"] = s.name;
    j["upstream_exchange"] = s.upstream_exchange;
  }
  j["upstream"] = s.upstream;
  j["id"] = s.internal_queue;
  j["status"] = s.state;
  j["uri"] = s.uri;
  j["messages_forwarded"] = s.forwarded;
  if (!s.error.empty()) j["error"] = s.error;
  return j;
}

}  // namespace

// GET /api/federation-links[/{vhost}] and /api/shovels[/{vhost}] (RabbitMQ's federation and
// shovel management plugins).
void list_links(const call_ptr& c, bool shovels, bool one_vhost) {
  if (one_vhost && !c->vhost_arg(0)) return;
  json items = json::array();
  if (c->api.federation)
    for (const auto& s : c->api.federation->status()) {
      if ((s.type == "shovel") != shovels) continue;
      if (one_vhost && s.vhost != c->args[0]) continue;
      if (!c->may_see(s.vhost)) continue;
      items.push_back(status_json(s, c->node()));
    }
  c->list(std::move(items));
}

}  // namespace warren::mgmt
