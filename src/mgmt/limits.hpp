// RabbitMQ's vhost limits (max-connections, max-queues: a runtime parameter of component
// "vhost-limits", name "limits") and user limits (max-connections, max-channels: part of the
// user): checking a value as RabbitMQ does, with its texts, their JSON, and the file that keeps
// vhost limits across restarts (user limits go with the user into users.json). The limits
// themselves are enforced by the broker and the AMQP layer (common/limited_count.hpp).
#pragma once

#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "auth/user_store.hpp"
#include "broker/vhost.hpp"
#include "federation/erlang_term.hpp"
#include "mgmt/definitions_json.hpp"

namespace warren::mgmt {

inline constexpr std::string_view vhost_max_connections = "max-connections";
inline constexpr std::string_view vhost_max_queues = "max-queues";

// RabbitMQ's rendering of a value in its texts (federation/erlang_term.hpp).
using federation::erlang_term;

// Checks a whole limits object as RabbitMQ's parameter validation does (every key known, every
// value an integer) and returns the limits, or RabbitMQ's text for the first problem:
//   "max-connections should be a number, actually was <<\"ten\">>"
//   "Unrecognised terms [{<<\"max-foo\">>,5}] in limits"      (user limits: "in user-limits")
// Vhost limits set through the API are reported as "Validation failed\n\n<that>\n" (RabbitMQ's
// runtime parameters); user limits as the bare text.
std::variant<limit_map, std::string> check_vhost_limits(const json& value);
std::variant<limit_map, std::string> check_user_limits(const json& value);
std::string validation_failed(std::string_view text);

// The limits set on a vhost (any thread: they are atomics), and replacing them all.
limit_map vhost_limits(const broker::vhost& v);
void set_vhost_limits(broker::vhost& v, const limit_map& limits);
json limits_json(const limit_map& limits);

// <data_dir>/vhost-limits.json: {"vhost": {"max-connections": 10}, ...}, rewritten (temporary
// file, fsync, rename) after every change of a vhost's limits.
class vhost_limits_file {
 public:
  explicit vhost_limits_file(std::filesystem::path path) : path_(std::move(path)) {}
  // Sets the limits of the vhosts the file names that exist. A missing file is no error.
  bool load(broker::vhost_registry& vhosts, std::string& error) const;
  // Any thread; saves are serialised and read the limits under the lock.
  bool save(const broker::vhost_registry& vhosts, std::string& error);

 private:
  std::filesystem::path path_;
  std::mutex save_mutex_;
};

}  // namespace warren::mgmt
