// The cluster thread and fencing (see cluster_node.hpp).
#include "app/cluster_node.hpp"

#include <pthread.h>

#include <future>
#include <random>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "amqp/server/connection.hpp"
#include "net/connection.hpp"
#include "web/gateway_handler.hpp"

namespace warren::app {

namespace {

// Long enough for etcd's answers on a loaded machine, short enough that a dead endpoint does not
// eat the lease's renewals: a quarter of the TTL, from 250 ms to 2 s.
std::chrono::milliseconds request_timeout(std::chrono::seconds ttl) {
  auto q = std::chrono::duration_cast<std::chrono::milliseconds>(ttl) / 4;
  return std::clamp<std::chrono::milliseconds>(q, std::chrono::milliseconds(250),
                                               std::chrono::milliseconds(2000));
}

}  // namespace

cluster_node::cluster_node(settings s, common::node_fence& fence, net::worker_pool& pool,
                           auth::user_store& users, mgmt::users_file* file,
                           broker::vhost_registry& vhosts)
    : s_(std::move(s)), fence_(fence), pool_(pool), work_(io_.get_executor()) {
  std::string err;
  auto eps = cluster::parse_endpoints(s_.endpoints, err);
  if (!eps) throw std::runtime_error("--etcd-endpoints: " + err);
  client_ = std::make_shared<cluster::etcd_client>(io_, *eps, request_timeout(s_.lease_ttl));
  fence_.set(true, fmt::format("node '{}' is joining cluster '{}'", s_.node, s_.cluster));
  fence_.set_lapse_reason(
      fmt::format("node '{}' of cluster '{}' is fenced: lease not renewed before its deadline "
                  "(etcd unreachable, or the process was paused)",
                  s_.node, s_.cluster));
  users_store_ = &users;
  users_ = std::make_shared<cluster_users>(client_, s_.cluster, users, file);
  definitions_ = std::make_shared<cluster_definitions>(client_, s_.cluster, s_.node, vhosts, pool);
  locate_ = [info = link_info_](const std::string& node) -> std::optional<node_address> {
    std::shared_ptr<cluster::membership> m;
    {
      std::lock_guard lk(info->mutex);
      m = info->membership.lock();
    }
    auto v = m ? m->view() : nullptr;
    if (!v) return std::nullopt;
    for (const auto& n : v->nodes) {
      if (n.name != node || !n.running) continue;
      const auto ls = n.info.find("listeners");
      if (ls == n.info.end() || !ls->is_array()) return std::nullopt;
      for (const auto& l : *ls) {
        if (l.value("protocol", "") != "amqp") continue;
        // The address the node advertises (--advertise-address), else the one it is bound to;
        // bound to every address, the loopback (nodes on one machine).
        std::string host = n.info.value("advertise_address", "");
        if (host.empty()) host = l.value("ip_address", "");
        if (host.empty() || host == "0.0.0.0" || host == "::") host = "127.0.0.1";
        return node_address{host, l.value("port", uint16_t(0))};
      }
    }
    return std::nullopt;
  };
  secret_ = [info = link_info_] {
    std::lock_guard lk(info->mutex);
    return info->secret;
  };
  definitions_->set_links(locate_, secret_, s_.lease_ttl);
}

cluster_node::~cluster_node() {
  leave();
}

void cluster_node::join() {
  cluster::membership_settings ms;
  ms.cluster = s_.cluster;
  ms.node = s_.node;
  ms.lease_ttl = s_.lease_ttl;
  ms.info = s_.info;
  ms.started_at_ms = s_.started_at_ms;
  auto first = std::make_shared<std::promise<std::pair<cluster::join_result, std::string>>>();
  auto fut = first->get_future();
  membership_ = std::make_shared<cluster::membership>(
      client_, ms,
      cluster::membership::events{
          [this](cluster::node_state st, const std::string& why) { on_state(st, why); },
          [first](cluster::join_result r, const std::string& detail) {
            first->set_value({r, detail});
          },
          [this](std::chrono::steady_clock::time_point t) { fence_.serve_until(t); }});
  {
    std::lock_guard lk(link_info_->mutex);
    link_info_->membership = membership_;
  }
  if (gateway_table_)
    gateway_ = std::make_shared<cluster_gateway>(client_, s_.cluster, membership_, gateway_table_,
                                                 gateway_on_map_);
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "cluster");
    io_.run();
  });
  boost::asio::post(
      io_, [this, m = membership_, u = users_, v = vhosts_, d = definitions_, g = gateway_] {
        fetch_secret();
        m->start();
        u->start();
        if (v) v->start();
        d->start();
        if (g) g->start();
      });
  spdlog::info("cluster '{}': node '{}' joining through etcd at {}", s_.cluster, s_.node,
               s_.endpoints);
  // Each endpoint is tried once or twice per call, and registering is three calls; a name still
  // held by this node's previous process is waited for up to its TTL (membership), taken to be
  // ours.
  auto limit = std::max<std::chrono::milliseconds>(
      request_timeout(s_.lease_ttl) * int(2 * client_->endpoints().size() + 2) * 3 +
          std::chrono::seconds(1),
      s_.lease_ttl + std::chrono::seconds(3));
  if (fut.wait_for(limit) != std::future_status::ready) {
    spdlog::warn(
        "cluster '{}': no answer from etcd within {} ms; node '{}' starts fenced and "
        "keeps trying",
        s_.cluster, limit.count(), s_.node);
    return;
  }
  auto [result, detail] = fut.get();
  if (result == cluster::join_result::duplicate)
    throw std::runtime_error(
        fmt::format("{}: choose another --node-name, or stop the other node first", detail));
  if (result == cluster::join_result::unreachable)
    spdlog::warn("cluster '{}': {}; node '{}' starts fenced and keeps trying", s_.cluster, detail,
                 s_.node);
}

void cluster_node::set_vhost_ops(cluster_vhosts::local_ops ops) {
  // A vhost created or deleted here because etcd says so: its definitions follow.
  ops.create = [d = definitions_, create = std::move(ops.create)](const std::string& name) {
    std::string err = create(name);
    if (err.empty()) d->vhost_created(name);
    return err;
  };
  ops.remove = [d = definitions_, remove = std::move(ops.remove)](
                   const std::string& name, std::function<void(std::string)> done) {
    remove(name, [d, name, done = std::move(done)](std::string err) {
      if (err.empty() || err.starts_with("vhost deleted")) d->vhost_deleted(name, false);
      done(std::move(err));
    });
  };
  vhosts_ = std::make_shared<cluster_vhosts>(client_, s_.cluster, std::move(ops));
}

void cluster_node::keep_gateway_map(std::shared_ptr<web::shard_table> table,
                                    std::function<void()> on_map) {
  gateway_table_ = std::move(table);
  gateway_on_map_ = std::move(on_map);
}

void cluster_node::publish_vhost(const std::string& name, bool exists) {
  vhosts_->publish(name, exists);
  if (exists)
    definitions_->vhost_created(name);
  else
    definitions_->vhost_deleted(name, true);
}

void cluster_node::leave() {
  if (!thread_.joinable()) return;
  std::promise<std::string> left;
  auto fut = left.get_future();
  boost::asio::post(io_, [this, &left] {
    users_->stop();
    if (vhosts_) vhosts_->stop();
    definitions_->stop();
    if (gateway_) gateway_->stop();
    membership_->leave([this, &left](const std::string& err) {
      client_->close();
      left.set_value(err);
    });
  });
  if (fut.wait_for(request_timeout(s_.lease_ttl) * 3) != std::future_status::ready)
    spdlog::warn("cluster '{}': etcd did not answer the lease's revocation in time", s_.cluster);
  else if (std::string err = fut.get(); !err.empty())
    spdlog::warn(
        "cluster '{}': node '{}' left without revoking its lease ({}): the others see it "
        "stop when the lease expires",
        s_.cluster, s_.node, err);
  else
    spdlog::info("cluster '{}': node '{}' left (lease revoked)", s_.cluster, s_.node);
  work_.reset();
  io_.stop();
  thread_.join();
  // The handlers of what was cancelled (sockets closed, timers stopped) still hold the client
  // and its sockets: run them now, while the io_context is whole.
  io_.restart();
  io_.poll();
}

decltype(amqp::server::server_context::remote_queue_call) cluster_node::remote_queue_call() const {
  return [self = s_.node, locate = locate_, secret = secret_, ttl = s_.lease_ttl](
             net::worker& on, const std::string& vhost, const std::string& node,
             amqp::protocol::method m,
             std::function<void(amqp::server::server_context::remote_result)> done) {
    call_on_node(on.io(), node_links::settings{self, vhost, locate, secret, ttl}, node,
                 std::move(m), std::move(done));
  };
}

decltype(amqp::server::server_context::node_connection) cluster_node::node_connection() const {
  return [self = s_.node, locate = locate_, secret = secret_, ttl = s_.lease_ttl](
             net::worker& on, const std::string& vhost, const std::string& node, std::string name,
             amqp::client::events ev) {
    return connect_to_node(on.io(), node_links::settings{self, vhost, locate, secret, ttl}, node,
                           std::move(name), std::move(ev));
  };
}

decltype(amqp::server::server_context::balanced_node) cluster_node::balanced_node() const {
  return [self = s_.node, info = link_info_, dir = definitions_->directory()](
             const std::string& vhost, size_t here) -> std::string {
    std::shared_ptr<cluster::membership> m;
    {
      std::lock_guard lk(info->mutex);
      m = info->membership.lock();
    }
    auto view = m ? m->view() : nullptr;
    if (!view) return {};
    std::map<std::string, size_t> count;  // running nodes: their queues in the vhost
    for (const auto& n : view->nodes)
      if (n.running && n.name != self) count[n.name] = 0;
    for (const auto& q : dir->queues(&vhost))
      if (auto it = count.find(q.node); it != count.end()) ++it->second;
    std::string best;  // this node unless another has fewer
    size_t fewest = here;
    for (const auto& [node, n] : count)
      if (n < fewest) {
        fewest = n;
        best = node;
      }
    return best;
  };
}

decltype(amqp::server::server_context::remote_queue_declared) cluster_node::remote_queue_declared()
    const {
  return [dir = definitions_->directory()](const std::string& vhost, const std::string& queue,
                                           const std::string& node, bool durable, bool auto_delete,
                                           const amqp::protocol::field_table& args) {
    dir->set_queue(
        queue_record{mgmt::queue_def{vhost, queue, durable, auto_delete, args, node}, node});
  };
}

void cluster_node::fetch_secret() {
  std::string key = fmt::format("/warren/{}/secret", s_.cluster);
  std::string mine;
  {
    std::random_device rd;
    for (int i = 0; i < 4; ++i) mine += fmt::format("{:016x}", (uint64_t(rd()) << 32) | rd());
  }
  using cluster::json;
  json compare = json::array({cluster::cmp_version_equal(key, 0)});
  json success = json::array({cluster::op_put(key, mine)});
  json failure = json::array({cluster::op_range(key)});
  client_->txn(compare, success, failure,
               [this, mine](const std::string& err, const cluster::txn_result& r) {
                 std::string secret;
                 if (err.empty() && r.succeeded)
                   secret = mine;
                 else if (err.empty() && !r.ranges.empty() && !r.ranges[0].kvs.empty())
                   secret = r.ranges[0].kvs[0].value;
                 if (secret.empty()) {
                   if (!secret_timer_)
                     secret_timer_ = std::make_unique<boost::asio::steady_timer>(io_);
                   secret_timer_->expires_after(std::chrono::milliseconds(500));
                   secret_timer_->async_wait([this](const boost::system::error_code& ec) {
                     if (!ec) fetch_secret();
                   });
                   return;
                 }
                 {
                   std::lock_guard lk(link_info_->mutex);
                   link_info_->secret = secret;
                 }
                 users_store_->set_cluster_secret(secret);
               });
}

void cluster_node::on_state(cluster::node_state st, const std::string& why) {
  if (st == cluster::node_state::serving) {
    fence_.set(false, {});
    spdlog::info("cluster '{}': node '{}' serves clients", s_.cluster, s_.node);
    return;
  }
  if (st != cluster::node_state::fenced) return;
  std::string text =
      fmt::format("node '{}' of cluster '{}' is fenced: {}", s_.node, s_.cluster, why);
  fence_.set(true, text);
  // Each worker closes its clients: AMQP with connection.close 320 and the reason (one still in
  // its handshake is refused so at connection.open, the fence being set now), the web
  // gateway's with 1001 and the reason (WebSocket) or an ended stream. The management API stays up,
  // so an operator can see why (GET /api/nodes).
  for (size_t i = 0; i < pool_.size(); ++i) {
    net::worker& w = pool_.at(i);
    w.post_urgent([&w, text] {
      size_t closed = 0;
      w.for_each_connection([&](net::connection& c) {
        if (c.closed()) return;
        if (auto* a = dynamic_cast<amqp::server::amqp_connection*>(c.handler())) {
          if (a->fence(text)) ++closed;
        } else if (auto* g = dynamic_cast<web::gateway_handler*>(c.handler())) {
          g->fence(text);
          c.flush();
          ++closed;
        }
      });
      if (closed) spdlog::warn("fenced: worker {} closed {} client connections", w.index(), closed);
    });
  }
}

mgmt::cluster_status cluster_node::status() const {
  mgmt::cluster_status out;
  out.cluster = s_.cluster;
  out.self = s_.node;
  if (!membership_) return out;
  auto v = membership_->view();
  if (!v) return out;
  out.state = cluster::to_string(v->state);
  out.reason = v->state_reason;
  // The workers refuse clients from the lease's deadline on, a moment before the cluster thread
  // fences the node, and once it has, a moment before the view says so (a renewal that fails
  // fences the node before the deadline): say what they do.
  if (v->state != cluster::node_state::fenced && fence_.refuses(common::node_fence::clock::now())) {
    out.state = "fenced";
    out.reason = fence_.refusal();
  }
  out.synced = v->synced;
  for (const auto& n : v->nodes) out.members.push_back({n.name, n.running, n.info});
  if (gateway_table_)
    if (auto slots = gateway_table_->get()) {
      for (const auto& owner : *slots)
        if (!owner.empty()) ++out.gateway_slots[owner];
      out.gateway_map_version = gateway_table_->version();
    }
  return out;
}

}  // namespace warren::app
