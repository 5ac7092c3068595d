// The web gateway's shard map in etcd (cluster_gateway.hpp).
#include "app/cluster_gateway.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace warren::app {

namespace {
// How often the running nodes are compared with the map: a node that stops is seen through the
// membership's mirror, which has no event of its own.
constexpr auto check_interval = std::chrono::milliseconds(200);
}  // namespace

cluster_gateway::cluster_gateway(std::shared_ptr<cluster::etcd_client> client, std::string cluster,
                                 std::shared_ptr<cluster::membership> membership,
                                 std::shared_ptr<web::shard_table> table,
                                 std::function<void()> on_map)
    : client_(std::move(client)),
      key_(fmt::format("/warren/{}/gateway/shards", cluster)),
      membership_(membership),
      table_(std::move(table)),
      on_map_(std::move(on_map)),
      timer_(client_->io()) {}

void cluster_gateway::start() {
  std::weak_ptr<cluster_gateway> w = weak_from_this();
  mirror_ = std::make_shared<cluster::prefix_mirror>(
      client_, key_, [w](const cluster::prefix_mirror::items_map& items) {
        if (auto self = w.lock()) self->on_change(items);
      });
  mirror_->start();
  arm();
}

void cluster_gateway::stop() {
  stopped_ = true;
  timer_.cancel();
  if (mirror_) mirror_->stop();
}

void cluster_gateway::arm() {
  timer_.expires_after(check_interval);
  timer_.async_wait([w = weak_from_this()](const boost::system::error_code& ec) {
    auto self = w.lock();
    if (ec || !self || self->stopped_) return;
    self->check();
    self->arm();
  });
}

void cluster_gateway::on_change(const cluster::prefix_mirror::items_map& items) {
  auto it = items.find(key_);
  web::slot_list slots;
  int64_t version = 0;
  if (it != items.end()) {
    auto s = web::decode_slots(it->second.value);
    if (!s) {
      spdlog::error("cluster: {} is not a shard map; it will be written again", key_);
    } else {
      slots = std::move(*s);
    }
    version = it->second.version;
  }
  size_t moved = web::slots_moved(current_, slots);
  current_ = slots;
  version_ = version;
  if (moved == 0 && table_->get()) return;
  spdlog::info("cluster: web gateway shard map version {}: {} slots changed owner", version, moved);
  table_->set(std::move(slots), version);
  if (on_map_) on_map_();
  check();
}

void cluster_gateway::check() {
  if (writing_ || !mirror_ || !mirror_->synced()) return;
  auto m = membership_.lock();
  auto v = m ? m->view() : nullptr;
  if (!v || v->state != cluster::node_state::serving || !v->synced) return;
  std::vector<std::string> running;
  for (const auto& n : v->nodes)
    if (n.running) running.push_back(n.name);
  if (running.empty()) return;
  web::slot_list want = web::rebalance(current_, running);
  if (want == current_) return;
  writing_ = true;
  using cluster::json;
  json compare = json::array({cluster::cmp_version_equal(key_, version_)});
  json success = json::array({cluster::op_put(key_, web::encode_slots(want))});
  size_t moved = web::slots_moved(current_, want);
  client_->txn(compare, success, json::array(),
               [w = weak_from_this(), moved](const std::string& err, const cluster::txn_result& r) {
                 auto self = w.lock();
                 if (!self) return;
                 self->writing_ = false;
                 if (!err.empty()) {
                   spdlog::warn("cluster: writing the web gateway's shard map failed: {}", err);
                   return;
                 }
                 // Lost to another node's write: its map comes through the watch.
                 if (r.succeeded)
                   spdlog::info("cluster: wrote the web gateway's shard map ({} slots moved)",
                                moved);
               });
}

}  // namespace warren::app
