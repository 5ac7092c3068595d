// Vhosts replicated through etcd (see cluster_vhosts.hpp).
#include "app/cluster_vhosts.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

namespace warren::app {

using nlohmann::json;

cluster_vhosts::cluster_vhosts(std::shared_ptr<cluster::etcd_client> client, std::string cluster,
                               local_ops ops)
    : client_(std::move(client)),
      prefix_(fmt::format("/warren/{}/vhosts/", cluster)),
      ops_(std::move(ops)) {}

void cluster_vhosts::start() {
  mirror_ = std::make_shared<cluster::prefix_mirror>(
      client_, prefix_, [w = weak_from_this()](const cluster::prefix_mirror::items_map& items) {
        if (auto self = w.lock()) self->on_change(items);
      });
  mirror_->start();
}

void cluster_vhosts::stop() {
  if (mirror_) mirror_->stop();
}

void cluster_vhosts::publish(const std::string& name, bool exists) {
  boost::asio::post(client_->io(), [self = shared_from_this(), name, exists] {
    std::string key = self->prefix_ + name;
    auto done = [name, exists](const std::string& err) {
      if (!err.empty())
        spdlog::error("cluster: vhost '{}' {} not written to etcd: {}", name,
                      exists ? "creation" : "deletion", err);
    };
    if (exists)
      self->client_->put(key, json{{"name", name}}.dump(), 0, done);
    else
      self->client_->delete_range(key, {}, done);
  });
}

void cluster_vhosts::on_change(const cluster::prefix_mirror::items_map& items) {
  std::set<std::string> now;
  for (const auto& [key, kv] : items) now.insert(key.substr(prefix_.size()));
  if (!seeded_) {
    // Joining: this node's vhosts go to etcd too (the union).
    seeded_ = true;
    for (const auto& n : ops_.names())
      if (!now.count(n)) publish(n, true);
  }
  std::vector<std::string> local = ops_.names();
  std::set<std::string> have(local.begin(), local.end());
  for (const auto& n : now)
    if (!have.count(n)) {
      std::string err = ops_.create(n);
      if (err.empty())
        spdlog::info("cluster: vhost '{}' created, as in etcd", n);
      else
        spdlog::error("cluster: vhost '{}' from etcd not created: {}", n, err);
    }
  for (const auto& n : known_)
    if (!now.count(n) && have.count(n))
      ops_.remove(n, [n](std::string err) {
        if (!err.empty())
          spdlog::error("cluster: vhost '{}' deleted in etcd, not here: {}", n, err);
      });
  known_ = std::move(now);
}

}  // namespace warren::app
