// Virtual hosts and the registry of them. A vhost isolates its exchanges (and, with the broker
// model, its queues and bindings). The registry is built at start-up and read-only afterwards,
// so every worker reads it without locks; run-time changes arrive with the broker-model work.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>

namespace warren::broker {

class vhost {
 public:
  explicit vhost(std::string name);
  const std::string& name() const { return name_; }
  // The default exchange ("") and amq.direct, amq.fanout, amq.topic, amq.headers, amq.match.
  bool has_exchange(std::string_view name) const { return exchanges_.count(name) != 0; }

 private:
  std::string name_;
  std::set<std::string, std::less<>> exchanges_;
};

class vhost_registry {
 public:
  vhost& add(std::string name);
  const vhost* find(std::string_view name) const;
  size_t size() const { return vhosts_.size(); }

 private:
  std::map<std::string, std::unique_ptr<vhost>, std::less<>> vhosts_;
};

}  // namespace warren::broker
