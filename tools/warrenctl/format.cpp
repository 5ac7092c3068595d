// rabbitmqctl's output from the management API's JSON (see format.hpp).
#include "warrenctl/format.hpp"

#include <fmt/format.h>

#include <array>
#include <cmath>

namespace warren::ctl {

namespace {

const std::array<listing_spec, 9> listings{{
    {"list_queues", {"name", "messages"}, true},
    {"list_exchanges", {"name", "type"}, true},
    {"list_bindings",
     {"source_name", "source_kind", "destination_name", "destination_kind", "routing_key",
      "arguments"},
     false},
    {"list_connections", {"user", "peer_host", "peer_port", "state"}, true},
    // rabbitmqctl's first column is the channel's Erlang pid, which Warren has not: its name
    // stands in (and "pid" is accepted as a name for it).
    {"list_channels", {"name", "user", "consumer_count", "messages_unacknowledged"}, true},
    {"list_consumers",
     {"queue_name", "channel_pid", "consumer_tag", "ack_required", "prefetch_count", "active",
      "arguments"},
     false},
    {"list_users", {"user", "tags"}, false},
    {"list_vhosts", {"name"}, true},
    {"list_permissions", {"user", "configure", "write", "read"}, false},
}};

// rabbitmqctl's column names that differ from the API's fields, per command. Any other name is
// the API field of the same name (queue info keys and API fields coincide).
column map_column(std::string_view command, const std::string& name) {
  if (command == "list_bindings") {
    if (name == "source_name") return {name, "source"};
    if (name == "source_kind") return {name, "", "exchange"};
    if (name == "destination_name") return {name, "destination"};
    if (name == "destination_kind") return {name, "destination_type"};
  } else if (command == "list_channels") {
    if (name == "pid") return {name, "name"};
  } else if (command == "list_consumers") {
    if (name == "queue_name") return {name, "queue.name"};
    if (name == "channel_pid") return {name, "channel_details.name"};
  } else if (command == "list_users") {
    if (name == "user") return {name, "name"};
  }
  return {name, name};
}

// The value of a dotted field; null when absent.
json field_value(const json& item, const column& c) {
  if (!c.constant.empty()) return c.constant;
  const json* at = &item;
  std::string_view rest = c.field;
  while (true) {
    size_t dot = rest.find('.');
    std::string key(rest.substr(0, dot));
    if (!at->is_object()) return nullptr;
    auto it = at->find(key);
    if (it == at->end()) return nullptr;
    at = &*it;
    if (dot == std::string_view::npos) return *at;
    rest.remove_prefix(dot + 1);
  }
}

// An element inside an argument table: strings quoted, as Erlang prints them.
std::string quoted_text(const json& v) {
  if (v.is_string()) return json(v.get<std::string>()).dump();
  return cell_text(v);
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

std::string gb(double bytes) {
  return fmt::format("{:.4f} gb", bytes / 1e9);
}

double number_or(const json& obj, const char* key, double fallback) {
  if (!obj.is_object()) return fallback;
  auto it = obj.find(key);
  return it != obj.end() && it->is_number() ? it->get<double>() : fallback;
}

std::string string_or(const json& obj, const char* key, std::string fallback) {
  if (!obj.is_object()) return fallback;
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : fallback;
}

bool true_at(const json& obj, const char* key) {
  if (!obj.is_object()) return false;
  auto it = obj.find(key);
  return it != obj.end() && it->is_boolean() && it->get<bool>();
}

}  // namespace

const listing_spec* find_listing(std::string_view command) {
  for (const auto& l : listings)
    if (l.command == command) return &l;
  return nullptr;
}

std::vector<column> columns_for(const listing_spec& spec, const std::vector<std::string>& names) {
  std::vector<column> out;
  for (const auto& n : names.empty() ? spec.default_columns : names)
    out.push_back(map_column(spec.command, n));
  return out;
}

std::vector<std::string> listing_banner(const listing_spec& spec, std::string_view vhost) {
  const std::string& c = spec.command;
  if (c == "list_queues")
    return {"Timeout: 60.0 seconds ...", fmt::format("Listing queues for vhost {} ...", vhost)};
  if (c == "list_exchanges") return {fmt::format("Listing exchanges for vhost {} ...", vhost)};
  if (c == "list_bindings") return {fmt::format("Listing bindings for vhost {}...", vhost)};
  if (c == "list_connections") return {"Listing connections ..."};
  if (c == "list_channels") return {"Listing channels ..."};
  if (c == "list_consumers") return {fmt::format("Listing consumers in vhost {} ...", vhost)};
  if (c == "list_users") return {"Listing users ..."};
  if (c == "list_vhosts") return {"Listing vhosts ..."};
  if (c == "list_permissions")
    return {fmt::format("Listing permissions for vhost \"{}\" ...", vhost)};
  return {};
}

std::string cell_text(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
    case json::value_t::discarded:
      return "";
    case json::value_t::string:
      return v.get<std::string>();
    case json::value_t::boolean:
      return v.get<bool>() ? "true" : "false";
    case json::value_t::array: {
      std::string out = "[";
      for (size_t i = 0; i < v.size(); ++i) {
        out += i ? ", " : "";
        out += cell_text(v[i]);
      }
      return out + "]";
    }
    case json::value_t::object: {
      // An argument table: [{"x-max-length",10}, {"x-queue-type","classic"}].
      std::string out = "[";
      bool first = true;
      for (const auto& [k, val] : v.items()) {
        out += fmt::format("{}{{{},{}}}", first ? "" : ", ", json(k).dump(), quoted_text(val));
        first = false;
      }
      return out + "]";
    }
    default:
      return v.dump();
  }
}

std::string format_listing(const listing_spec& spec, std::string_view vhost,
                           const std::vector<column>& columns, const json& items,
                           const output_options& o) {
  std::vector<const json*> rows;
  if (items.is_array())
    for (const auto& item : items) {
      if (spec.command == "list_permissions" && string_or(item, "vhost", "") != vhost) continue;
      rows.push_back(&item);
    }
  if (o.json) {
    // One object per line, the columns as keys in their order.
    std::string out = "[\n";
    for (size_t r = 0; r < rows.size(); ++r) {
      std::string line = "{";
      for (size_t i = 0; i < columns.size(); ++i)
        line += fmt::format("{}{}:{}", i ? "," : "", json(columns[i].name).dump(),
                            field_value(*rows[r], columns[i]).dump());
      out += line + (r + 1 < rows.size() ? "},\n" : "}\n");
    }
    return out + "]\n";
  }
  std::string out;
  if (!o.quiet && !o.silent) out += join_lines(listing_banner(spec, vhost));
  if (!o.silent && !o.no_table_headers) {
    for (size_t i = 0; i < columns.size(); ++i) {
      out += i ? "\t" : "";
      out += columns[i].name;
    }
    out += "\n";
  }
  for (const json* row : rows) {
    for (size_t i = 0; i < columns.size(); ++i) {
      out += i ? "\t" : "";
      out += cell_text(field_value(*row, columns[i]));
    }
    out += "\n";
  }
  return out;
}

std::string format_cluster_status(const json& overview, const json& nodes,
                                  const output_options& o) {
  std::string self = string_or(overview, "node", "unknown");
  std::string cluster = string_or(overview, "cluster_name", self);
  std::vector<std::string> disk, running, alarms, fenced;
  json versions = json::object(), listeners = json::object();
  if (nodes.is_array())
    for (const auto& n : nodes) {
      std::string name = string_or(n, "name", "");
      if (name.empty()) continue;
      disk.push_back(name);
      if (true_at(n, "running")) running.push_back(name);
      if (true_at(n, "disk_free_alarm")) alarms.push_back("Free disk space alarm on node " + name);
      if (true_at(n, "mem_alarm")) alarms.push_back("Memory alarm on node " + name);
      if (string_or(n, "warren_cluster_state", "") == "fenced")
        fenced.push_back(name + ": " + string_or(n, "warren_fenced_reason", ""));
      std::string version;
      if (n.contains("applications") && n["applications"].is_array() && !n["applications"].empty())
        version = string_or(n["applications"][0], "version", "");
      versions[name] = version;
      json ls = json::array();
      if (n.contains("listeners") && n["listeners"].is_array()) ls = n["listeners"];
      listeners[name] = ls;
    }
  if (o.json) {
    json j = {
        {"cluster_name", cluster},      {"disk_nodes", disk},     {"ram_nodes", json::array()},
        {"running_nodes", running},     {"versions", versions},   {"alarms", alarms},
        {"partitions", json::object()}, {"listeners", listeners}, {"fenced_nodes", fenced}};
    return j.dump() + "\n";
  }
  std::string out;
  if (!o.quiet && !o.silent) out += fmt::format("Cluster status of node {} ...\n", self);
  auto section = [&out](std::string_view title, const std::vector<std::string>& lines) {
    out += fmt::format("\n{}\n\n", title);
    if (lines.empty()) out += "(none)\n";
    for (const auto& l : lines) out += l + "\n";
  };
  out += fmt::format("Basics\n\nCluster name: {}\n", cluster);
  section("Disk Nodes", disk);
  section("Running Nodes", running);
  std::vector<std::string> vlines;
  for (const auto& name : disk)
    vlines.push_back(fmt::format("{}: Warren {}", name, string_or(versions, name.c_str(), "")));
  section("Versions", vlines);
  section("Alarms", alarms);
  section("Network Partitions", {});
  section("Fenced Nodes", fenced);
  std::vector<std::string> llines;
  for (const auto& name : disk)
    for (const auto& l : listeners[name])
      llines.push_back(fmt::format(
          "Node: {}, interface: {}, port: {}, protocol: {}", name, string_or(l, "ip_address", ""),
          cell_text(l.value("port", json())), string_or(l, "protocol", "")));
  section("Listeners", llines);
  return out;
}

std::string format_status(const json& overview, const json& node, const output_options& o) {
  std::string name = string_or(node, "name", string_or(overview, "node", "unknown"));
  double uptime_ms = number_or(node, "uptime", 0);
  double mem_used = number_or(node, "mem_used", 0);
  double mem_limit = number_or(node, "mem_limit", 0);
  std::vector<std::string> alarms;
  if (true_at(node, "disk_free_alarm")) alarms.push_back("Free disk space alarm on node " + name);
  if (true_at(node, "mem_alarm")) alarms.push_back("Memory alarm on node " + name);
  json listeners = json::array();
  if (overview.is_object() && overview.contains("listeners") && overview["listeners"].is_array())
    for (const auto& l : overview["listeners"]) {
      if (string_or(l, "node", name) != name) continue;
      listeners.push_back(l);
    }
  if (o.json) {
    json j = {{"node", name},
              {"rabbitmq_version", string_or(overview, "rabbitmq_version", "")},
              {"uptime", int64_t(uptime_ms / 1000)},
              {"mem_used", node.value("mem_used", json())},
              {"mem_limit", node.value("mem_limit", json())},
              {"alarms", alarms},
              {"listeners", listeners},
              {"disk_free", node.value("disk_free", json())},
              {"disk_free_limit", node.value("disk_free_limit", json())},
              {"fd_used", node.value("fd_used", json())},
              {"fd_total", node.value("fd_total", json())}};
    return j.dump() + "\n";
  }
  std::string out;
  if (!o.quiet && !o.silent) out += fmt::format("Status of node {} ...\n", name);
  out += "Runtime\n\n";
  out +=
      fmt::format("RabbitMQ version: {}\n", string_or(overview, "rabbitmq_version", "(unknown)"));
  if (overview.is_object() && overview.contains("product_name"))
    out += fmt::format("Product: {} {}\n", string_or(overview, "product_name", ""),
                       string_or(overview, "product_version", ""));
  out += fmt::format("Uptime (seconds): {}\n", int64_t(uptime_ms / 1000));
  out += "\nAlarms\n\n";
  if (alarms.empty()) out += "(none)\n";
  for (const auto& a : alarms) out += a + "\n";
  out += "\nMemory\n\n";
  out += fmt::format("Total memory used: {}\n", gb(mem_used));
  out += fmt::format("Memory high watermark: computed to: {}\n", gb(mem_limit));
  out += "\nFile Descriptors\n\n";
  out += fmt::format("Total: {}, limit: {}\n", cell_text(node.value("fd_used", json())),
                     cell_text(node.value("fd_total", json())));
  out += "\nFree Disk Space\n\n";
  out +=
      fmt::format("Low free disk space watermark: {}\n", gb(number_or(node, "disk_free_limit", 0)));
  out += fmt::format("Free disk space: {}\n", gb(number_or(node, "disk_free", 0)));
  out += "\nListeners\n\n";
  for (const auto& l : listeners) {
    std::string protocol = string_or(l, "protocol", "");
    std::string purpose = protocol == "amqp"         ? "AMQP 0-9-1"
                          : protocol == "http"       ? "HTTP API"
                          : protocol == "web"        ? "web gateway (WebSocket, SSE, HTTP)"
                          : protocol == "ctl"        ? "warrenctl (Unix socket)"
                          : protocol == "prometheus" ? "Prometheus exporter API over HTTP"
                                                     : protocol;
    out += fmt::format("Interface: {}, port: {}, protocol: {}, purpose: {}\n",
                       string_or(l, "ip_address", ""), cell_text(l.value("port", json())), protocol,
                       purpose);
  }
  if (listeners.empty()) out += "(none)\n";
  return out;
}

std::string format_lines(const std::vector<std::string>& lines, const output_options& o) {
  if (o.quiet || o.silent || o.json) return "";
  return join_lines(lines);
}

std::string format_limits(const std::string& banner, const std::string& key, const json& items,
                          const output_options& o) {
  std::string out = format_lines({banner}, o);
  if (!items.is_array()) return out;
  if (key.empty()) {
    for (const auto& item : items)
      if (item.contains("value")) out += item["value"].dump() + "\n";
    return out;
  }
  if (o.json) {
    json rows = json::array();
    for (const auto& item : items)
      rows.push_back(
          {{key, item.value(key, "")}, {"limits", item.value("value", json::object()).dump()}});
    return rows.dump() + "\n";
  }
  if (!o.silent && !o.no_table_headers) out += key + "\tlimits\n";
  for (const auto& item : items)
    out += item.value(key, "") + "\t" + item.value("value", json::object()).dump() + "\n";
  return out;
}

std::string path_segment(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved)
      out += char(c);
    else
      out += fmt::format("%{:02X}", c);
  }
  return out;
}

std::string error_reason(int status, std::string_view body) {
  auto j = json::parse(body, nullptr, false);
  if (j.is_object()) {
    std::string reason = string_or(j, "reason", "");
    if (!reason.empty()) return reason;
    std::string error = string_or(j, "error", "");
    if (!error.empty()) return error;
  }
  std::string text(body);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text.empty() ? fmt::format("HTTP status {}", status) : text;
}

}  // namespace warren::ctl
