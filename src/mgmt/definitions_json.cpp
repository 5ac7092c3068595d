// Definitions to and from RabbitMQ's JSON format (see the table in definitions_json.hpp).
#include "mgmt/definitions_json.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "auth/password.hpp"
#include "common/overloaded.hpp"
#include "mgmt/limits.hpp"

namespace warren::mgmt {

namespace {

template <typename T>
double as_double(T v) {
  return double(v);
}

}  // namespace

// ----------------------------------------------------------------------------- field tables

json to_json(const common::field_value& v) {
  using common::overloaded;
  return std::visit(
      overloaded{
          [](std::monostate) { return json(nullptr); },
          [](bool b) { return json(b); },
          [](int8_t i) { return json(int64_t(i)); },
          [](uint8_t i) { return json(uint64_t(i)); },
          [](int16_t i) { return json(int64_t(i)); },
          [](uint16_t i) { return json(uint64_t(i)); },
          [](int32_t i) { return json(int64_t(i)); },
          [](uint32_t i) { return json(uint64_t(i)); },
          [](int64_t i) { return json(i); },
          [](uint64_t i) { return json(i); },
          [](float f) { return std::isfinite(f) ? json(as_double(f)) : json(nullptr); },
          [](double d) { return std::isfinite(d) ? json(d) : json(nullptr); },
          [](const common::decimal& d) {
            return json(double(d.value) / std::pow(10.0, double(d.scale)));
          },
          [](const std::string& s) { return json(s); },
          [](const common::byte_array& b) { return json(b.data); },
          [](const common::timestamp& t) { return json(t.value); },
          [](const common::field_array& a) {
            json out = json::array();
            for (const auto& item : a.items) out.push_back(to_json(item));
            return out;
          },
          [](const common::field_table& t) { return to_json(t); },
      },
      v.v);
}

json to_json(const common::field_table& t) {
  json out = json::object();
  for (const auto& e : t.entries) out[e.key] = to_json(e.value);
  return out;
}

namespace {

// The narrowest of the two integer types clients send: pika and the Java client send 'I' for
// values that fit 32 bits and 'l' beyond. Warren's vhost compares arguments type and all on
// redeclaration (RabbitMQ compares integers by value, whatever their width), so this choice
// keeps a client's redeclaration of an imported queue equivalent.
common::field_value integer_value(int64_t i) {
  if (i >= std::numeric_limits<int32_t>::min() && i <= std::numeric_limits<int32_t>::max())
    return common::field_value(int32_t(i));
  return common::field_value(i);
}

// Deeper nesting is refused: the conversion recurses, and no argument needs this many levels.
constexpr int max_depth = 32;

std::optional<common::field_table> table_at_depth(const json& j, std::string& error, int depth);

std::optional<common::field_value> value_from_json(const json& j, std::string& error, int depth) {
  if (depth > max_depth) {
    error = fmt::format("nested deeper than {} levels", max_depth);
    return std::nullopt;
  }
  switch (j.type()) {
    case json::value_t::null:
      return common::field_value{};
    case json::value_t::boolean:
      return common::field_value(j.get<bool>());
    case json::value_t::number_integer:
      return integer_value(j.get<int64_t>());
    case json::value_t::number_unsigned: {
      auto u = j.get<uint64_t>();
      if (u > uint64_t(std::numeric_limits<int64_t>::max())) {
        error = fmt::format("integer {} does not fit a signed 64-bit field", u);
        return std::nullopt;
      }
      return integer_value(int64_t(u));
    }
    case json::value_t::number_float:
      return common::field_value(j.get<double>());
    case json::value_t::string:
      return common::field_value(j.get<std::string>());
    case json::value_t::array: {
      common::field_array a;
      for (const auto& item : j) {
        auto v = value_from_json(item, error, depth + 1);
        if (!v) return std::nullopt;
        a.items.push_back(std::move(*v));
      }
      return common::field_value(std::move(a));
    }
    case json::value_t::object: {
      auto t = table_at_depth(j, error, depth + 1);
      if (!t) return std::nullopt;
      return common::field_value(std::move(*t));
    }
    default:
      error = "binary JSON values cannot be field values";
      return std::nullopt;
  }
}

std::optional<common::field_table> table_at_depth(const json& j, std::string& error, int depth) {
  if (!j.is_object()) {
    error = "arguments must be a JSON object";
    return std::nullopt;
  }
  common::field_table t;
  for (const auto& [k, v] : j.items()) {
    auto fv = value_from_json(v, error, depth);
    if (!fv) {
      error = fmt::format("argument '{}': {}", k, error);
      return std::nullopt;
    }
    t.entries.push_back(common::field_entry{k, std::move(*fv)});
  }
  return t;
}

}  // namespace

std::optional<common::field_table> table_from_json(const json& j, std::string& error) {
  return table_at_depth(j, error, 0);
}

// ----------------------------------------------------------------------------- export

void add_users(definitions& d, const std::vector<auth::user_ptr>& users) {
  std::vector<auth::user_ptr> sorted = users;
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a->name < b->name; });
  for (const auto& u : sorted) {
    d.users.push_back(user_def{u->name, u->password_hash, u->tags, u->limits});
    for (const auto& [vhost, perm] : u->permissions)
      d.permissions.push_back(permission_def{u->name, vhost, perm});
    for (const auto& [vhost, by_exchange] : u->topic_permissions)
      for (const auto& [exchange, perm] : by_exchange)
        d.topic_permissions.push_back(topic_permission_def{u->name, vhost, exchange, perm});
  }
}

json export_json(const definitions& d, const export_info& info) {
  const bool all = !info.only_vhost;
  json out = json::object();
  out["rabbit_version"] = rabbitmq_compat_version;
  if (all) {
    out["rabbitmq_version"] = rabbitmq_compat_version;
    out["product_name"] = "Warren";
    out["product_version"] = info.product_version;
    json users = json::array();
    for (const auto& u : d.users)
      users.push_back(json{{"name", u.name},
                           {"password_hash", u.password_hash},
                           {"hashing_algorithm", hashing_algorithm},
                           {"tags", u.tags},
                           {"limits", limits_json(u.limits.value_or(limit_map{}))}});
    out["users"] = std::move(users);
    json vhosts = json::array();
    for (const auto& v : d.vhosts) vhosts.push_back(json{{"name", v}});
    out["vhosts"] = std::move(vhosts);
    json perms = json::array();
    for (const auto& p : d.permissions)
      perms.push_back(json{{"user", p.user},
                           {"vhost", p.vhost},
                           {"configure", p.perm.configure},
                           {"write", p.perm.write},
                           {"read", p.perm.read}});
    out["permissions"] = std::move(perms);
    json topics = json::array();
    for (const auto& t : d.topic_permissions)
      topics.push_back(json{{"user", t.user},
                            {"vhost", t.vhost},
                            {"exchange", t.exchange},
                            {"write", t.perm.write},
                            {"read", t.perm.read}});
    out["topic_permissions"] = std::move(topics);
  }
  json params = json::array();
  for (const auto& l : d.vhost_limits) {
    json p = json::object();
    if (all) p["vhost"] = l.vhost;
    p["component"] = "vhost-limits";
    p["name"] = "limits";
    p["value"] = limits_json(l.limits);
    params.push_back(std::move(p));
  }
  for (const auto& p : d.runtime_parameters) params.push_back(federation::to_json(p, all));
  out["parameters"] = std::move(params);
  if (all) out["global_parameters"] = json::array();
  json policies = json::array();
  for (const auto& p : d.policies) policies.push_back(federation::to_json(p, all));
  out["policies"] = std::move(policies);

  auto with_vhost = [all](json item, const std::string& vhost) {
    if (!all) return item;
    // RabbitMQ puts "vhost" second, after the name (or source).
    json ordered = json::object();
    auto it = item.begin();
    ordered[it.key()] = it.value();
    ordered["vhost"] = vhost;
    for (++it; it != item.end(); ++it) ordered[it.key()] = it.value();
    return ordered;
  };
  json queues = json::array();
  for (const auto& q : d.queues) {
    json item{{"name", q.name},
              {"durable", q.durable},
              {"auto_delete", q.auto_delete},
              {"arguments", to_json(q.arguments)}};
    if (!q.node.empty()) item["node"] = q.node;
    queues.push_back(with_vhost(std::move(item), q.vhost));
  }
  out["queues"] = std::move(queues);
  json exchanges = json::array();
  for (const auto& x : d.exchanges)
    exchanges.push_back(with_vhost(json{{"name", x.name},
                                        {"type", x.type},
                                        {"durable", x.durable},
                                        {"auto_delete", x.auto_delete},
                                        {"internal", x.internal},
                                        {"arguments", to_json(x.arguments)}},
                                   x.vhost));
  out["exchanges"] = std::move(exchanges);
  json bindings = json::array();
  for (const auto& b : d.bindings)
    bindings.push_back(with_vhost(json{{"source", b.source},
                                       {"destination", b.destination},
                                       {"destination_type", b.to_queue ? "queue" : "exchange"},
                                       {"routing_key", b.routing_key},
                                       {"arguments", to_json(b.arguments)}},
                                  b.vhost));
  out["bindings"] = std::move(bindings);
  return out;
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// ----------------------------------------------------------------------------- import

namespace {

// Reads the members of one item of a category, collecting the first problem as the reason.
class item_reader {
 public:
  item_reader(const json& obj, std::string what) : obj_(obj), what_(std::move(what)) {}

  // Missing keys keep `out` unless `required`.
  bool str(const char* key, std::string& out, bool required) {
    auto it = obj_.find(key);
    if (it == obj_.end() || (it->is_null() && !required))
      return !required || fail(key, "is missing");
    if (!it->is_string()) return fail(key, "must be a string");
    out = it->get<std::string>();
    return true;
  }
  bool boolean(const char* key, bool& out) {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return true;
    if (!it->is_boolean()) return fail(key, "must be true or false");
    out = it->get<bool>();
    return true;
  }
  bool table(const char* key, common::field_table& out) {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return true;
    if (it->is_array() && it->empty()) return true;  // RabbitMQ accepts [] for no arguments
    std::string why;
    auto t = table_from_json(*it, why);
    if (!t) return fail(key, why);
    out = std::move(*t);
    return true;
  }
  bool fail(std::string_view key, std::string_view why) {
    error_ = fmt::format("{}: '{}' {}", what_, key, why);
    return false;
  }
  bool fail(std::string_view why) {
    error_ = fmt::format("{}: {}", what_, why);
    return false;
  }
  // fail(), for returning the reason itself.
  template <typename... A>
  std::string refuse(A&&... a) {
    fail(std::forward<A>(a)...);
    return error_;
  }
  void describe(std::string what) { what_ = std::move(what); }
  const json& obj() const { return obj_; }
  std::string& error() { return error_; }

 private:
  const json& obj_;
  std::string what_;
  std::string error_;
};

bool reserved_name(std::string_view name) {
  return name.rfind("amq.", 0) == 0;
}

std::vector<std::string> split_tags(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::string_view t = text.substr(0, comma);
    while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
    while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
    if (!t.empty()) out.emplace_back(t);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace

std::variant<definitions, std::string> parse_definitions(
    std::string_view body, const std::optional<std::string>& only_vhost) {
  definitions d;
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return d;  // as RabbitMQ: {}
  json doc = json::parse(body, nullptr, false);
  if (doc.is_discarded()) return std::string("failed_to_parse_json");
  if (!doc.is_object()) return std::string("definitions must be a JSON object");

  // Each category: absent, or an array of objects.
  std::string error;
  auto category = [&](const char* name) -> const json* {
    auto it = doc.find(name);
    if (it == doc.end() || it->is_null()) return nullptr;
    if (!it->is_array()) {
      error = fmt::format("'{}' must be an array", name);
      return nullptr;
    }
    for (const auto& item : *it)
      if (!item.is_object()) {
        error = fmt::format("every element of '{}' must be an object", name);
        return nullptr;
      }
    return &*it;
  };
  auto count = [&](const char* name) -> size_t {
    const json* c = category(name);
    return c ? c->size() : 0;
  };
  // The vhost an exchange, queue or binding goes to.
  auto vhost_of = [&](item_reader& r, std::string& out) {
    if (only_vhost) {
      out = *only_vhost;
      return true;
    }
    if (!r.str("vhost", out, false)) return false;
    if (!r.obj().contains("vhost")) return r.fail("has no vhost");
    return true;
  };

  const bool all = !only_vhost;
  if (all) {
    if (const json* users = category("users")) {
      size_t i = 0;
      for (const auto& u : *users) {
        item_reader r(u, fmt::format("users[{}]", i++));
        user_def def;
        if (!r.str("name", def.name, true)) return r.error();
        r.describe(fmt::format("user '{}'", def.name));
        std::string algorithm(hashing_algorithm), password;
        if (!r.str("hashing_algorithm", algorithm, false)) return r.error();
        if (u.contains("password")) {
          if (!r.str("password", password, true)) return r.error();
          def.password_hash = auth::hash_password(password);
        } else {
          if (!r.str("password_hash", def.password_hash, true)) return r.error();
          if (algorithm != hashing_algorithm)
            return r.refuse(fmt::format("hashing algorithm '{}' is not supported (only {})",
                                        algorithm, hashing_algorithm));
          std::string raw;
          // Empty: a user that cannot log in with a password, as in RabbitMQ.
          if (!def.password_hash.empty() &&
              (!auth::base64_decode(def.password_hash, raw) || raw.size() != 36))
            return r.refuse("password_hash is not a salted SHA-256 hash in base64");
        }
        auto tags = u.find("tags");
        if (tags != u.end() && tags->is_string()) {
          def.tags = split_tags(tags->get<std::string>());  // RabbitMQ before 3.9: "a,b"
        } else if (tags != u.end() && tags->is_array()) {
          for (const auto& t : *tags) {
            if (!t.is_string()) return r.refuse("tags", "must be strings");
            def.tags.push_back(t.get<std::string>());
          }
        } else if (tags != u.end() && !tags->is_null()) {
          return r.refuse("tags", "must be a list of strings");
        }
        if (auto l = u.find("limits"); l != u.end() && !l->is_null()) {
          auto checked = check_user_limits(*l);
          if (auto* why = std::get_if<std::string>(&checked)) return r.refuse(*why);
          // {} merges nothing, the same as no key: kept as none, so exports round-trip.
          if (!std::get<limit_map>(checked).empty()) def.limits = std::get<limit_map>(checked);
        }
        d.users.push_back(std::move(def));
      }
    }
    if (!error.empty()) return error;
    if (const json* vhosts = category("vhosts")) {
      size_t i = 0;
      for (const auto& v : *vhosts) {
        item_reader r(v, fmt::format("vhosts[{}]", i++));
        std::string name;
        if (!r.str("name", name, true)) return r.error();
        d.vhosts.push_back(std::move(name));
      }
    }
    if (!error.empty()) return error;
    if (const json* perms = category("permissions")) {
      size_t i = 0;
      for (const auto& p : *perms) {
        item_reader r(p, fmt::format("permissions[{}]", i++));
        permission_def def;
        if (!r.str("user", def.user, true) || !r.str("vhost", def.vhost, true)) return r.error();
        r.describe(fmt::format("permission of user '{}' in vhost '{}'", def.user, def.vhost));
        if (!r.str("configure", def.perm.configure, true) ||
            !r.str("write", def.perm.write, true) || !r.str("read", def.perm.read, true))
          return r.error();
        for (const std::string* p : {&def.perm.configure, &def.perm.write, &def.perm.read})
          if (auto why = auth::pattern::check(*p))
            return r.refuse(fmt::format("invalid regular expression '{}': {}", *p, *why));
        d.permissions.push_back(std::move(def));
      }
    }
    if (!error.empty()) return error;
    if (const json* topics = category("topic_permissions")) {
      size_t i = 0;
      for (const auto& t : *topics) {
        item_reader r(t, fmt::format("topic_permissions[{}]", i++));
        topic_permission_def def;
        if (!r.str("user", def.user, true) || !r.str("vhost", def.vhost, true) ||
            !r.str("exchange", def.exchange, true))
          return r.error();
        r.describe(fmt::format("topic permission of user '{}' in vhost '{}' on exchange '{}'",
                               def.user, def.vhost, def.exchange));
        if (!r.str("write", def.perm.write, true) || !r.str("read", def.perm.read, true))
          return r.error();
        for (const std::string* p : {&def.perm.write, &def.perm.read})
          if (auto why = auth::pattern::check(*p))
            return r.refuse(fmt::format("invalid regular expression '{}': {}", *p, *why));
        d.topic_permissions.push_back(std::move(def));
      }
    }
    if (!error.empty()) return error;
    d.ignored_global_parameters = count("global_parameters");
  }
  if (const json* params = category("parameters")) {
    size_t i = 0;
    for (const auto& p : *params) {
      item_reader r(p, fmt::format("parameters[{}]", i++));
      std::string component, name;
      if (!r.str("component", component, false) || !r.str("name", name, false)) return r.error();
      if (federation::is_known_component(component)) {
        federation::parameter def{"", component, name, p.value("value", json())};
        if (!vhost_of(r, def.vhost)) return r.error();
        r.describe(fmt::format("parameter {} '{}' of vhost '{}'", component, name, def.vhost));
        if (auto why = federation::check_parameter(component, name, def.value))
          return r.refuse(validation_failed(*why));
        d.runtime_parameters.push_back(std::move(def));
        continue;
      }
      // Vhost limits are RabbitMQ's parameter "limits" of component "vhost-limits".
      if (component != "vhost-limits" || name != "limits") {
        ++d.ignored_parameters;
        continue;
      }
      vhost_limits_def def;
      if (!vhost_of(r, def.vhost)) return r.error();
      r.describe(fmt::format("limits of vhost '{}'", def.vhost));
      auto value = p.find("value");
      auto checked = check_vhost_limits(value == p.end() ? json() : *value);
      if (auto* why = std::get_if<std::string>(&checked)) return r.refuse(validation_failed(*why));
      def.limits = std::get<limit_map>(checked);
      d.vhost_limits.push_back(std::move(def));
    }
  }
  if (const json* pols = category("policies")) {
    size_t i = 0;
    for (const auto& p : *pols) {
      item_reader r(p, fmt::format("policies[{}]", i++));
      std::string name, vhost;
      if (!r.str("name", name, false) || !vhost_of(r, vhost)) return r.error();
      r.describe(fmt::format("policy '{}' of vhost '{}'", name, vhost));
      // Policies of settings Warren does not apply (max-length, ha-mode...) are skipped, as
      // before policies existed here; federation policies are checked as the API checks them.
      const json* def = p.is_object() && p.contains("definition") ? &p["definition"] : nullptr;
      if (def && def->is_object() && !def->contains("federation-upstream") &&
          !def->contains("federation-upstream-set") &&
          !def->contains("federation-upstream-pattern")) {
        ++d.ignored_policies;
        continue;
      }
      auto checked = federation::check_policy(vhost, name, p);
      if (auto* why = std::get_if<std::string>(&checked)) return r.refuse(validation_failed(*why));
      d.policies.push_back(std::get<federation::policy>(std::move(checked)));
    }
  }
  if (!error.empty()) return error;

  if (const json* xs = category("exchanges")) {
    size_t i = 0;
    for (const auto& x : *xs) {
      item_reader r(x, fmt::format("exchanges[{}]", i++));
      exchange_def def;
      if (!r.str("name", def.name, true)) return r.error();
      r.describe(fmt::format("exchange '{}'", def.name));
      if (!vhost_of(r, def.vhost) || !r.str("type", def.type, true) ||
          !r.boolean("durable", def.durable) || !r.boolean("auto_delete", def.auto_delete) ||
          !r.boolean("internal", def.internal) || !r.table("arguments", def.arguments))
        return r.error();
      // As RabbitMQ: the default exchange and amq.* ones are skipped, not refused.
      if (def.name.empty() || reserved_name(def.name)) continue;
      d.exchanges.push_back(std::move(def));
    }
  }
  if (!error.empty()) return error;
  if (const json* qs = category("queues")) {
    size_t i = 0;
    for (const auto& q : *qs) {
      item_reader r(q, fmt::format("queues[{}]", i++));
      queue_def def;
      if (!r.str("name", def.name, true)) return r.error();
      r.describe(fmt::format("queue '{}'", def.name));
      if (!vhost_of(r, def.vhost) || !r.boolean("durable", def.durable) ||
          !r.boolean("auto_delete", def.auto_delete) || !r.table("arguments", def.arguments))
        return r.error();
      if (def.name.empty()) return r.refuse("a queue needs a name");
      if (reserved_name(def.name)) continue;  // skipped, as RabbitMQ
      d.queues.push_back(std::move(def));
    }
  }
  if (!error.empty()) return error;
  if (const json* bs = category("bindings")) {
    size_t i = 0;
    for (const auto& b : *bs) {
      item_reader r(b, fmt::format("bindings[{}]", i++));
      binding_def def;
      std::string type;
      if (!r.str("source", def.source, true) || !r.str("destination", def.destination, true) ||
          !r.str("destination_type", type, true))
        return r.error();
      r.describe(fmt::format("binding from '{}' to {} '{}'", def.source, type, def.destination));
      if (type != "queue" && type != "exchange")
        return r.refuse("destination_type", "must be \"queue\" or \"exchange\"");
      def.to_queue = type == "queue";
      if (!vhost_of(r, def.vhost) || !r.str("routing_key", def.routing_key, false) ||
          !r.table("arguments", def.arguments))
        return r.error();
      d.bindings.push_back(std::move(def));
    }
  }
  if (!error.empty()) return error;
  return d;
}

}  // namespace warren::mgmt
