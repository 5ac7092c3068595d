// Reconciling the links and shovels with the parameters and policies; their status.
#include "federation/supervisor.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/steady_timer.hpp>

#include <condition_variable>
#include <set>

#include "auth/permissions.hpp"
#include "federation/link.hpp"
#include "federation/shovel.hpp"

namespace warren::federation {

namespace {

// The upstreams a policy's definition names: [(name, value with the set entry's overrides)].
std::vector<std::pair<std::string, json>> upstreams_for(const policy& p,
                                                        const std::vector<parameter>& params) {
  std::vector<std::pair<std::string, json>> out;
  auto upstream = [&](const std::string& name) -> const parameter* {
    for (const auto& q : params)
      if (q.component == "federation-upstream" && q.vhost == p.vhost && q.name == name) return &q;
    return nullptr;
  };
  if (auto it = p.definition.find("federation-upstream"); it != p.definition.end()) {
    if (const parameter* u = upstream(it->get<std::string>())) out.emplace_back(u->name, u->value);
    return out;
  }
  if (auto pat = p.definition.find("federation-upstream-pattern"); pat != p.definition.end()) {
    auto re = auth::pattern::compile(pat->get<std::string>());
    for (const auto& q : params)
      if (q.component == "federation-upstream" && q.vhost == p.vhost && re.matches(q.name))
        out.emplace_back(q.name, q.value);
    return out;
  }
  auto it = p.definition.find("federation-upstream-set");
  if (it == p.definition.end()) return out;
  std::string set = it->get<std::string>();
  if (set == "all") {
    for (const auto& q : params)
      if (q.component == "federation-upstream" && q.vhost == p.vhost)
        out.emplace_back(q.name, q.value);
    return out;
  }
  for (const auto& q : params) {
    if (q.component != "federation-upstream-set" || q.vhost != p.vhost || q.name != set) continue;
    for (const auto& entry : q.value) {
      const parameter* u = upstream(entry.value("upstream", ""));
      if (!u) continue;
      json merged = u->value;
      for (auto e = entry.begin(); e != entry.end(); ++e)
        if (e.key() != "upstream") merged[e.key()] = *e;
      out.emplace_back(u->name, std::move(merged));
    }
  }
  return out;
}

}  // namespace

supervisor::supervisor(runtime_store& store, broker::vhost_registry& vhosts, net::worker_pool& pool,
                       std::string cluster_name)
    : store_(store), vhosts_(vhosts), pool_(pool), cluster_name_(std::move(cluster_name)) {}

supervisor::~supervisor() = default;

void supervisor::start() {
  store_.on_change([this] {
    home().post([this] {
      if (reconcile_queued_) return;
      reconcile_queued_ = true;
      // Let a burst of changes (a definitions import) settle into one pass.
      home().post([this] {
        reconcile_queued_ = false;
        reconcile();
      });
    });
  });
  home().post([this] {
    timer_ = std::make_shared<boost::asio::steady_timer>(home().io());
    reconcile();
    arm_timer();
  });
}

void supervisor::arm_timer() {
  auto t = std::static_pointer_cast<boost::asio::steady_timer>(timer_);
  t->expires_after(std::chrono::seconds(1));
  t->async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopping_) return;
    reconcile();
    arm_timer();
  });
}

void supervisor::stop(int wait_ms) {
  struct done_flag {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
  };
  auto flag = std::make_shared<done_flag>();
  home().post([this, flag] {
    stopping_ = true;
    if (timer_) std::static_pointer_cast<boost::asio::steady_timer>(timer_)->cancel();
    for (auto& [k, r] : running_) {
      if (r.l) r.l->stop();
      if (r.s) r.s->stop();
    }
    running_.clear();
    std::lock_guard lock(flag->m);
    flag->done = true;
    flag->cv.notify_all();
  });
  std::unique_lock lock(flag->m);
  flag->cv.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] { return flag->done; });
}

void supervisor::report(const std::string& key, const link_status& s) {
  std::lock_guard lock(status_mutex_);
  status_[key] = s;
}

void supervisor::forget(const std::string& key) {
  std::lock_guard lock(status_mutex_);
  status_.erase(key);
}

std::vector<link_status> supervisor::status() const {
  std::lock_guard lock(status_mutex_);
  std::vector<link_status> out;
  for (const auto& [k, s] : status_) out.push_back(s);
  return out;
}

void supervisor::reconcile() {
  if (stopping_) return;
  // The counts move with every message; the status pages read them from here, once a second.
  {
    std::lock_guard lock(status_mutex_);
    for (const auto& [key, r] : running_)
      if (auto it = status_.find(key); it != status_.end())
        it->second.forwarded = r.l ? r.l->status().forwarded : r.s->status().forwarded;
  }
  auto params = store_.parameters();
  auto policies = store_.policies();
  // The shovels wanted.
  std::map<std::string, std::pair<std::string, parameter>> want_shovels;  // key -> (config, p)
  for (const auto& p : params)
    if (p.component == "shovel" && vhosts_.find(p.vhost))
      want_shovels.emplace("shovel\n" + p.vhost + "\n" + p.name, std::make_pair(p.value.dump(), p));
  // Federation links need each vhost's exchanges, read on its home worker; the rest of the
  // pass continues when they are back (vhosts without a federation policy are not asked).
  std::set<std::string> fed_vhosts;
  for (const auto& p : policies)
    if (p.definition.contains("federation-upstream") ||
        p.definition.contains("federation-upstream-set") ||
        p.definition.contains("federation-upstream-pattern"))
      fed_vhosts.insert(p.vhost);
  struct vhost_objects {
    std::string vhost;
    std::vector<broker::exchange_settings> exchanges;
    std::vector<broker::exchange_settings> queues;  // name, durable, auto-delete, arguments
  };
  struct gather {
    std::vector<vhost_objects> per_vhost;
    size_t left = 0;
  };
  auto g = std::make_shared<gather>();
  auto finish = [this, g, params, policies, want_shovels]() {
    if (stopping_) return;
    struct wanted_link {
      std::string config;
      std::string vhost;
      broker::exchange_settings x;
      upstream_settings up;
      bool is_queue = false;
    };
    std::map<std::string, wanted_link> want_links;
    for (const auto& o : g->per_vhost)
      for (bool queues : {false, true})
        for (const auto& x : queues ? o.queues : o.exchanges) {
          const policy* p = effective_policy(policies, o.vhost, x.name, !queues);
          if (!p) continue;
          for (auto& [uname, value] : upstreams_for(*p, params)) {
            std::string key = std::string(queues ? "queue\n" : "exchange\n") + o.vhost + "\n" +
                              x.name + "\n" + uname;
            std::string config = value.dump() + "\n" + x.type + (x.durable ? "D" : "") +
                                 (x.auto_delete ? "A" : "") + (x.internal ? "I" : "");
            want_links.emplace(
                key, wanted_link{config, o.vhost, x, read_upstream(uname, value, x.name), queues});
          }
        }
    // Stop what is no longer wanted or changed.
    for (auto it = running_.begin(); it != running_.end();) {
      bool keep = false;
      if (auto s = want_shovels.find(it->first); s != want_shovels.end())
        keep = s->second.first == it->second.config;
      if (auto l = want_links.find(it->first); l != want_links.end())
        keep = l->second.config == it->second.config;
      if (keep) {
        ++it;
        continue;
      }
      // A link no longer wanted at all (its policy, upstream or exchange went) cleans up after
      // itself upstream, as RabbitMQ's does; one restarted with new settings keeps its queue.
      if (it->second.l) it->second.l->stop(!want_links.count(it->first));
      if (it->second.s) it->second.s->stop();
      it = running_.erase(it);
    }
    for (auto& [key, w] : want_shovels) {
      if (running_.count(key)) continue;
      auto s = std::make_shared<shovel>(*this, key, w.second.vhost, w.second.name, w.second.value);
      running_[key] = running{w.first, nullptr, s};
      s->start();
    }
    for (auto& [key, w] : want_links) {
      if (running_.count(key)) continue;
      auto l = std::make_shared<link>(*this, key, w.vhost, w.x, w.up, w.is_queue);
      running_[key] = running{w.config, l, nullptr};
      l->start();
    }
  };
  if (fed_vhosts.empty()) return finish();
  for (const auto& name : fed_vhosts) {
    broker::vhost* v = vhosts_.find(name);
    if (!v) continue;
    ++g->left;
  }
  if (g->left == 0) return finish();
  net::worker* back = &home();
  for (const auto& name : fed_vhosts) {
    broker::vhost* v = vhosts_.find(name);
    if (!v) continue;
    pool_.at(v->home_worker()).post([v, back, g, finish] {
      vhost_objects o;
      o.vhost = v->name();
      for (auto& x : v->view_exchanges()) {
        // The federation's own exchanges on this node (as an upstream) are not federated.
        if (x.type == "x-federation-upstream" || x.name.empty()) continue;
        o.exchanges.push_back(broker::exchange_settings{x.name, x.type, x.durable, x.auto_delete,
                                                        x.internal, std::move(x.arguments)});
      }
      // Exclusive queues and the federation's own (x-internal-purpose) are not federated.
      // Limitation: this walks every queue of a vhost with a federation policy once a second.
      for (auto& q : v->view_queues()) {
        if (q.exclusive || q.arguments.find("x-internal-purpose")) continue;
        o.queues.push_back(broker::exchange_settings{q.name, "", q.durable, q.auto_delete, false,
                                                     std::move(q.arguments)});
      }
      back->post([g, o = std::move(o), finish]() mutable {
        g->per_vhost.push_back(std::move(o));
        if (--g->left == 0) finish();
      });
    });
  }
}

}  // namespace warren::federation
