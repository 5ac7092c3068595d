// A node's lease, registration and fencing (see membership.hpp).
#include "cluster/membership.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

namespace warren::cluster {

namespace {

constexpr std::chrono::milliseconds tick{100};
constexpr std::chrono::milliseconds retry_interval{500};

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// How long before the lease could expire in etcd the node stops serving: a fifth of the TTL,
// at least 200 ms. etcd counts the TTL from when it handled the renewal, which is after the
// node sent it, so "sent + TTL - margin" is always before the expiry etcd sees (clocks: both
// monotonic durations; only their rates must agree).
std::chrono::milliseconds margin(std::chrono::seconds ttl) {
  return std::max<std::chrono::milliseconds>(
      std::chrono::milliseconds(200),
      std::chrono::duration_cast<std::chrono::milliseconds>(ttl) / 5);
}

}  // namespace

const char* to_string(node_state s) {
  switch (s) {
    case node_state::joining:
      return "joining";
    case node_state::serving:
      return "serving";
    case node_state::fenced:
      return "fenced";
  }
  return "?";
}

size_t cluster_view::running() const {
  return size_t(
      std::count_if(nodes.begin(), nodes.end(), [](const node_entry& n) { return n.running; }));
}

std::string nodes_prefix(std::string_view cluster) {
  return fmt::format("/warren/{}/nodes/", cluster);
}
std::string members_prefix(std::string_view cluster) {
  return fmt::format("/warren/{}/members/", cluster);
}

membership::membership(std::shared_ptr<etcd_client> client, membership_settings s, events e)
    : client_(std::move(client)),
      settings_(std::move(s)),
      events_(std::move(e)),
      node_key_(nodes_prefix(settings_.cluster) + settings_.node),
      member_key_(members_prefix(settings_.cluster) + settings_.node),
      keepalive_timer_(client_->io()),
      deadline_timer_(client_->io()),
      retry_timer_(client_->io()) {
  publish_view();
}

void membership::start() {
  auto w = weak_from_this();
  auto changed = [w](const prefix_mirror::items_map&) {
    if (auto self = w.lock()) self->publish_view();
  };
  nodes_ = std::make_shared<prefix_mirror>(client_, nodes_prefix(settings_.cluster), changed);
  members_ = std::make_shared<prefix_mirror>(client_, members_prefix(settings_.cluster), changed);
  try_register();
  nodes_->start();
  members_->start();
  check_deadline();
}

std::string membership::node_value(int64_t lease) const {
  json j = settings_.info;
  j["name"] = settings_.node;
  j["started_at"] = settings_.started_at_ms;
  j["lease"] = fmt::format("{:x}", lease);
  return j.dump();
}

std::string membership::member_value() const {
  json j = settings_.info;
  j["name"] = settings_.node;
  j["started_at"] = settings_.started_at_ms;
  j["last_joined"] = wall_ms();
  return j.dump();
}

void membership::try_register() {
  if (registering_ || stopped_) return;
  registering_ = true;
  auto self = shared_from_this();
  auto fail = [self](join_result kind, const std::string& detail) {
    self->registering_ = false;
    if (self->stopped_) return;
    if (!self->first_reported_) {
      self->first_reported_ = true;
      if (self->events_.on_first) self->events_.on_first(kind, detail);
    }
    self->set_state(node_state::fenced, kind == join_result::duplicate
                                            ? detail
                                            : fmt::format("cannot register in etcd: {}", detail));
    self->retry_register_later();
  };
  auto grant = [self, fail] {
    auto sent = clock::now();
    self->client_->lease_grant(self->settings_.lease_ttl.count(), [self, fail, sent](
                                                                      const std::string& err,
                                                                      lease_grant_result g) {
      if (self->stopped_) return;
      if (!err.empty()) return fail(join_result::unreachable, err);
      json compare = json::array({cmp_version_equal(self->node_key_, 0)});
      json success = json::array({op_put(self->node_key_, self->node_value(g.id), g.id),
                                  op_put(self->member_key_, self->member_value())});
      json failure = json::array({op_range(self->node_key_)});
      self->client_->txn(
          compare, success, failure, [self, fail, sent, g](const std::string& err, txn_result r) {
            if (self->stopped_) return;
            if (!err.empty()) {
              self->client_->lease_revoke(g.id, [](const std::string&) {});
              return fail(join_result::unreachable, err);
            }
            if (!r.succeeded) {
              int64_t holder_lease =
                  !r.ranges.empty() && !r.ranges[0].kvs.empty() ? r.ranges[0].kvs[0].lease : 0;
              // Our own key: an earlier try of this txn was applied but its answer lost (the
              // client timed out and tried the next endpoint).
              if (holder_lease == g.id) return self->registered(g.id, g.ttl, sent);
              self->client_->lease_revoke(g.id, [](const std::string&) {});
              std::string holder;
              if (holder_lease != 0) holder = fmt::format(" (lease {:x})", holder_lease);
              std::string text =
                  fmt::format("node name '{}' is already in use by a live node of cluster '{}'{}",
                              self->settings_.node, self->settings_.cluster, holder);
              // At start, the holder may be this node's previous process, killed a moment ago
              // (a supervisor restarting it): its lease lasts until its TTL runs out. Only a
              // holder that outlives its TTL is a live node.
              if (!self->first_reported_ && holder_lease != 0 &&
                  !self->holder_outlived_ttl(holder_lease)) {
                self->registering_ = false;
                self->set_state(node_state::fenced,
                                fmt::format("node name '{}' is held by lease {:x}: waiting for "
                                            "it to expire (a previous process of this node?) "
                                            "or to be renewed (another live node)",
                                            self->settings_.node, holder_lease));
                return self->retry_register_later();
              }
              return fail(join_result::duplicate, text);
            }
            self->registered(g.id, g.ttl, sent);
          });
    });
  };
  // A fenced node's old lease may still be alive in etcd (etcd was unreachable from this node
  // only): give it up first, so its key goes and the name is free again.
  if (lease_ != 0 && state_ != node_state::serving) {
    int64_t old = lease_;
    lease_ = 0;
    client_->lease_revoke(old, [grant](const std::string&) { grant(); });
  } else {
    grant();
  }
}

bool membership::holder_outlived_ttl(int64_t holder) {
  auto now = clock::now();
  if (holder != holder_) {
    // First sight: how long may this lease live unrenewed? Until etcd says, our own TTL.
    holder_ = holder;
    holder_deadline_ = now + settings_.lease_ttl + std::chrono::seconds(1);
    client_->call("/v3/lease/timetolive", json{{"ID", std::to_string(holder)}},
                  [w = weak_from_this(), holder, now](const std::string& err, const json& j) {
                    auto self = w.lock();
                    if (!self || !err.empty() || self->holder_ != holder) return;
                    auto granted = j.find("grantedTTL");
                    int64_t ttl = 0;
                    if (granted != j.end() && granted->is_string())
                      ttl = std::strtoll(granted->get<std::string>().c_str(), nullptr, 10);
                    else if (granted != j.end() && granted->is_number_integer())
                      ttl = granted->get<int64_t>();
                    if (ttl > 0)
                      self->holder_deadline_ =
                          now + std::chrono::seconds(ttl) + std::chrono::seconds(1);
                  });
    return false;
  }
  return now >= holder_deadline_;
}

void membership::registered(int64_t lease, int64_t ttl, clock::time_point sent) {
  registering_ = false;
  lease_ = lease;
  ttl_ = std::chrono::seconds(ttl > 0 ? ttl : settings_.lease_ttl.count());
  deadline_ = sent + ttl_ - margin(ttl_);
  if (events_.on_deadline) events_.on_deadline(deadline_);
  failures_logged_ = 0;
  spdlog::info("cluster '{}': node '{}' registered in etcd under lease {:x} (TTL {} s)",
               settings_.cluster, settings_.node, lease_, ttl_.count());
  set_state(node_state::serving, {});
  if (!first_reported_) {
    first_reported_ = true;
    if (events_.on_first) events_.on_first(join_result::registered, {});
  }
  schedule_keepalive(keepalive_interval());
}

void membership::set_state(node_state s, const std::string& why) {
  if (s == state_ && why == reason_) return;
  bool changed = s != state_;
  state_ = s;
  reason_ = why;
  if (s == node_state::fenced)
    spdlog::error("cluster '{}': node '{}' is fenced: {}", settings_.cluster, settings_.node, why);
  if (changed && events_.on_state) events_.on_state(s, why);
  publish_view();
}

void membership::schedule_keepalive(std::chrono::milliseconds delay) {
  keepalive_timer_.expires_after(delay);
  keepalive_timer_.async_wait([w = weak_from_this()](const boost::system::error_code& ec) {
    auto self = w.lock();
    if (ec || !self || self->stopped_ || self->state_ != node_state::serving) return;
    self->keepalive();
    self->schedule_keepalive(self->keepalive_interval());
  });
}

std::chrono::milliseconds membership::keepalive_interval() const {
  return std::max<std::chrono::milliseconds>(
      tick, std::chrono::duration_cast<std::chrono::milliseconds>(ttl_) / 3);
}

void membership::keepalive() {
  // One renewal at a time: while one tries the endpoints, more would only queue behind it.
  if (keepalive_pending_) return;
  keepalive_pending_ = true;
  // Each try on an endpoint gets a tenth of the TTL (100 ms to the request timeout): a silent
  // endpoint (a cut link, a member cut from its leader) must not eat the lease's time before the
  // next endpoint is tried. A renewal needs no disk write in etcd, so it answers fast when it can.
  auto per_try = std::clamp<std::chrono::milliseconds>(
      std::chrono::duration_cast<std::chrono::milliseconds>(ttl_) / 10, tick,
      std::max(tick, client_->request_timeout()));
  client_->lease_keepalive(
      lease_,
      [self = shared_from_this(), lease = lease_](const std::string& err, int64_t ttl) {
        self->keepalive_pending_ = false;
        if (self->stopped_ || lease != self->lease_ || self->state_ != node_state::serving) return;
        if (!err.empty()) {
          if (self->failures_logged_++ % 10 == 0)
            spdlog::warn("cluster '{}': lease {:x} not renewed: {}", self->settings_.cluster, lease,
                         err);
          // Try again soon rather than at the next interval; check_deadline fences if this goes
          // on.
          return self->schedule_keepalive(tick);
        }
        if (ttl <= 0) {
          self->set_state(node_state::fenced,
                          fmt::format("lease {:x} is gone from etcd (expired or revoked)", lease));
          return self->retry_register_later();
        }
        self->failures_logged_ = 0;
        // From when the answered try was sent (not when the renewal was queued, nor its first
        // try): etcd handled it after that.
        auto sent = self->client_->answered_attempt_sent();
        self->deadline_ =
            std::max(self->deadline_, sent + std::chrono::seconds(ttl) - margin(self->ttl_));
        if (self->events_.on_deadline) self->events_.on_deadline(self->deadline_);
      },
      per_try);
}

void membership::check_deadline() {
  deadline_timer_.expires_after(tick);
  deadline_timer_.async_wait([w = weak_from_this()](const boost::system::error_code& ec) {
    auto self = w.lock();
    if (ec || !self || self->stopped_) return;
    if (self->state_ == node_state::serving && clock::now() >= self->deadline_) {
      self->set_state(node_state::fenced,
                      fmt::format("lease {:x} not renewed within {} s (etcd unreachable)",
                                  self->lease_, self->ttl_.count()));
      self->retry_register_later();
    }
    self->check_deadline();
  });
}

void membership::retry_register_later() {
  retry_timer_.expires_after(retry_interval);
  retry_timer_.async_wait([w = weak_from_this()](const boost::system::error_code& ec) {
    auto self = w.lock();
    if (ec || !self || self->stopped_ || self->state_ == node_state::serving) return;
    self->try_register();
  });
}

void membership::leave(std::function<void(const std::string&)> done) {
  bool serving = state_ == node_state::serving;
  stopped_ = true;
  keepalive_timer_.cancel();
  deadline_timer_.cancel();
  retry_timer_.cancel();
  if (nodes_) nodes_->stop();
  if (members_) members_->stop();
  if (!serving || lease_ == 0) return done("the node held no lease");
  client_->lease_revoke(lease_, [done = std::move(done)](const std::string& err) { done(err); });
}

void membership::publish_view() {
  auto v = std::make_shared<cluster_view>();
  v->cluster = settings_.cluster;
  v->self = settings_.node;
  v->state = state_;
  v->state_reason = reason_;
  v->synced = nodes_ && members_ && nodes_->synced() && members_->synced();
  std::map<std::string, node_entry> by_name;
  auto add = [&](const prefix_mirror::items_map& items, const std::string& prefix, bool running) {
    for (const auto& [key, kv] : items) {
      if (!key.starts_with(prefix)) continue;
      std::string name = key.substr(prefix.size());
      json info = json::parse(kv.value, nullptr, false);
      if (info.is_discarded() || !info.is_object()) info = json::object();
      node_entry& e = by_name[name];
      e.name = name;
      if (running || !e.running) e.info = std::move(info);
      e.running = e.running || running;
    }
  };
  if (members_) add(members_->items(), members_prefix(settings_.cluster), false);
  if (nodes_) add(nodes_->items(), nodes_prefix(settings_.cluster), true);
  // This node as it knows itself: serving only while it holds its lease, whatever the last
  // read of etcd said.
  node_entry& me = by_name[settings_.node];
  me.name = settings_.node;
  if (me.info.is_null() || me.info.empty()) {
    me.info = settings_.info;
    me.info["name"] = settings_.node;
    me.info["started_at"] = settings_.started_at_ms;
  }
  me.running = state_ == node_state::serving;
  for (auto& [name, e] : by_name) v->nodes.push_back(std::move(e));
  std::lock_guard lock(view_mutex_);
  view_ = std::move(v);
}

std::shared_ptr<const cluster_view> membership::view() const {
  std::lock_guard lock(view_mutex_);
  return view_;
}

}  // namespace warren::cluster
