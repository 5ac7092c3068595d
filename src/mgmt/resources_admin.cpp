// The broker as a whole (overview, nodes, whoami, the web gateway's statistics) and its
// administration: users, permissions and vhosts. Users live in the shared user store (any
// thread) and are saved to users.json; vhost sums come from each vhost's home worker.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <thread>

#include "alarm/limits.hpp"
#include "auth/password.hpp"
#include "mgmt/limits.hpp"
#include "mgmt/resources.hpp"
#include "mgmt/users_file.hpp"

namespace warren::mgmt {

namespace bhttp = boost::beast::http;

namespace {

// RabbitMQ's 400 for the first of these permission patterns that cannot be set, if any.
std::optional<std::string> invalid_pattern(std::initializer_list<const std::string*> patterns) {
  for (const std::string* pattern : patterns)
    if (auto why = auth::pattern::check(*pattern))
      return fmt::format("invalid regular expression '{}': {}", *pattern, *why);
  return std::nullopt;
}

// Replaces the user (if it still exists) by a copy `change` edits: a user value is immutable once
// published, connections on other workers may hold it.
template <typename F>
void change_user(const call_ptr& c, const std::string& name, F&& change) {
  c->api.users->update([&](auth::user_map& m) {
    auto it = m.find(name);
    if (it == m.end()) return;
    auto u = std::make_shared<auth::user>(*it->second);
    change(*u);
    it->second = std::move(u);
  });
}

json user_json(const auth::user& u) {
  return {{"name", u.name},
          {"password_hash", u.password_hash},
          {"hashing_algorithm", "rabbit_password_hashing_sha256"},
          {"tags", u.tags},
          {"limits", limits_json(u.limits)}};
}

json permission_json(const std::string& user, const std::string& vhost, const auth::permission& p) {
  return {{"user", user},
          {"vhost", vhost},
          {"configure", p.configure},
          {"write", p.write},
          {"read", p.read}};
}

json topic_permission_json(const std::string& user, const std::string& vhost,
                           const std::string& exchange, const auth::topic_permission& t) {
  return {{"user", user},
          {"vhost", vhost},
          {"exchange", exchange},
          {"write", t.write},
          {"read", t.read}};
}

// The topic permissions of `u` in `vhost`, as the API lists them.
void add_topic_permissions(json& items, const auth::user& u, const std::string& vhost) {
  auto it = u.topic_permissions.find(vhost);
  if (it == u.topic_permissions.end()) return;
  for (const auto& [exchange, t] : it->second)
    items.push_back(topic_permission_json(u.name, vhost, exchange, t));
}

json rate(double r) {
  return {{"rate", r}};
}

std::vector<std::string> parse_tags(const json& body) {
  std::vector<std::string> tags;
  auto it = body.find("tags");
  if (it == body.end()) return tags;
  auto add = [&](std::string t) {
    while (!t.empty() && t.front() == ' ') t.erase(0, 1);
    while (!t.empty() && t.back() == ' ') t.pop_back();
    if (!t.empty() && std::find(tags.begin(), tags.end(), t) == tags.end()) tags.push_back(t);
  };
  if (it->is_array()) {
    for (const auto& t : *it)
      if (t.is_string()) add(t.get<std::string>());
  } else if (it->is_string()) {
    std::string s = it->get<std::string>();
    size_t start = 0;
    while (start <= s.size()) {
      size_t comma = s.find(',', start);
      add(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  return tags;
}

json node_json(const call_ptr& c) {
  node_status s = c->api.node ? c->api.node() : node_status{};
  int64_t now = broker::wall_ms();
  json contexts = json::array(), listeners = json::array();
  for (const auto& l : c->api.listeners) {
    listeners.push_back({{"node", c->node()},
                         {"protocol", l.protocol},
                         {"ip_address", l.ip_address},
                         {"port", l.port},
                         {"socket_opts", json::object()}});
    if (l.protocol == "http")
      contexts.push_back({{"node", c->node()},
                          {"description", "RabbitMQ Management"},
                          {"path", "/"},
                          {"port", std::to_string(l.port)}});
  }
  json types = json::array();
  for (const char* t : {"direct", "fanout", "topic", "headers", "x-recent-history",
                        "x-consistent-hash", "x-message-deduplication"})
    types.push_back({{"name", t}, {"description", ""}, {"enabled", true}});
  return {{"name", c->node()},
          {"type", "disc"},
          {"running", true},
          {"being_drained", false},
          {"os_pid", std::to_string(::getpid())},
          {"uptime", now - c->api.started_at},
          {"run_queue", 0},
          {"processors", std::max(1u, std::thread::hardware_concurrency())},
          {"mem_used", s.mem_used},
          {"mem_limit", s.mem_limit},
          {"mem_alarm", s.mem_alarm},
          {"mem_calculation_strategy", "rss"},
          {"disk_free", s.disk_free},
          {"disk_free_limit", s.disk_free_limit},
          {"disk_free_alarm", s.disk_free_alarm},
          {"fd_used", s.fd_used},
          {"fd_total", s.fd_total},
          {"sockets_used", s.sockets_used},
          {"sockets_total", s.fd_total},
          {"proc_used", s.threads},
          {"proc_total", 1048576},
          {"rates_mode", "basic"},
          {"enabled_plugins", json::array({"rabbitmq_management", "rabbitmq_prometheus"})},
          {"applications", json::array({{{"name", "warren"},
                                         {"description", "Warren message broker"},
                                         {"version", c->api.version}}})},
          {"exchange_types", types},
          {"auth_mechanisms",
           json::array({{{"name", "PLAIN"}, {"description", "SASL PLAIN"}, {"enabled", true}},
                        {{"name", "AMQPLAIN"}, {"description", "AMQPLAIN"}, {"enabled", true}}})},
          {"partitions", json::array()},
          {"cluster_links", json::array()},
          {"contexts", contexts},
          {"listeners", listeners},
          {"net_ticktime", 60}};
}

}  // namespace

// ----------------------------------------------------------------------------- the broker

void get_whoami(const call_ptr& c) {
  c->json_reply({{"name", c->user->name}, {"tags", c->user->tags}});
}

namespace {

// Another node of the cluster, from what it published in etcd: RabbitMQ's fields this node can
// know without asking that node (its statistics would need a node-to-node link, not there yet).
json peer_json(const cluster_member& m, int64_t now) {
  const json& i = m.info;
  int64_t started = i.value("started_at", int64_t(0));
  json listeners = json::array();
  if (auto l = i.find("listeners"); l != i.end() && l->is_array())
    for (const auto& x : *l) {
      json y = x;
      y["node"] = m.name;
      listeners.push_back(std::move(y));
    }
  json j = {{"name", m.name},
            {"type", "disc"},
            {"running", m.running},
            {"being_drained", false},
            {"listeners", listeners},
            {"applications", json::array({{{"name", "warren"},
                                           {"description", "Warren message broker"},
                                           {"version", i.value("version", "")}}})}};
  if (m.running) {
    j["uptime"] = started ? now - started : 0;
    if (i.contains("pid")) j["os_pid"] = std::to_string(i.value("pid", 0));
  }
  return j;
}

}  // namespace

// One node alone: itself. In a cluster: every node etcd knows, running or not; this one with its
// own statistics, the others with what they published (docs/cluster.md).
void get_nodes(const call_ptr& c, bool one) {
  json self = node_json(c);
  json all = json::array();
  if (!c->api.cluster) {
    all.push_back(std::move(self));
  } else {
    cluster_status cs = c->api.cluster();
    int64_t now = broker::wall_ms();
    for (const auto& m : cs.members) {
      if (m.name != c->node()) {
        all.push_back(peer_json(m, now));
        continue;
      }
      json me = self;
      me["running"] = m.running;
      me["warren_cluster_state"] = cs.state;
      if (!cs.reason.empty()) me["warren_fenced_reason"] = cs.reason;
      all.push_back(std::move(me));
    }
    for (auto& n : all) {
      json links = json::array();
      for (const auto& m : cs.members)
        if (m.name != n["name"] && m.running) links.push_back({{"name", m.name}});
      n["cluster_links"] = std::move(links);
      // How many of the web gateway's 256 shard slots the node owns (docs/cluster.md).
      auto g = cs.gateway_slots.find(n["name"].get<std::string>());
      n["warren_gateway_slots"] = g == cs.gateway_slots.end() ? 0 : g->second;
      n["warren_gateway_map_version"] = cs.gateway_map_version;
    }
  }
  if (one) {
    for (const auto& n : all)
      if (n["name"] == c->args[0])
        return c->json_reply(c->query.columns.empty() ? n : keep_columns(n, c->query.columns));
    return c->not_found();
  }
  c->list(std::move(all));
}

void get_overview(const call_ptr& c) {
  over_vhost_shards<broker::vhost_totals>(
      c, c->visible_vhosts(), [](broker::vhost& v) { return v.totals(); },
      [](broker::vhost_totals& to, broker::vhost_totals&& part) { to.add(part); },
      [c](std::vector<broker::vhost_totals> parts) {
        all_connections(c, [c,
                            parts = std::move(parts)](std::vector<broker::connection_view> conns) {
          broker::vhost_totals t;
          for (const auto& p : parts) t.add(p);
          size_t channels = 0;
          for (const auto& k : conns) channels += k.channels.size();
          auto g = broker::global_counters::total();
          using G = broker::global_counters;
          broker::overview_history h;
          if (c->api.overview) c->api.overview->copy_to(h);
          const broker::overview_history* hp = &h;
          int64_t la = c->query.lengths_age.value_or(0) * 1000,
                  li = c->query.lengths_incr.value_or(5) * 1000,
                  ma = c->query.msg_rates_age.value_or(0) * 1000,
                  mi = c->query.msg_rates_incr.value_or(5) * 1000;
          auto msg = [&](uint64_t v, const char* k, size_t s, json& into) {
            into[k] = v;
            into[std::string(k) + "_details"] = details(h.rate(s), hp, s, ma, mi);
          };
          json ms = json::object();
          using namespace broker;
          msg(g[G::received], "publish", os_publish, ms);
          msg(g[G::confirmed], "confirm", os_confirm, ms);
          msg(g[G::unroutable_returned], "return_unroutable", os_return_unroutable, ms);
          msg(g[G::unroutable_dropped], "drop_unroutable", os_drop_unroutable, ms);
          uint64_t deliver = g[G::delivered_consume_manual_ack],
                   deliver_no_ack = g[G::delivered_consume_auto_ack],
                   get = g[G::delivered_get_manual_ack], get_no_ack = g[G::delivered_get_auto_ack];
          msg(deliver, "deliver", os_deliver, ms);
          msg(deliver_no_ack, "deliver_no_ack", os_deliver_no_ack, ms);
          msg(get, "get", os_get, ms);
          msg(get_no_ack, "get_no_ack", os_get_no_ack, ms);
          msg(g[G::get_empty], "get_empty", os_get_empty, ms);
          msg(deliver + deliver_no_ack + get + get_no_ack, "deliver_get", os_deliver_get, ms);
          msg(g[G::redelivered], "redeliver", os_redeliver, ms);
          msg(g[G::acknowledged], "ack", os_ack, ms);
          json qt = {
              {"messages", t.ready + t.unacked},
              {"messages_details", details(h.rate(os_ready) + h.rate(os_unacked),
                                           (const broker::overview_history*)nullptr, 0, 0, 0)},
              {"messages_ready", t.ready},
              {"messages_ready_details", details(h.rate(os_ready), hp, os_ready, la, li)},
              {"messages_unacknowledged", t.unacked},
              {"messages_unacknowledged_details",
               details(h.rate(os_unacked), hp, os_unacked, la, li)}};
          json churn = json::object();
          auto ch = [&](const char* k, uint64_t v) {
            churn[k] = v;
            churn[std::string(k) + "_details"] = rate(0);
          };
          ch("connection_created", g[G::connections_opened]);
          ch("connection_closed", g[G::connections_closed]);
          ch("channel_created", g[G::channels_opened]);
          ch("channel_closed", g[G::channels_closed]);
          ch("queue_declared", g[G::queues_declared]);
          ch("queue_created", g[G::queues_created]);
          ch("queue_deleted", g[G::queues_deleted]);
          json ot = {{"connections", conns.size()},
                     {"channels", channels},
                     {"exchanges", t.exchanges},
                     {"queues", t.queues}};
          if (has_access(*c->user, access::monitoring)) ot["consumers"] = t.consumers;
          json node = node_json(c);
          json j = {{"management_version", c->api.version},
                    {"rabbitmq_version", "3.13.7"},
                    {"product_name", "Warren"},
                    {"product_version", c->api.version},
                    {"erlang_version", "none"},
                    {"erlang_full_version", "none (Warren is written in C++)"},
                    {"release_series_support_status", "supported"},
                    {"rates_mode", "basic"},
                    {"disable_stats", false},
                    {"enable_queue_totals", true},
                    {"is_op_policy_updating_enabled", false},
                    {"cluster_name", c->api.cluster_name},
                    {"node", c->node()},
                    {"statistics_db_event_queue", 0},
                    {"sample_retention_policies",
                     {{"global", {600, 3600, 28800, 86400}},
                      {"basic", {600, 3600}},
                      {"detailed", {600}}}},
                    {"exchange_types", node["exchange_types"]},
                    {"message_stats", ms},
                    {"churn_rates", churn},
                    {"queue_totals", qt},
                    {"object_totals", ot},
                    {"listeners", node["listeners"]},
                    {"contexts", node["contexts"]}};
          c->json_reply(c->query.columns.empty() ? j : keep_columns(j, c->query.columns));
        });
      });
}

void get_gateway(const call_ptr& c) {
  if (!c->api.gateway_stats) return c->not_found();
  // Gathered on the gateway's workers; answered on the request's.
  c->api.gateway_stats([c](web::gateway_stats s) {
    c->here.post([c, s] {
      gateway_history h;
      if (c->api.gateway_history) c->api.gateway_history->copy_to(h);
      int64_t age = c->query.msg_rates_age.value_or(0) * 1000,
              incr = c->query.msg_rates_incr.value_or(5) * 1000;
      json j = gateway_json(s, details(h.rate(gs_delivered), &h, gs_delivered, age, incr));
      c->json_reply(c->query.columns.empty() ? j : keep_columns(j, c->query.columns));
    });
  });
}

// ----------------------------------------------------------------------------- users

bool save_users(const call_ptr& c) {
  std::string error;
  if (c->api.user_file && !c->api.user_file->save(*c->api.users, error)) {
    spdlog::error("users not saved: {}", error);
    c->error(bhttp::status::internal_server_error, "internal_server_error",
             "the change was made but could not be saved: " + error);
    return false;
  }
  return true;
}

void list_users(const call_ptr& c) {
  json items = json::array();
  for (const auto& u : c->api.users->all()) items.push_back(user_json(*u));
  c->list(std::move(items));
}

void get_user(const call_ptr& c) {
  auto u = c->api.users->find(c->args[0]);
  if (!u) return c->not_found();
  c->json_reply(user_json(*u));
}

void put_user(const call_ptr& c) {
  auto body = c->body_object();
  if (!body) return;
  const std::string& name = c->args[0];
  if (name.empty()) return c->bad_request("a user name has at least one character");
  std::string hash;
  if (auto p = body->find("password"); p != body->end() && p->is_string()) {
    hash = auth::hash_password(p->get<std::string>());
  } else if (auto h = body->find("password_hash"); h != body->end() && h->is_string()) {
    std::string algo = json_text(*body, "hashing_algorithm", "rabbit_password_hashing_sha256");
    if (algo != "rabbit_password_hashing_sha256")
      return c->bad_request(fmt::format("hashing algorithm '{}' is not supported", algo));
    hash = h->get<std::string>();
    std::string raw;
    if (!hash.empty() && (!auth::base64_decode(hash, raw) || raw.size() != 36))
      return c->bad_request("password_hash: not a salted SHA-256 hash in base64");
  } else if (!c->api.users->find(name)) {
    return c->bad_request("password or password_hash is required");
  }
  bool has_password = body->contains("password") || body->contains("password_hash");
  auto tags = parse_tags(*body);
  // RabbitMQ's put_user takes the user's limits too; without the key they stay as they are.
  std::optional<limit_map> limits;
  if (auto l = body->find("limits"); l != body->end()) {
    auto checked = check_user_limits(*l);
    if (auto* why = std::get_if<std::string>(&checked)) return c->bad_request(*why);
    limits = std::get<limit_map>(checked);
  }
  bool created = false;
  c->api.users->update([&](auth::user_map& m) {
    auto it = m.find(name);
    auto u = std::make_shared<auth::user>();
    if (it != m.end()) *u = *it->second;
    created = it == m.end();
    u->name = name;
    if (has_password) u->password_hash = hash;
    u->tags = tags;
    if (limits) u->limits = *limits;
    m[name] = std::move(u);
  });
  if (!save_users(c)) return;
  spdlog::info("user '{}' {} by '{}'", name, created ? "created" : "updated", c->user->name);
  created ? c->created() : c->no_content();
}

void delete_user(const call_ptr& c) {
  bool found = false;
  c->api.users->update([&](auth::user_map& m) { found = m.erase(c->args[0]) > 0; });
  if (!found) return c->not_found();
  if (!save_users(c)) return;
  spdlog::info("user '{}' deleted by '{}'", c->args[0], c->user->name);
  c->no_content();
}

// ----------------------------------------------------------------------------- permissions

void list_permissions(const call_ptr& c, int scope) {
  if (scope == 1 && !c->vhost_arg(0)) return;
  if (scope == 2 && !c->api.users->find(c->args[0])) return c->not_found();
  json items = json::array();
  for (const auto& u : c->api.users->all()) {
    if (scope == 2 && u->name != c->args[0]) continue;
    for (const auto& [v, p] : u->permissions) {
      if (scope == 1 && v != c->args[0]) continue;
      if (!c->api.vhosts->find(v)) continue;
      items.push_back(permission_json(u->name, v, p));
    }
  }
  c->list(std::move(items));
}

void get_permission(const call_ptr& c) {
  auto u = c->api.users->find(c->args[1]);
  if (!u || !c->api.vhosts->find(c->args[0])) return c->not_found();
  auto it = u->permissions.find(c->args[0]);
  if (it == u->permissions.end()) return c->not_found();
  c->json_reply(permission_json(u->name, it->first, it->second));
}

void put_permission(const call_ptr& c) {
  auto body = c->body_object();
  if (!body) return;
  const std::string &vhost = c->args[0], &user = c->args[1];
  if (!c->api.vhosts->find(vhost)) return c->bad_request("vhost_not_found");
  if (!c->api.users->find(user)) return c->bad_request("user_not_found");
  auth::permission p;
  p.configure = json_text(*body, "configure");
  p.write = json_text(*body, "write");
  p.read = json_text(*body, "read");
  if (auto why = invalid_pattern({&p.configure, &p.write, &p.read})) return c->bad_request(*why);
  bool created = false;
  change_user(c, user, [&](auth::user& u) {
    created = !u.permissions.count(vhost);
    u.permissions[vhost] = p;
  });
  if (!save_users(c)) return;
  created ? c->created() : c->no_content();
}

void delete_permission(const call_ptr& c) {
  const std::string &vhost = c->args[0], &user = c->args[1];
  bool found = false;
  c->api.users->update([&](auth::user_map& m) {
    auto it = m.find(user);
    if (it == m.end() || !it->second->permissions.count(vhost)) return;
    auto u = std::make_shared<auth::user>(*it->second);
    u->permissions.erase(vhost);
    it->second = std::move(u);
    found = true;
  });
  if (!found) return c->not_found();
  if (!save_users(c)) return;
  c->no_content();
}

// ----------------------------------------------------------------------------- topic permissions
// RabbitMQ's rabbit_mgmt_wm_topic_permission(s)*: a user has at most one per (vhost, exchange).

void list_topic_permissions(const call_ptr& c, int scope) {
  if (scope == 1 && !c->vhost_arg(0)) return;
  if (scope == 2 && !c->api.users->find(c->args[0])) return c->not_found();
  std::vector<std::string> vhosts = c->api.vhosts->names();
  std::sort(vhosts.begin(), vhosts.end());
  auto users = c->api.users->all();  // by name
  json items = json::array();
  // RabbitMQ's order: by vhost, then user.
  for (const auto& v : vhosts) {
    if (scope == 1 && v != c->args[0]) continue;
    for (const auto& u : users)
      if (scope != 2 || u->name == c->args[0]) add_topic_permissions(items, *u, v);
  }
  c->list(std::move(items));
}

void get_topic_permission(const call_ptr& c) {
  const std::string &vhost = c->args[0], &user = c->args[1];
  auto u = c->api.users->find(user);
  if (!u || !c->api.vhosts->find(vhost)) return c->not_found();
  json items = json::array();
  add_topic_permissions(items, *u, vhost);
  if (items.empty()) return c->not_found();
  c->json_reply(items);
}

void put_topic_permission(const call_ptr& c) {
  auto body = c->body_object();
  if (!body) return;
  const std::string &vhost = c->args[0], &user = c->args[1];
  if (!c->api.vhosts->find(vhost) || !c->api.users->find(user))
    return c->bad_request("vhost_or_user_not_found");
  // All three keys, as RabbitMQ's with_decode wants them.
  std::string values[3];
  const char* keys[3] = {"exchange", "write", "read"};
  for (size_t i = 0; i < 3; ++i) {
    auto it = body->find(keys[i]);
    if (it == body->end() || !it->is_string())
      return c->bad_request(fmt::format("key_missing: {}", keys[i]));
    values[i] = it->get<std::string>();
  }
  const std::string& exchange = values[0];
  auth::topic_permission t{values[1], values[2]};
  if (auto why = invalid_pattern({&t.write, &t.read})) return c->bad_request(*why);
  bool created = false;
  change_user(c, user, [&](auth::user& u) {
    auto& in_vhost = u.topic_permissions[vhost];
    created = in_vhost.empty();  // RabbitMQ's resource: the user's topic permissions in the vhost
    in_vhost[exchange] = t;
  });
  if (!save_users(c)) return;
  spdlog::info("topic permission of '{}' in vhost '{}' on exchange '{}' set by '{}'", user, vhost,
               exchange, c->user->name);
  created ? c->created() : c->no_content();
}

void delete_topic_permission(const call_ptr& c, bool one) {
  const std::string &vhost = c->args[0], &user = c->args[1];
  bool found = false;
  c->api.users->update([&](auth::user_map& m) {
    auto it = m.find(user);
    if (it == m.end()) return;
    auto v = it->second->topic_permissions.find(vhost);
    if (v == it->second->topic_permissions.end() || v->second.empty()) return;
    found = true;
    auto u = std::make_shared<auth::user>(*it->second);
    if (one) {
      auto& in_vhost = u->topic_permissions[vhost];
      in_vhost.erase(c->args[2]);
      if (in_vhost.empty()) u->topic_permissions.erase(vhost);
    } else {
      u->topic_permissions.erase(vhost);
    }
    it->second = std::move(u);
  });
  if (!found) return c->not_found();
  if (!save_users(c)) return;
  c->no_content();
}

// ----------------------------------------------------------------------------- vhosts

namespace {

json vhost_json(const std::string& name, const broker::vhost_totals* t, const call& c) {
  json j = {{"name", name},
            {"description", ""},
            {"tags", json::array()},
            {"default_queue_type", "classic"},
            {"metadata",
             {{"description", ""}, {"tags", json::array()}, {"default_queue_type", "classic"}}},
            {"tracing", false},
            {"cluster_state", {{c.node(), "running"}}}};
  if (t) {
    using namespace broker;
    j["messages"] = t->ready + t->unacked;
    j["messages_details"] = rate(t->rates[qs_ready] + t->rates[qs_unacked]);
    j["messages_ready"] = t->ready;
    j["messages_ready_details"] = rate(t->rates[qs_ready]);
    j["messages_unacknowledged"] = t->unacked;
    j["messages_unacknowledged_details"] = rate(t->rates[qs_unacked]);
    j["message_stats"] = {{"publish", t->counters.publish},
                          {"publish_details", rate(t->rates[qs_publish])},
                          {"deliver_get", t->counters.deliver_get()},
                          {"deliver_get_details", rate(t->rates[qs_deliver_get])},
                          {"ack", t->counters.ack},
                          {"ack_details", rate(t->rates[qs_ack])},
                          {"redeliver", t->counters.redeliver},
                          {"redeliver_details", rate(t->rates[qs_redeliver])}};
  }
  return j;
}

}  // namespace

void list_vhosts(const call_ptr& c) {
  auto vs = c->visible_vhosts();
  over_vhost_shards<broker::vhost_totals>(
      c, vs, [](broker::vhost& v) { return v.totals(); },
      [](broker::vhost_totals& to, broker::vhost_totals&& part) { to.add(part); },
      [c, vs](std::vector<broker::vhost_totals> t) {
        json items = json::array();
        for (size_t i = 0; i < vs.size(); ++i)
          items.push_back(vhost_json(vs[i]->name(), &t[i], *c));
        c->list(std::move(items));
      });
}

void get_vhost(const call_ptr& c) {
  broker::vhost* v = c->vhost_arg(0);
  if (!v) return;
  over_vhost_shards<broker::vhost_totals>(
      c, {v}, [](broker::vhost& v) { return v.totals(); },
      [](broker::vhost_totals& to, broker::vhost_totals&& part) { to.add(part); },
      [c, v](std::vector<broker::vhost_totals> t) {
        c->json_reply(vhost_json(v->name(), &t[0], *c));
      });
}

void put_vhost(const call_ptr& c) {
  const std::string& name = c->args[0];
  if (c->api.vhosts->find(name)) return c->no_content();
  std::string why = c->api.create_vhost ? c->api.create_vhost(name, c->user->name)
                                        : "this broker cannot create vhosts";
  if (!why.empty()) return c->bad_request(why);
  c->created();
}

void delete_vhost(const call_ptr& c) {
  const std::string& name = c->args[0];
  if (!c->api.vhosts->find(name)) return c->not_found();
  if (!c->api.delete_vhost) return c->bad_request("this broker cannot delete vhosts");
  net::worker* back = &c->here;
  c->api.delete_vhost(name, [c, back](std::string why) {
    back->post([c, why = std::move(why)] { why.empty() ? c->no_content() : c->bad_request(why); });
  });
}

// Warren's own: rabbitmqctl's set_vm_memory_high_watermark over HTTP. {"fraction": 0.4} of
// the total memory, or {"absolute": "200MiB"} (a size as --vm-memory-high-watermark-absolute
// takes it, or a number of bytes); numbers may come as strings.
void put_memory_watermark(const call_ptr& c) {
  auto body = c->body_object();
  if (!body) return;
  if (!c->api.set_memory_high_watermark)
    return c->bad_request("this broker cannot change its memory watermark");
  bool has_fraction = body->contains("fraction"), has_absolute = body->contains("absolute");
  if (has_fraction == has_absolute)
    return c->bad_request("give either \"fraction\" (0 to 1) or \"absolute\" (a size)");
  std::optional<uint64_t> limit;
  if (has_fraction) {
    const json& f = (*body)["fraction"];
    std::optional<double> v;
    if (f.is_number()) {
      double d = f.get<double>();
      if (d >= 0 && d <= 1) v = d;
    } else if (f.is_string()) {
      v = alarm::parse_fraction(f.get<std::string>());
    }
    if (!v) return c->bad_request("\"fraction\" must be a number from 0 to 1");
    limit = c->api.set_memory_high_watermark(*v);
    if (!limit) return c->bad_request("the total memory cannot be read: give \"absolute\" instead");
  } else {
    const json& a = (*body)["absolute"];
    std::optional<uint64_t> v;
    if (a.is_number_unsigned())
      v = a.get<uint64_t>();
    else if (a.is_string())
      v = alarm::parse_size(a.get<std::string>());
    if (!v || *v == 0)
      return c->bad_request("\"absolute\" must be a size such as 200MiB or a number of bytes");
    limit = c->api.set_memory_high_watermark(*v);
  }
  c->json_reply({{"mem_limit", *limit}});
}

}  // namespace warren::mgmt
