// Vhosts and their predeclared exchanges.
#include "broker/vhost.hpp"

namespace warren::broker {

vhost::vhost(std::string name) : name_(std::move(name)) {
  for (const char* x : {"", "amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"})
    exchanges_.insert(x);
}

vhost& vhost_registry::add(std::string name) {
  auto& slot = vhosts_[name];
  if (!slot) slot = std::make_unique<vhost>(std::move(name));
  return *slot;
}

const vhost* vhost_registry::find(std::string_view name) const {
  auto it = vhosts_.find(name);
  return it == vhosts_.end() ? nullptr : it->second.get();
}

}  // namespace warren::broker
