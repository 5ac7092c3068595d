// Definitions as etcd keys and values (see cluster_definitions_codec.hpp).
#include "app/cluster_definitions_codec.hpp"
#include "mgmt/definitions_json.hpp"

#include <fmt/format.h>

namespace warren::app {

namespace {

using mgmt::json;

bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::string args_text(const common::field_table& t) {
  return mgmt::dump(mgmt::to_json(t));
}

// Splits on '/', keeping empty parts.
std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t slash = s.find('/', start);
    out.push_back(s.substr(start, slash == std::string_view::npos ? s.npos : slash - start));
    if (slash == std::string_view::npos) return out;
    start = slash + 1;
  }
}

std::optional<common::field_table> args_from(const json& j) {
  std::string err;
  return mgmt::table_from_json(j, err);
}

}  // namespace

std::string percent_encode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (unreserved(c))
      out.push_back(char(c));
    else
      out += fmt::format("%{:02X}", c);
  }
  return out;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(char(hi * 16 + lo));
    i += 2;
  }
  return out;
}

std::string vhost_key_prefix(std::string_view vhost) {
  return percent_encode(vhost) + "/";
}

std::string definition_key(const definition& d) {
  if (auto* x = std::get_if<mgmt::exchange_def>(&d))
    return vhost_key_prefix(x->vhost) + "exchanges/" + percent_encode(x->name);
  if (auto* q = std::get_if<queue_record>(&d))
    return vhost_key_prefix(q->def.vhost) + "queues/" + percent_encode(q->def.name);
  const auto& b = std::get<mgmt::binding_def>(d);
  return fmt::format("{}bindings/{}/{}/{}/{}/{}", vhost_key_prefix(b.vhost),
                     percent_encode(b.source), b.to_queue ? "queue" : "exchange",
                     percent_encode(b.destination), percent_encode(b.routing_key),
                     percent_encode(args_text(b.arguments)));
}

std::optional<std::string> key_vhost(std::string_view key) {
  size_t slash = key.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  return percent_decode(key.substr(0, slash));
}

std::string definition_value(const definition& d) {
  if (auto* x = std::get_if<mgmt::exchange_def>(&d))
    return mgmt::dump(json{{"name", x->name},
                           {"type", x->type},
                           {"durable", x->durable},
                           {"auto_delete", x->auto_delete},
                           {"internal", x->internal},
                           {"arguments", mgmt::to_json(x->arguments)}});
  if (auto* q = std::get_if<queue_record>(&d)) {
    json j{{"name", q->def.name},
           {"durable", q->def.durable},
           {"auto_delete", q->def.auto_delete},
           {"arguments", mgmt::to_json(q->def.arguments)},
           {"node", q->node}};
    if (q->exclusive) j["exclusive"] = true;
    return mgmt::dump(j);
  }
  const auto& b = std::get<mgmt::binding_def>(d);
  return mgmt::dump(json{{"source", b.source},
                         {"destination", b.destination},
                         {"destination_type", b.to_queue ? "queue" : "exchange"},
                         {"routing_key", b.routing_key},
                         {"arguments", mgmt::to_json(b.arguments)}});
}

std::optional<definition> parse_definition(std::string_view key, std::string_view value) {
  auto parts = split(key);
  if (parts.size() < 3) return std::nullopt;
  auto vhost = percent_decode(parts[0]);
  if (!vhost) return std::nullopt;
  json j = json::parse(value, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  std::optional<definition> out;
  try {
    if (parts[1] == "exchanges") {
      mgmt::exchange_def x;
      x.vhost = *vhost;
      x.name = j.at("name").get<std::string>();
      x.type = j.at("type").get<std::string>();
      x.durable = j.at("durable").get<bool>();
      x.auto_delete = j.at("auto_delete").get<bool>();
      x.internal = j.at("internal").get<bool>();
      auto args = args_from(j.at("arguments"));
      if (!args) return std::nullopt;
      x.arguments = std::move(*args);
      out = std::move(x);
    } else if (parts[1] == "queues") {
      queue_record q;
      q.def.vhost = *vhost;
      q.def.name = j.at("name").get<std::string>();
      q.def.durable = j.at("durable").get<bool>();
      q.def.auto_delete = j.at("auto_delete").get<bool>();
      auto args = args_from(j.at("arguments"));
      if (!args) return std::nullopt;
      q.def.arguments = std::move(*args);
      q.node = j.at("node").get<std::string>();
      if (auto e = j.find("exclusive"); e != j.end()) q.exclusive = e->get<bool>();
      out = std::move(q);
    } else if (parts[1] == "bindings") {
      mgmt::binding_def b;
      b.vhost = *vhost;
      b.source = j.at("source").get<std::string>();
      b.destination = j.at("destination").get<std::string>();
      std::string type = j.at("destination_type").get<std::string>();
      if (type != "queue" && type != "exchange") return std::nullopt;
      b.to_queue = type == "queue";
      b.routing_key = j.at("routing_key").get<std::string>();
      auto args = args_from(j.at("arguments"));
      if (!args) return std::nullopt;
      b.arguments = std::move(*args);
      out = std::move(b);
    } else {
      return std::nullopt;
    }
  } catch (const json::exception&) {
    return std::nullopt;
  }
  if (definition_key(*out) != key) return std::nullopt;
  return out;
}

}  // namespace warren::app
