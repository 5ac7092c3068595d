// Users replicated through etcd (see cluster_users.hpp).
#include "app/cluster_users.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

namespace warren::app {

using nlohmann::json;

std::string user_to_text(const auth::user& u) {
  json perms = json::object(), topics = json::object(), limits = json::object();
  for (const auto& [vh, p] : u.permissions)
    perms[vh] = {{"configure", p.configure}, {"write", p.write}, {"read", p.read}};
  for (const auto& [vh, by_x] : u.topic_permissions)
    for (const auto& [x, t] : by_x) topics[vh][x] = {{"write", t.write}, {"read", t.read}};
  for (const auto& [k, v] : u.limits) limits[k] = v;
  return json{{"name", u.name},       {"password_hash", u.password_hash}, {"tags", u.tags},
              {"permissions", perms}, {"topic_permissions", topics},      {"limits", limits}}
      .dump();
}

std::optional<auth::user> user_from_text(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  try {
    auth::user u;
    u.name = j.at("name").get<std::string>();
    u.password_hash = j.at("password_hash").get<std::string>();
    u.tags = j.at("tags").get<std::vector<std::string>>();
    for (const auto& [vh, p] : j.at("permissions").items())
      u.permissions[vh] =
          auth::permission{p.at("configure").get<std::string>(), p.at("write").get<std::string>(),
                           p.at("read").get<std::string>()};
    for (const auto& [vh, by_x] : j.at("topic_permissions").items())
      for (const auto& [x, t] : by_x.items())
        u.topic_permissions[vh][x] = auth::topic_permission{t.at("write").get<std::string>(),
                                                            t.at("read").get<std::string>()};
    for (const auto& [k, v] : j.at("limits").items()) u.limits[k] = v.get<int64_t>();
    return u;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

cluster_users::cluster_users(std::shared_ptr<cluster::etcd_client> client, std::string cluster,
                             auth::user_store& users, mgmt::users_file* file)
    : client_(std::move(client)),
      prefix_(fmt::format("/warren/{}/users/", cluster)),
      users_(users),
      file_(file) {}

void cluster_users::start() {
  mirror_ = std::make_shared<cluster::prefix_mirror>(
      client_, prefix_, [w = weak_from_this()](const cluster::prefix_mirror::items_map& items) {
        if (auto self = w.lock()) self->on_change(items);
      });
  mirror_->start();
}

void cluster_users::stop() {
  if (mirror_) mirror_->stop();
}

void cluster_users::publish() {
  boost::asio::post(client_->io(), [w = weak_from_this()] {
    if (auto self = w.lock(); self && self->seeded_) self->publish_now();
  });
}

// One txn with a put for every user whose value differs from etcd's (as mirrored) and a delete
// for every user etcd has and this node no longer has. Last writer wins per user.
void cluster_users::publish_now() {
  json ops = json::array();
  std::map<std::string, bool> local;
  for (const auto& u : users_.all()) {
    std::string key = prefix_ + u->name, value = user_to_text(*u);
    local[key] = true;
    auto it = mirror_->items().find(key);
    if (it == mirror_->items().end() || it->second.value != value) {
      ops.push_back(cluster::op_put(key, value));
      in_flight_[key].insert(std::move(value));
    }
  }
  for (const auto& [key, kv] : mirror_->items())
    if (!local.count(key)) ops.push_back(cluster::op_delete(key));
  if (ops.empty()) return;
  size_t n = ops.size();
  client_->txn(json::array(), std::move(ops), json::array(),
               [n, w = weak_from_this()](const std::string& err, cluster::txn_result) {
                 if (err.empty()) return;
                 spdlog::error("cluster: {} user changes not written to etcd: {}", n, err);
                 // Written or not, no echo is certain: forget what was in flight.
                 if (auto self = w.lock()) self->in_flight_.clear();
               });
}

void cluster_users::on_change(const cluster::prefix_mirror::items_map& items) {
  if (!seeded_ && items.empty()) {
    // The first node with users: its users become the cluster's.
    seeded_ = true;
    spdlog::info("cluster: no users in etcd yet; this node's {} users become the cluster's",
                 users_.all().size());
    return publish_now();
  }
  bool first = !seeded_;
  seeded_ = true;
  // A whole read after a lost watch folds events together: the echoes still awaited may never
  // come one by one, so stop waiting for them (the read's values are applied as etcd's).
  if (mirror_->reads() != reads_seen_) {
    reads_seen_ = mirror_->reads();
    in_flight_.clear();
  }
  std::map<std::string, auth::user> put;
  std::vector<std::string> erase;
  for (const auto& [key, kv] : items) {
    auto it = applied_.find(key);
    if (it != applied_.end() && it->second == kv.value) continue;
    if (auto f = in_flight_.find(key); f != in_flight_.end()) {
      if (auto v = f->second.find(kv.value); v != f->second.end()) {
        f->second.erase(v);  // our own write coming back
        if (f->second.empty()) in_flight_.erase(f);
        continue;
      }
    }
    auto u = user_from_text(kv.value);
    if (!u || prefix_ + u->name != key) {
      spdlog::error("cluster: etcd key {} is not a user; ignored", key);
      continue;
    }
    put.emplace(u->name, std::move(*u));
  }
  for (const auto& [key, value] : applied_)
    if (!items.count(key)) erase.push_back(key.substr(prefix_.size()));
  // Joining a cluster that has users: its users replace this node's.
  if (first)
    for (const auto& u : users_.all())
      if (!items.count(prefix_ + u->name)) erase.push_back(u->name);
  applied_.clear();
  for (const auto& [key, kv] : items) applied_[key] = kv.value;

  size_t changed = 0;
  users_.update([&](auth::user_map& m) {
    for (auto& [name, u] : put) {
      auto it = m.find(name);
      if (it != m.end() && *it->second == u) continue;
      m[name] = std::make_shared<const auth::user>(std::move(u));
      ++changed;
    }
    for (const auto& name : erase) changed += m.erase(name);
  });
  if (changed == 0) return;
  spdlog::info("cluster: {} user changes applied from etcd", changed);
  std::string err;
  if (file_ && !file_->save(users_, err)) spdlog::error("users not saved: {}", err);
}

}  // namespace warren::app
