// User store lookups, changes and the login decision.
#include "auth/user_store.hpp"

#include <algorithm>
#include <mutex>

#include "auth/password.hpp"

namespace warren::auth {

void user_store::add_user(user u) {
  auto p = std::make_shared<const user>(std::move(u));
  std::unique_lock lock(mutex_);
  users_[p->name] = std::move(p);
  recompile_locked();
}

void user_store::update(const std::function<void(user_map&)>& change) {
  std::unique_lock lock(mutex_);
  change(users_);
  recompile_locked();
}

namespace {

int64_t limit_of(const user* u, std::string_view name) {
  if (!u) return common::limited_count::unset;
  auto it = u->limits.find(name);
  return it == u->limits.end() ? common::limited_count::unset : it->second;
}

void set_limits(user_counts& c, const user* u) {
  c.connections.set_limit(limit_of(u, user_max_connections));
  c.channels.set_limit(limit_of(u, user_max_channels));
}

}  // namespace

std::shared_ptr<user_counts> user_store::counts(std::string_view name) const {
  {
    std::shared_lock lock(mutex_);
    if (auto it = counts_.find(name); it != counts_.end()) return it->second;
  }
  std::unique_lock lock(mutex_);
  auto& c = counts_[std::string(name)];
  if (!c) {
    c = std::make_shared<user_counts>();
    auto u = users_.find(name);
    set_limits(*c, u == users_.end() ? nullptr : u->second.get());
  }
  return c;
}

void user_store::recompile_locked() {
  // A walk over every user per change: changes are rare, and only replaced users are compiled.
  for (auto it = compiled_.begin(); it != compiled_.end();)
    it = users_.count(it->first) ? std::next(it) : compiled_.erase(it);
  // A deleted user's limits are lifted (RabbitMQ finds no limit for a user it does not know).
  for (auto& [name, c] : counts_)
    if (!users_.count(name)) set_limits(*c, nullptr);
  for (const auto& [name, u] : users_) {
    compiled& c = compiled_[name];
    if (c.from == u) continue;
    c.from = u;
    if (auto it = counts_.find(name); it != counts_.end()) set_limits(*it->second, u.get());
    c.by_vhost.clear();
    for (const auto& [vhost, p] : u->permissions) {
      auto t = u->topic_permissions.find(vhost);
      c.by_vhost.emplace(vhost, std::make_shared<const vhost_access>(
                                    p, t == u->topic_permissions.end() ? nullptr : &t->second,
                                    topic_variables{u->name, vhost, std::nullopt}));
    }
  }
  generation_.fetch_add(1, std::memory_order_release);
}

bool is_cluster_node_name(std::string_view name) {
  return name.starts_with(cluster_node_user_prefix);
}

void user_store::set_cluster_secret(std::string secret) {
  std::unique_lock lock(mutex_);
  cluster_secret_ = std::move(secret);
}

std::shared_ptr<const vhost_access> user_store::access(std::string_view user,
                                                       std::string_view vhost) const {
  if (is_cluster_node_name(user)) {
    std::unique_lock lock(mutex_);
    if (cluster_secret_.empty()) return nullptr;
    auto& a = node_access_[std::string(vhost)];
    if (!a) a = std::make_shared<vhost_access>(permission{}, nullptr, topic_variables{user, vhost});
    return a;
  }
  std::shared_lock lock(mutex_);
  auto u = compiled_.find(user);
  if (u == compiled_.end()) return nullptr;
  auto v = u->second.by_vhost.find(vhost);
  return v == u->second.by_vhost.end() ? nullptr : v->second;
}

user_ptr user_store::find(std::string_view name) const {
  std::shared_lock lock(mutex_);
  auto it = users_.find(name);
  return it == users_.end() ? nullptr : it->second;
}

std::vector<user_ptr> user_store::all() const {
  std::shared_lock lock(mutex_);
  std::vector<user_ptr> out;
  out.reserve(users_.size());
  for (const auto& [name, u] : users_) out.push_back(u);
  return out;
}

login_result user_store::login(const credentials& c, const boost::asio::ip::address& peer,
                               user_ptr* who) const {
  if (is_cluster_node_name(c.username)) {
    std::string secret;
    {
      std::shared_lock lock(mutex_);
      secret = cluster_secret_;
    }
    // Compared in constant time: the secret is the only thing between a peer and every vhost.
    bool same = !secret.empty() && secret.size() == c.password.size();
    unsigned char diff = 0;
    for (size_t i = 0; same && i < secret.size(); ++i) diff |= uint8_t(secret[i] ^ c.password[i]);
    if (!same || diff != 0) return login_result::invalid_credentials;
    auto u = std::make_shared<user>();
    u->name = c.username;
    u->cluster_node = true;
    *who = std::move(u);
    return login_result::ok;
  }
  user_ptr u = find(c.username);
  // Hash even for an unknown user, so timing does not tell which names exist.
  static const std::string dummy = hash_password_with_salt("", "salt");
  bool ok = verify_password(u ? u->password_hash : dummy, c.password) && u != nullptr;
  if (!ok) return login_result::invalid_credentials;
  bool loopback_only = std::find(loopback_users_.begin(), loopback_users_.end(), c.username) !=
                       loopback_users_.end();
  if (loopback_only && !in_any(loopback_networks_, peer)) return login_result::loopback_only;
  *who = std::move(u);
  return login_result::ok;
}

login_result user_store::login_without_password(std::string_view username,
                                                const boost::asio::ip::address& peer,
                                                user_ptr* who) const {
  if (is_cluster_node_name(username)) return login_result::invalid_credentials;
  user_ptr u = find(username);
  if (!u) return login_result::invalid_credentials;
  bool loopback_only =
      std::find(loopback_users_.begin(), loopback_users_.end(), username) != loopback_users_.end();
  if (loopback_only && !in_any(loopback_networks_, peer)) return login_result::loopback_only;
  *who = std::move(u);
  return login_result::ok;
}

bool user_store::may_access_vhost(const user& u, std::string_view vhost) {
  if (u.cluster_node) return true;
  return u.permissions.find(vhost) != u.permissions.end();
}

bool user_store::has_tag(const user& u, std::string_view tag) {
  return std::find(u.tags.begin(), u.tags.end(), tag) != u.tags.end();
}

}  // namespace warren::auth
