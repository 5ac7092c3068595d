// Collecting definitions from a vhost, declaring them into one, and merging users.
#include "mgmt/definitions.hpp"

#include <fmt/format.h>

#include <set>

#include "broker/journal.hpp"

namespace warren::mgmt {

namespace {

// vhost::snapshot tells it every durable definition, which it keeps as definitions.
class collector final : public broker::definitions_journal {
 public:
  collector(definitions& d, std::string vhost) : d_(d), vhost_(std::move(vhost)) {}

  void exchange_declared(const broker::exchange_settings& s) override {
    d_.exchanges.push_back(
        exchange_def{vhost_, s.name, s.type, s.durable, s.auto_delete, s.internal, s.arguments});
  }
  void queue_declared(const broker::queue_settings& s, uint32_t) override {
    if (s.exclusive) return;  // RabbitMQ exports only queues without an owner
    d_.queues.push_back(queue_def{vhost_, s.name, s.durable, s.auto_delete, s.arguments});
  }
  void binding_changed(bool added, std::string_view source, bool dest_is_queue,
                       std::string_view dest, std::string_view key,
                       const common::field_table& args) override {
    if (!added) return;
    d_.bindings.push_back(binding_def{vhost_, std::string(source), std::string(dest), dest_is_queue,
                                      std::string(key), args});
  }
  void exchange_deleted(std::string_view) override {}
  void queue_deleted(std::string_view) override {}

 private:
  definitions& d_;
  std::string vhost_;
};

using maybe_reason = std::optional<std::string>;

std::string reason(const broker::error& e) {
  return fmt::format("{}: {}", error_name(e.code), e.text);
}

}  // namespace

std::string_view error_name(broker::error_code c) {
  using broker::error_code;
  switch (c) {
    case error_code::access_refused:
      return "access_refused";
    case error_code::not_found:
      return "not_found";
    case error_code::resource_locked:
      return "resource_locked";
    case error_code::precondition_failed:
      return "precondition_failed";
    case error_code::command_invalid:
      return "command_invalid";
    case error_code::not_allowed:
      return "not_allowed";
    case error_code::not_implemented:
      return "not_implemented";
  }
  return "internal_error";
}

void collect(const broker::vhost& v, definitions& d) {
  collector c(d, v.name());
  v.snapshot(c);
}

std::optional<std::string> precheck(const definitions& d) {
  for (const auto& x : d.exchanges) {
    if (!broker::is_known_exchange_type(x.type))
      return fmt::format(
          "command_invalid: unknown exchange type '{}' (exchange '{}' in vhost '{}')", x.type,
          x.name, x.vhost);
    broker::exchange_settings s{x.name, x.type, x.durable, x.auto_delete, x.internal, x.arguments};
    if (auto e = broker::check_exchange_arguments(s))
      return fmt::format("{} (exchange '{}' in vhost '{}')", reason(*e), x.name, x.vhost);
  }
  for (const auto& q : d.queues) {
    broker::queue_policy policy;
    if (auto e = broker::parse_queue_arguments(q.arguments, policy))
      return fmt::format("{} (queue '{}' in vhost '{}')", reason(*e), q.name, q.vhost);
  }
  return std::nullopt;
}

namespace {

maybe_reason apply_exchange(broker::vhost& v, const exchange_def& x) {
  if (v.has_exchange(x.name)) return std::nullopt;
  broker::exchange_settings s{x.name, x.type, x.durable, x.auto_delete, x.internal, x.arguments};
  if (auto e = v.declare_exchange(s, false)) return reason(*e);
  return std::nullopt;
}

maybe_reason apply_queue(broker::vhost& v, const queue_def& q) {
  broker::queue_declare_request r;
  r.name = q.name;
  r.passive = true;
  auto existing = v.declare_queue(r);
  auto* err = std::get_if<broker::error>(&existing);
  // Present (even if exclusive to some connection): left alone.
  if (!err || err->code != broker::error_code::not_found) return std::nullopt;
  r.passive = false;
  r.durable = q.durable;
  r.auto_delete = q.auto_delete;
  r.arguments = q.arguments;
  auto made = v.declare_queue(r);
  if (auto* e = std::get_if<broker::error>(&made)) return reason(*e);
  return std::nullopt;
}

maybe_reason apply_binding(broker::vhost& v, const binding_def& b) {
  auto dest = b.to_queue ? v.queue_dest(b.destination, 0, false) : v.exchange_dest(b.destination);
  if (auto* e = std::get_if<broker::error>(&dest)) {
    // In a cluster, a queue of another node (queue_dest checks no exclusivity here, so this is
    // the only 405): its bindings are that node's, as is the queue (left alone above).
    if (e->code == broker::error_code::resource_locked) return std::nullopt;
    return reason(*e);
  }
  if (auto e = v.bind(b.source, std::get<broker::dest_id>(dest), b.routing_key, b.arguments))
    return reason(*e);
  return std::nullopt;
}

}  // namespace

std::variant<apply_done, apply_more, std::string> apply_some(broker::vhost& v, const definitions& d,
                                                             size_t& next, size_t budget) {
  // Positions run over the exchanges, then the queues, then the bindings.
  const size_t nx = d.exchanges.size(), nq = d.queues.size(), nb = d.bindings.size();
  for (size_t done = 0; next < nx + nq + nb; ++next) {
    size_t i = next;
    maybe_reason error;
    if (i < nx) {
      if (d.exchanges[i].vhost != v.name()) continue;
      error = apply_exchange(v, d.exchanges[i]);
    } else if (i - nx < nq) {
      if (d.queues[i - nx].vhost != v.name()) continue;
      error = apply_queue(v, d.queues[i - nx]);
    } else {
      if (d.bindings[i - nx - nq].vhost != v.name()) continue;
      error = apply_binding(v, d.bindings[i - nx - nq]);
    }
    if (error) return std::move(*error);
    if (++done >= budget) {
      ++next;
      return apply_more{};
    }
  }
  return apply_done{};
}

std::optional<std::string> apply(broker::vhost& v, const definitions& d) {
  size_t next = 0;
  auto r = apply_some(v, d, next, SIZE_MAX);
  if (auto* e = std::get_if<std::string>(&r)) return std::move(*e);
  return std::nullopt;
}

std::optional<std::string> apply_users(auth::user_store& store, const definitions& d) {
  std::optional<std::string> error;
  store.update([&](auth::user_map& users) {
    std::set<std::string, std::less<>> named;
    for (const auto& u : d.users) named.insert(u.name);
    for (const auto& p : d.permissions)
      if (!named.count(p.user) && !users.count(p.user)) {
        error = fmt::format(
            "no_such_user: permission in vhost '{}' for user '{}', who is "
            "neither in the definitions nor known to the broker",
            p.vhost, p.user);
        return;
      }
    for (const auto& t : d.topic_permissions)
      if (!named.count(t.user) && !users.count(t.user)) {
        error = fmt::format(
            "no_such_user: topic permission in vhost '{}' for user '{}', who is "
            "neither in the definitions nor known to the broker",
            t.vhost, t.user);
        return;
      }
    for (const auto& def : d.users) {
      auth::user u{def.name, def.password_hash, def.tags, {}};
      if (auto it = users.find(def.name); it != users.end()) {
        u.permissions = it->second->permissions;
        u.topic_permissions = it->second->topic_permissions;
        u.limits = it->second->limits;
      }
      // As RabbitMQ: the file's limits are merged into the user's (an absent key keeps them).
      if (def.limits)
        for (const auto& [k, v] : *def.limits) u.limits[k] = v;
      users[def.name] = std::make_shared<const auth::user>(std::move(u));
    }
    for (const auto& p : d.permissions) {
      auth::user u = *users.at(p.user);
      u.permissions[p.vhost] = p.perm;
      users[p.user] = std::make_shared<const auth::user>(std::move(u));
    }
    for (const auto& t : d.topic_permissions) {
      auth::user u = *users.at(t.user);
      u.topic_permissions[t.vhost][t.exchange] = t.perm;
      users[t.user] = std::make_shared<const auth::user>(std::move(u));
    }
  });
  return error;
}

}  // namespace warren::mgmt
