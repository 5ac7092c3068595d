// RabbitMQ's runtime parameters (component, vhost, name -> JSON value) and policies (pattern,
// apply-to, priority, definition), as the federation and shovel plugins read them: RabbitMQ's
// validation and texts for the components Warren acts on (federation-upstream,
// federation-upstream-set, shovel), and the file that keeps them across restarts. Vhost limits,
// also a parameter in RabbitMQ, stay with mgmt/limits.hpp. Shared by every worker under a mutex
// (taken per API request and per reconciliation, never per message).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace warren::federation {

using json = nlohmann::ordered_json;

struct parameter {
  std::string vhost;
  std::string component;
  std::string name;
  json value;
};

struct policy {
  std::string vhost;
  std::string name;
  std::string pattern;
  std::string apply_to = "all";  // all, exchanges, queues
  int64_t priority = 0;
  json definition = json::object();
};

// The components Warren knows. RabbitMQ answers an unknown one with
// "component <<\"x\">> not found" (404 from the management API).
bool is_known_component(const std::string& component);

// RabbitMQ's validation of a parameter's value (rabbit_federation_parameters,
// rabbit_shovel_parameters over rabbit_parameter_validation): nullopt, or the text of the first
// problem, e.g. "Key \"uri\" not found in up1" or "prefetch-count should be a number, actually
// was <<\"x\">>".
std::optional<std::string> check_parameter(const std::string& component, const std::string& name,
                                           const json& value);

// A policy from the API's body {pattern, definition, priority, apply-to}: the policy, or
// RabbitMQ's text (rabbit_policy:validate and the federation plugin's policy validators).
std::variant<policy, std::string> check_policy(const std::string& vhost, const std::string& name,
                                               const json& body);

// The policy that applies to an exchange (or queue) of `vhost` named `name`: the matching one
// of highest priority (ties: the name sorting last, as RabbitMQ), or nullptr.
const policy* effective_policy(const std::vector<policy>& all, const std::string& vhost,
                               const std::string& name, bool is_exchange);

json to_json(const parameter& p, bool with_vhost = true);
json to_json(const policy& p, bool with_vhost = true);

// <data_dir>/parameters.json: {"parameters": [...], "policies": [...]} in the definitions'
// format, rewritten (temporary file, fsync, rename) after every change.
class runtime_store {
 public:
  explicit runtime_store(std::filesystem::path file = {}) : file_(std::move(file)) {}

  // A missing file is no error.
  bool load(std::string& error);

  // Each change is saved before it returns; the error sentence when that failed (the change
  // is in force all the same), empty otherwise. Observers run after the lock is released.
  std::string set_parameter(parameter p);
  // False if there was none.
  bool clear_parameter(const std::string& component, const std::string& vhost,
                       const std::string& name, std::string& save_error);
  std::string set_policy(policy p);
  bool clear_policy(const std::string& vhost, const std::string& name, std::string& save_error);

  std::vector<parameter> parameters() const;
  std::optional<parameter> find_parameter(const std::string& component, const std::string& vhost,
                                          const std::string& name) const;
  std::vector<policy> policies() const;
  std::optional<policy> find_policy(const std::string& vhost, const std::string& name) const;

  // Called (on the changing thread, outside the lock) after each change.
  void on_change(std::function<void()> fn);

 private:
  std::string save_locked();
  void notify();

  std::filesystem::path file_;
  mutable std::mutex mutex_;
  std::vector<parameter> parameters_;  // in the order they were first set
  std::vector<policy> policies_;
  std::vector<std::function<void()>> observers_;
};

}  // namespace warren::federation
