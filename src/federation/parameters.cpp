// Runtime parameters and policies: RabbitMQ's validation (rabbit_parameter_validation:proplist
// per component, rabbit_policy:validate) with its texts, policy matching, and parameters.json.
#include "federation/parameters.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "amqp/client/uri.hpp"
#include "auth/permissions.hpp"
#include "federation/erlang_term.hpp"
#include "store/record_file.hpp"

namespace warren::federation {

namespace {

enum class kind { binary, number, boolean, uri, delete_after, one_of, table };

struct rule {
  std::string_view key;
  kind k;
  bool mandatory = false;
  std::vector<std::string_view> options = {};  // one_of
};

std::optional<std::string> check_uri(std::string_view key, const json& v) {
  auto one = [&](const json& s) -> std::optional<std::string> {
    if (!s.is_string())
      return fmt::format("{} should be binary, actually was {}", key, erlang_term(s));
    auto parsed = amqp::client::parse_uri(s.get<std::string>());
    if (auto* why = std::get_if<std::string>(&parsed))
      return fmt::format("\"{}\" not a valid URI: {}", s.get<std::string>(), *why);
    return std::nullopt;
  };
  if (v.is_array()) {
    if (v.empty()) return fmt::format("{} should have at least one URI", key);
    for (const auto& s : v)
      if (auto e = one(s)) return e;
    return std::nullopt;
  }
  if (!v.is_string()) return fmt::format("{} should be list, actually was {}", key, erlang_term(v));
  return one(v);
}

std::optional<std::string> check_value(const rule& r, const json& v) {
  switch (r.k) {
    case kind::binary:
      if (v.is_string()) return std::nullopt;
      return fmt::format("{} should be binary, actually was {}", r.key, erlang_term(v));
    case kind::number:
      if (v.is_number()) return std::nullopt;
      return fmt::format("{} should be a number, actually was {}", r.key, erlang_term(v));
    case kind::boolean:
      if (v.is_boolean()) return std::nullopt;
      return fmt::format("{} should be boolean, actually was {}", r.key, erlang_term(v));
    case kind::uri:
      return check_uri(r.key, v);
    case kind::delete_after:
      if ((v.is_string() && (v == "never" || v == "queue-length")) ||
          (v.is_number_integer() && v.get<int64_t>() >= 0))
        return std::nullopt;
      return fmt::format(
          "{} should be a number greater than or equal to 0, \"never\" or \"queue-length\", "
          "actually was {}",
          r.key, erlang_term(v));
    case kind::one_of: {
      if (!v.is_string())
        return fmt::format("{} should be binary, actually was {}", r.key, erlang_term(v));
      for (auto o : r.options)
        if (v.get<std::string>() == o) return std::nullopt;
      json opts = json::array();
      for (auto o : r.options) opts.push_back(std::string(o));
      return fmt::format("{} should be one of {}, actually was {}", r.key, erlang_term(opts),
                         erlang_term(v));
    }
    case kind::table:
      if (v.is_object()) return std::nullopt;
      return fmt::format("{} not a list {}", r.key, erlang_term(v));
  }
  return std::nullopt;
}

// rabbit_parameter_validation:proplist: unknown keys first, then the rules' problems, last rule
// first (RabbitMQ folds the rules into a list it reports from the head).
std::optional<std::string> proplist(const std::string& name, const std::vector<rule>& rules,
                                    const json& value) {
  if (!value.is_object()) return fmt::format("{} not a list {}", name, erlang_term(value));
  std::string unknown;
  for (auto it = value.begin(); it != value.end(); ++it) {
    bool known =
        std::any_of(rules.begin(), rules.end(), [&](const rule& r) { return r.key == it.key(); });
    if (!known)
      unknown += fmt::format("{}{{{},{}}}", unknown.empty() ? "" : ",", erlang_term(json(it.key())),
                             erlang_term(*it));
  }
  if (!unknown.empty()) return fmt::format("Unrecognised terms [{}] in {}", unknown, name);
  for (auto r = rules.rbegin(); r != rules.rend(); ++r) {
    auto it = value.find(std::string(r->key));
    if (it == value.end()) {
      if (r->mandatory) return fmt::format("Key \"{}\" not found in {}", r->key, name);
      continue;
    }
    if (auto e = check_value(*r, *it)) return e;
  }
  return std::nullopt;
}

std::vector<rule> upstream_rules(bool in_set) {
  std::vector<rule> rules;
  if (in_set)
    rules.push_back({"upstream", kind::binary, true});
  else
    rules.push_back({"uri", kind::uri, true});
  for (rule r : std::initializer_list<rule>{
           {"exchange", kind::binary},
           {"queue", kind::binary},
           {"consumer-tag", kind::binary},
           {"prefetch-count", kind::number},
           {"reconnect-delay", kind::number},
           {"max-hops", kind::number},
           {"expires", kind::number},
           {"message-ttl", kind::number},
           {"trust-user-id", kind::boolean},
           {"ack-mode", kind::one_of, false, {"no-ack", "on-publish", "on-confirm"}},
           {"resource-cleanup-mode", kind::one_of, false, {"default", "never"}},
           {"ha-policy", kind::binary},
           {"bind-nowait", kind::boolean},
           {"channel-use-mode", kind::one_of, false, {"multiple", "single"}},
       })
    rules.push_back(r);
  return rules;
}

std::optional<std::string> check_shovel(const std::string& name, const json& v) {
  if (!v.is_object()) return fmt::format("{} not a list {}", name, erlang_term(v));
  auto has = [&](const char* k) { return v.contains(k); };
  auto proto = [&](const char* k) { return v.contains(k) ? v[k] : json("amqp091"); };
  if (proto("src-protocol") != "amqp091" || proto("dest-protocol") != "amqp091")
    return std::string("only AMQP 0-9-1 shovels are supported (src-protocol, dest-protocol)");
  // validate_amqp091_src / _dest come before the proplist.
  if (!has("src-exchange") && !has("src-queue"))
    return std::string("Must specify 'src-exchange' or 'src-queue'");
  if (has("src-exchange") && has("src-queue"))
    return std::string("Cannot specify 'src-exchange' and 'src-queue'");
  auto after = v.contains("src-delete-after") ? v["src-delete-after"]
               : v.contains("delete-after")   ? v["delete-after"]
                                              : json();
  if (after.is_number_integer() && v.value("ack-mode", json("on-confirm")) == "no-ack")
    return std::string("Cannot specify 'no-ack' and numerical 'delete-after'");
  if (has("dest-exchange") && has("dest-queue"))
    return std::string("Cannot specify 'dest-exchange' and 'dest-queue'");
  std::vector<rule> rules = {
      {"reconnect-delay", kind::number},
      {"ack-mode", kind::one_of, false, {"no-ack", "on-publish", "on-confirm"}},
      {"src-protocol", kind::one_of, false, {"amqp10", "amqp091"}},
      {"dest-protocol", kind::one_of, false, {"amqp10", "amqp091"}},
      {"src-uri", kind::uri, true},
      {"src-exchange", kind::binary},
      {"src-exchange-key", kind::binary},
      {"src-queue", kind::binary},
      {"src-queue-args", kind::table},
      {"src-consumer-args", kind::table},
      {"prefetch-count", kind::number},
      {"src-prefetch-count", kind::number},
      {"delete-after", kind::delete_after},
      {"src-delete-after", kind::delete_after},
      {"dest-uri", kind::uri, true},
      {"dest-exchange", kind::binary},
      {"dest-exchange-key", kind::binary},
      {"dest-queue", kind::binary},
      {"dest-queue-args", kind::table},
      {"add-forward-headers", kind::boolean},
      {"add-timestamp-header", kind::boolean},
      {"dest-add-forward-headers", kind::boolean},
      {"dest-add-timestamp-header", kind::boolean},
      {"publish-properties", kind::table},
      {"dest-publish-properties", kind::table},
  };
  if (auto e = proplist(name, rules, v)) return e;
  if (auto q = v.find("dest-queue"); q != v.end() && q->get<std::string>().size() > 255)
    return fmt::format("dest-queue should be less than 255 bytes, actually was {}",
                       q->get<std::string>().size());
  return std::nullopt;
}

bool newer_wins(const policy& a, const policy& b) {  // does a beat b?
  if (a.priority != b.priority) return a.priority > b.priority;
  return a.name > b.name;
}

}  // namespace

bool is_known_component(const std::string& component) {
  return component == "federation-upstream" || component == "federation-upstream-set" ||
         component == "shovel";
}

std::optional<std::string> check_parameter(const std::string& component, const std::string& name,
                                           const json& value) {
  if (component == "federation-upstream") return proplist(name, upstream_rules(false), value);
  if (component == "federation-upstream-set") {
    if (!value.is_array())
      return fmt::format("{} should be list, actually was {}", name, erlang_term(value));
    for (const auto& u : value)
      if (auto e = proplist(name, upstream_rules(true), u)) return e;
    return std::nullopt;
  }
  if (component == "shovel") return check_shovel(name, value);
  return fmt::format("component {} not found", erlang_term(json(component)));
}

std::variant<policy, std::string> check_policy(const std::string& vhost, const std::string& name,
                                               const json& body) {
  if (!body.is_object()) return std::string("not_json");
  policy p;
  p.vhost = vhost;
  p.name = name;
  // rabbit_policy's policy_validation, in its order (reported last first).
  auto def = body.find("definition");
  if (def == body.end()) return fmt::format("Key \"definition\" not found in {}", name);
  if (!def->is_object())
    return fmt::format("definition must be a dictionary: {}", erlang_term(*def));
  if (def->empty()) return std::string("no policy provided");
  std::vector<std::string> fed;
  json unknown = json::array();
  for (auto it = def->begin(); it != def->end(); ++it) {
    if (it.key() == "federation-upstream" || it.key() == "federation-upstream-set" ||
        it.key() == "federation-upstream-pattern")
      fed.push_back(it.key());
    else
      unknown.push_back(json::array({it.key(), *it}));
  }
  if (fed.size() >= 2)
    return std::string(
        "cannot specify federation-upstream, federation-upstream-set or "
        "federation-upstream-pattern together");
  if (fed.size() == 1) {
    const json& v = (*def)[fed[0]];
    if (!v.is_string()) {
      std::string what = fed[0] == "federation-upstream"       ? "federation upstream name"
                         : fed[0] == "federation-upstream-set" ? "federation upstream set name"
                                                               : "federation upstream pattern name";
      return fmt::format("{} is not a valid {}", erlang_term(v), what);
    }
  }
  if (!unknown.empty()) {
    std::string terms;
    for (const auto& kv : unknown)
      terms += fmt::format("{}{{{},{}}}", terms.empty() ? "" : ",", erlang_term(kv[0]),
                           erlang_term(kv[1]));
    return fmt::format("[{}] are not recognised policy settings", terms);
  }
  p.definition = *def;
  if (auto a = body.find("apply-to"); a != body.end() && !a->is_null()) {
    if (!a->is_string() || (*a != "all" && *a != "exchanges" && *a != "queues"))
      return fmt::format("apply-to '{}' unrecognised; should be 'queues', 'exchanges' or 'all'",
                         a->is_string() ? a->get<std::string>() : a->dump());
    p.apply_to = a->get<std::string>();
  }
  auto pat = body.find("pattern");
  if (pat == body.end()) return fmt::format("Key \"pattern\" not found in {}", name);
  if (!pat->is_string())
    return fmt::format("pattern should be a binary but was {}", erlang_term(*pat));
  if (auto why = auth::pattern::check(pat->get<std::string>()))
    return fmt::format("pattern should be regular expression but is invalid: {}", *why);
  p.pattern = pat->get<std::string>();
  // The management API sends a missing priority as 0; text such as "5" is read as RabbitMQ's
  // management does (rabbit_mgmt_wm_policy converts it).
  if (auto pr = body.find("priority"); pr != body.end() && !pr->is_null()) {
    if (pr->is_number_integer()) {
      p.priority = pr->get<int64_t>();
    } else if (pr->is_string()) {
      try {
        size_t used = 0;
        p.priority = std::stoll(pr->get<std::string>(), &used);
        if (used != pr->get<std::string>().size()) throw std::invalid_argument("priority");
      } catch (const std::exception&) {
        return fmt::format("{} priority must be a number", erlang_term(*pr));
      }
    } else {
      return fmt::format("priority should be a number, actually was {}", erlang_term(*pr));
    }
  }
  return p;
}

const policy* effective_policy(const std::vector<policy>& all, const std::string& vhost,
                               const std::string& name, bool is_exchange) {
  const policy* best = nullptr;
  for (const auto& p : all) {
    if (p.vhost != vhost) continue;
    if (p.apply_to != "all" && p.apply_to != (is_exchange ? "exchanges" : "queues")) continue;
    // RabbitMQ never applies policies to the server's own amq.* exchanges? It does; but not to
    // the default exchange, which has no name.
    if (name.empty()) continue;
    if (!auth::pattern::compile(p.pattern).matches(name)) continue;
    if (!best || newer_wins(p, *best)) best = &p;
  }
  return best;
}

json to_json(const parameter& p, bool with_vhost) {
  json j = json::object();
  if (with_vhost) j["vhost"] = p.vhost;
  j["component"] = p.component;
  j["name"] = p.name;
  j["value"] = p.value;
  return j;
}

json to_json(const policy& p, bool with_vhost) {
  json j = json::object();
  if (with_vhost) j["vhost"] = p.vhost;
  j["name"] = p.name;
  j["pattern"] = p.pattern;
  j["apply-to"] = p.apply_to;
  j["definition"] = p.definition;
  j["priority"] = p.priority;
  return j;
}

bool runtime_store::load(std::string& error) {
  if (file_.empty()) return true;
  std::ifstream in(file_, std::ios::binary);
  if (!in) {
    if (!std::filesystem::exists(file_)) return true;
    error = fmt::format("cannot read {}", file_.string());
    return false;
  }
  std::stringstream text;
  text << in.rdbuf();
  json doc = json::parse(text.str(), nullptr, false);
  if (!doc.is_object()) {
    error = fmt::format("{}: not a JSON object", file_.string());
    return false;
  }
  std::lock_guard lock(mutex_);
  for (const auto& j : doc.value("parameters", json::array())) {
    parameter p{j.value("vhost", "/"), j.value("component", ""), j.value("name", ""),
                j.value("value", json())};
    if (auto why = check_parameter(p.component, p.name, p.value)) {
      error = fmt::format("{}: parameter {}/{}/{}: {}", file_.string(), p.component, p.vhost,
                          p.name, *why);
      return false;
    }
    parameters_.push_back(std::move(p));
  }
  for (const auto& j : doc.value("policies", json::array())) {
    auto checked = check_policy(j.value("vhost", "/"), j.value("name", ""), j);
    if (auto* why = std::get_if<std::string>(&checked)) {
      error = fmt::format("{}: policy {}: {}", file_.string(), j.value("name", ""), *why);
      return false;
    }
    policies_.push_back(std::get<policy>(std::move(checked)));
  }
  return true;
}

std::string runtime_store::save_locked() {
  if (file_.empty()) return {};
  json doc = json::object();
  json ps = json::array(), pols = json::array();
  for (const auto& p : parameters_) ps.push_back(to_json(p));
  for (const auto& p : policies_) pols.push_back(to_json(p));
  doc["parameters"] = std::move(ps);
  doc["policies"] = std::move(pols);
  // Mode 0600, unlike store::replace_file's 0644: upstream and shovel URIs carry passwords.
  auto tmp = file_;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fmt::format("cannot create {}: {}", tmp.string(), std::strerror(errno));
  try {
    store::write_all(fd, doc.dump(2) + "\n");
    if (::fsync(fd) != 0) throw std::runtime_error("fsync " + tmp.string());
    ::close(fd);
    fd = -1;
    std::filesystem::rename(tmp, file_);
    store::sync_directory(file_.parent_path());
  } catch (const std::exception& e) {
    if (fd >= 0) ::close(fd);
    return e.what();
  }
  return {};
}

void runtime_store::notify() {
  std::vector<std::function<void()>> obs;
  {
    std::lock_guard lock(mutex_);
    obs = observers_;
  }
  for (auto& fn : obs) fn();
}

std::string runtime_store::set_parameter(parameter p) {
  std::string err;
  {
    std::lock_guard lock(mutex_);
    auto it = std::find_if(parameters_.begin(), parameters_.end(), [&](const parameter& q) {
      return q.component == p.component && q.vhost == p.vhost && q.name == p.name;
    });
    if (it != parameters_.end())
      *it = std::move(p);
    else
      parameters_.push_back(std::move(p));
    err = save_locked();
  }
  notify();
  return err;
}

bool runtime_store::clear_parameter(const std::string& component, const std::string& vhost,
                                    const std::string& name, std::string& save_error) {
  {
    std::lock_guard lock(mutex_);
    auto it = std::find_if(parameters_.begin(), parameters_.end(), [&](const parameter& q) {
      return q.component == component && q.vhost == vhost && q.name == name;
    });
    if (it == parameters_.end()) return false;
    parameters_.erase(it);
    save_error = save_locked();
  }
  notify();
  return true;
}

std::string runtime_store::set_policy(policy p) {
  std::string err;
  {
    std::lock_guard lock(mutex_);
    auto it = std::find_if(policies_.begin(), policies_.end(),
                           [&](const policy& q) { return q.vhost == p.vhost && q.name == p.name; });
    if (it != policies_.end())
      *it = std::move(p);
    else
      policies_.push_back(std::move(p));
    err = save_locked();
  }
  notify();
  return err;
}

bool runtime_store::clear_policy(const std::string& vhost, const std::string& name,
                                 std::string& save_error) {
  {
    std::lock_guard lock(mutex_);
    auto it = std::find_if(policies_.begin(), policies_.end(),
                           [&](const policy& q) { return q.vhost == vhost && q.name == name; });
    if (it == policies_.end()) return false;
    policies_.erase(it);
    save_error = save_locked();
  }
  notify();
  return true;
}

std::vector<parameter> runtime_store::parameters() const {
  std::lock_guard lock(mutex_);
  return parameters_;
}

std::optional<parameter> runtime_store::find_parameter(const std::string& component,
                                                       const std::string& vhost,
                                                       const std::string& name) const {
  std::lock_guard lock(mutex_);
  for (const auto& p : parameters_)
    if (p.component == component && p.vhost == vhost && p.name == name) return p;
  return std::nullopt;
}

std::vector<policy> runtime_store::policies() const {
  std::lock_guard lock(mutex_);
  return policies_;
}

std::optional<policy> runtime_store::find_policy(const std::string& vhost,
                                                 const std::string& name) const {
  std::lock_guard lock(mutex_);
  for (const auto& p : policies_)
    if (p.vhost == vhost && p.name == name) return p;
  return std::nullopt;
}

void runtime_store::on_change(std::function<void()> fn) {
  std::lock_guard lock(mutex_);
  observers_.push_back(std::move(fn));
}

}  // namespace warren::federation
