// Vhost and user limits: RabbitMQ's validation and texts (rabbit_parameter_validation:proplist
// with integer/2 per key), their JSON, and the vhost limits file.
#include "mgmt/limits.hpp"

#include <fmt/format.h>

#include <cstdint>
#include <fstream>
#include <sstream>

#include "mgmt/users_file.hpp"

namespace warren::mgmt {

namespace {

std::variant<limit_map, std::string> check_limits(const json& value, std::string_view component,
                                                  std::initializer_list<std::string_view> known) {
  if (!value.is_object()) return fmt::format("{} not a list {}", component, erlang_term(value));
  limit_map out;
  std::string unknown;
  for (auto it = value.begin(); it != value.end(); ++it) {
    bool is_known = false;
    for (auto k : known) is_known = is_known || it.key() == k;
    if (!is_known) {
      unknown += fmt::format("{}{{{},{}}}", unknown.empty() ? "" : ",", erlang_term(it.key()),
                             erlang_term(*it));
      continue;
    }
    if (!it->is_number_integer())
      return fmt::format("{} should be a number, actually was {}", it.key(), erlang_term(*it));
    // RabbitMQ's integers have no bound; one past int64 is as good as no bound, not a wrap.
    out[it.key()] = it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(INT64_MAX)
                        ? INT64_MAX
                        : it->get<int64_t>();
  }
  if (!unknown.empty()) return fmt::format("Unrecognised terms [{}] in {}", unknown, component);
  return out;
}

}  // namespace

std::variant<limit_map, std::string> check_vhost_limits(const json& value) {
  return check_limits(value, "limits", {vhost_max_connections, vhost_max_queues});
}

std::variant<limit_map, std::string> check_user_limits(const json& value) {
  return check_limits(value, "user-limits", {auth::user_max_connections, auth::user_max_channels});
}

std::string validation_failed(std::string_view text) {
  return fmt::format("Validation failed\n\n{}\n", text);
}

limit_map vhost_limits(const broker::vhost& v) {
  limit_map out;
  if (int64_t c = v.connections().limit(); c != common::limited_count::unset)
    out[std::string(vhost_max_connections)] = c;
  if (int64_t q = v.max_queues(); q != common::limited_count::unset)
    out[std::string(vhost_max_queues)] = q;
  return out;
}

void set_vhost_limits(broker::vhost& v, const limit_map& limits) {
  auto get = [&](std::string_view name) {
    auto it = limits.find(name);
    return it == limits.end() ? common::limited_count::unset : it->second;
  };
  v.connections().set_limit(get(vhost_max_connections));
  v.set_max_queues(get(vhost_max_queues));
}

json limits_json(const limit_map& limits) {
  json out = json::object();
  for (const auto& [k, n] : limits) out[k] = n;
  return out;
}

bool vhost_limits_file::load(broker::vhost_registry& vhosts, std::string& error) const {
  std::ifstream in(path_, std::ios::binary);
  if (!in) {
    if (!std::filesystem::exists(path_)) return true;
    error = fmt::format("cannot read {}", path_.string());
    return false;
  }
  std::stringstream text;
  text << in.rdbuf();
  json doc = json::parse(text.str(), nullptr, false);
  if (!doc.is_object()) {
    error = fmt::format("{}: not a JSON object", path_.string());
    return false;
  }
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    auto limits = check_vhost_limits(*it);
    if (auto* why = std::get_if<std::string>(&limits)) {
      error = fmt::format("{}: vhost '{}': {}", path_.string(), it.key(), *why);
      return false;
    }
    if (broker::vhost* v = vhosts.find(it.key())) set_vhost_limits(*v, std::get<limit_map>(limits));
  }
  return true;
}

bool vhost_limits_file::save(const broker::vhost_registry& vhosts, std::string& error) {
  std::lock_guard lock(save_mutex_);
  json doc = json::object();
  for (const auto& name : vhosts.names())
    if (const broker::vhost* v = vhosts.find(name)) {
      limit_map limits = vhost_limits(*v);
      if (!limits.empty()) doc[name] = limits_json(limits);
    }
  return write_file_durably(path_, doc.dump(2) + "\n", error);
}

}  // namespace warren::mgmt
