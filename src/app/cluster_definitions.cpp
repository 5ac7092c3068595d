// Exchanges, bindings and queue records replicated through etcd (see cluster_definitions.hpp).
#include "app/cluster_definitions.hpp"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

namespace warren::app {

using nlohmann::json;

// ----------------------------------------------------------------------------- remote_directory

std::optional<std::string> remote_directory::node_of(const std::string& vhost,
                                                     std::string_view name) const {
  auto r = record_of(vhost, name);
  if (!r) return std::nullopt;
  return r->node;
}

std::optional<queue_record> remote_directory::record_of(const std::string& vhost,
                                                        std::string_view name) const {
  std::lock_guard lock(mutex_);
  auto v = queues_.find(vhost);
  if (v == queues_.end()) return std::nullopt;
  auto q = v->second.find(name);
  if (q == v->second.end()) return std::nullopt;
  return q->second;
}

std::vector<queue_record> remote_directory::queues(const std::string* vhost) const {
  std::lock_guard lock(mutex_);
  std::vector<queue_record> out;
  for (const auto& [vh, by_name] : queues_)
    if (!vhost || vh == *vhost)
      for (const auto& [n, q] : by_name) out.push_back(q);
  return out;
}

std::vector<mgmt::binding_def> remote_directory::bindings(const std::string* vhost) const {
  std::lock_guard lock(mutex_);
  std::vector<mgmt::binding_def> out;
  for (const auto& [k, b] : bindings_)
    if (!vhost || b.vhost == *vhost) out.push_back(b);
  return out;
}

void remote_directory::set_queue(const queue_record& q) {
  std::lock_guard lock(mutex_);
  queues_[q.def.vhost][q.def.name] = q;
}

void remote_directory::erase_queue(const std::string& vhost, const std::string& name) {
  std::lock_guard lock(mutex_);
  auto v = queues_.find(vhost);
  if (v == queues_.end()) return;
  v->second.erase(name);
  if (v->second.empty()) queues_.erase(v);
}

void remote_directory::set_binding(const std::string& key, const mgmt::binding_def& b) {
  std::lock_guard lock(mutex_);
  bindings_[key] = b;
}

void remote_directory::erase_binding(const std::string& key) {
  std::lock_guard lock(mutex_);
  bindings_.erase(key);
}

void remote_directory::erase_vhost(const std::string& vhost) {
  std::lock_guard lock(mutex_);
  queues_.erase(vhost);
  std::erase_if(bindings_, [&](const auto& kv) { return kv.second.vhost == vhost; });
}

// ----------------------------------------------------------------------------- sink and tap

// The way from the home workers to the cluster thread; closed by stop(), after which nothing is
// posted to the cluster thread's io_context (which goes before the workers do).
struct cluster_definitions::sink {
  std::mutex mutex;
  boost::asio::io_context* io = nullptr;
  std::weak_ptr<cluster_definitions> owner;

  template <typename F>
  void post(F&& fn) {
    std::lock_guard lock(mutex);
    if (!io) return;
    boost::asio::post(*io, [w = owner, fn = std::forward<F>(fn)]() mutable {
      if (auto self = w.lock()) fn(*self);
    });
  }
};

namespace {

// The broker's own exchanges, declared by every node itself: never written.
bool writable_exchange(std::string_view name) {
  return !name.empty() && !name.starts_with("amq.") && !name.starts_with("warren.");
}

enum class key_kind { queue, exchange, binding, other };

key_kind kind_of(std::string_view key) {
  size_t slash = key.find('/');
  if (slash == std::string_view::npos) return key_kind::other;
  std::string_view rest = key.substr(slash + 1);
  if (rest.starts_with("queues/")) return key_kind::queue;
  if (rest.starts_with("exchanges/")) return key_kind::exchange;
  if (rest.starts_with("bindings/")) return key_kind::binding;
  return key_kind::other;
}

// A binding key's parts: [vhost, "bindings", source, type, destination, routing key, args].
std::vector<std::string_view> key_parts(std::string_view key) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t slash = key.find('/', start);
    out.push_back(key.substr(start, slash == std::string_view::npos ? key.npos : slash - start));
    if (slash == std::string_view::npos) return out;
    start = slash + 1;
  }
}

// Whether the binding `key` goes with the removed exchange or queue `d`.
bool binding_goes_with(std::string_view key, const definition& d) {
  auto p = key_parts(key);
  if (p.size() != 7 || p[1] != "bindings") return false;
  if (auto* x = std::get_if<mgmt::exchange_def>(&d)) {
    std::string n = percent_encode(x->name);
    return p[2] == n || (p[3] == "exchange" && p[4] == n);
  }
  if (auto* q = std::get_if<queue_record>(&d))
    return p[3] == "queue" && p[4] == percent_encode(q->def.name);
  return false;
}

const std::string& vhost_of(const definition& d) {
  if (auto* x = std::get_if<mgmt::exchange_def>(&d)) return x->vhost;
  if (auto* q = std::get_if<queue_record>(&d)) return q->def.vhost;
  return std::get<mgmt::binding_def>(d).vhost;
}

}  // namespace

// One per tapped vhost, on its home worker: turns the vhost's routing changes into definitions
// and posts them to the cluster thread, one batch per turn of the worker.
struct cluster_definitions::tap : std::enable_shared_from_this<tap> {
  broker::vhost* v = nullptr;
  net::worker* home = nullptr;
  std::shared_ptr<sink> out;
  std::string node;
  bool from_etcd = false;  // set while actions from etcd run
  bool flush_posted = false;
  std::map<broker::dest_id, std::string> queue_names;
  struct item {
    local_change c;
    broker::dest_id queue = 0;  // a queue's put: its details are read at the flush
  };
  std::vector<item> batch;

  std::optional<mgmt::binding_def> binding_of(const broker::binding& b) const {
    mgmt::binding_def d;
    d.vhost = v->name();
    d.source = b.source;
    d.routing_key = b.key;
    d.arguments = b.args;
    if (b.dest & broker::routing_table::exchange_bit) {
      const broker::exchange* x = v->routing().exchange_by_id(b.dest);
      if (!x) return std::nullopt;
      d.destination = x->name();
      d.to_queue = false;
      return d;
    }
    auto it = queue_names.find(b.dest);
    if (it == queue_names.end()) return std::nullopt;
    // Bindings to exclusive queues live and die with them, here only.
    if (const broker::queue* q = v->inspect_queue(it->second); q && q->settings().exclusive)
      return std::nullopt;
    d.destination = it->second;
    d.to_queue = true;
    return d;
  }

  std::optional<queue_record> record_of(const std::string& name, broker::dest_id id) const {
    const broker::queue* q = v->inspect_queue(name);
    if (!q || q->id() != id) return std::nullopt;
    const auto& s = q->settings();
    return queue_record{mgmt::queue_def{v->name(), s.name, s.durable, s.auto_delete, s.arguments},
                        node, s.exclusive};
  }

  void observe(const broker::routing_change& c) {
    item it;
    it.c.from_etcd = from_etcd;
    std::visit(
        [&](const auto& ch) {
          using T = std::decay_t<decltype(ch)>;
          if constexpr (std::is_same_v<T, broker::exchange_added>) {
            if (!writable_exchange(ch.settings.name)) return;
            const auto& s = ch.settings;
            it.c.d = mgmt::exchange_def{v->name(),     s.name,     s.type,     s.durable,
                                        s.auto_delete, s.internal, s.arguments};
            batch.push_back(std::move(it));
          } else if constexpr (std::is_same_v<T, broker::exchange_removed>) {
            if (!writable_exchange(ch.name)) return;
            it.c.put = false;
            it.c.d = mgmt::exchange_def{v->name(), ch.name, {}, {}, {}, {}, {}};
            batch.push_back(std::move(it));
          } else if constexpr (std::is_same_v<T, broker::binding_added> ||
                               std::is_same_v<T, broker::binding_removed>) {
            auto b = binding_of(ch.b);
            if (!b) return;
            it.c.put = std::is_same_v<T, broker::binding_added>;
            it.c.d = std::move(*b);
            batch.push_back(std::move(it));
          } else if constexpr (std::is_same_v<T, broker::queue_added>) {
            queue_names[ch.id] = ch.name;
            it.c.d = queue_record{mgmt::queue_def{v->name(), ch.name, {}, {}, {}}, node};
            it.queue = ch.id;
            batch.push_back(std::move(it));
          } else if constexpr (std::is_same_v<T, broker::queue_removed>) {
            queue_names.erase(ch.id);
            it.c.put = false;
            it.c.d = queue_record{mgmt::queue_def{v->name(), ch.name, {}, {}, {}}, node};
            batch.push_back(std::move(it));
          }
        },
        c);
    if (!batch.empty() && !flush_posted) {
      flush_posted = true;
      home->post([t = shared_from_this()] { t->flush(); });
    }
  }

  // The batch to the cluster thread. A queue's record is read now that its declare is done (the
  // observer is told of it before the queue is in place); one gone again by now (an exclusive
  // queue, or one deleted in the same turn) is left out, its removal follows in the batch.
  void flush() {
    flush_posted = false;
    if (batch.empty()) return;
    std::vector<local_change> changes;
    changes.reserve(batch.size());
    for (auto& it : batch) {
      if (it.queue) {
        auto r = record_of(std::get<queue_record>(it.c.d).def.name, it.queue);
        if (!r) continue;
        it.c.d = std::move(*r);
      }
      changes.push_back(std::move(it.c));
    }
    batch.clear();
    out->post([t = shared_from_this(), changes = std::move(changes)](
                  cluster_definitions& d) mutable { d.on_local(*t, std::move(changes)); });
  }

  // Everything the vhost has now, as puts.
  std::vector<local_change> snapshot() {
    std::vector<local_change> all;
    for (const auto& [name, x] : v->routing().exchanges()) {
      if (!writable_exchange(name)) continue;
      const auto& s = x->settings();
      all.push_back({false, true,
                     mgmt::exchange_def{v->name(), s.name, s.type, s.durable, s.auto_delete,
                                        s.internal, s.arguments}});
    }
    for (const auto& q : v->view_queues()) {
      auto id = v->routing().queue_id(q.name);
      if (!id) continue;
      queue_names[*id] = q.name;
      if (auto r = record_of(q.name, *id)) all.push_back({false, true, std::move(*r)});
    }
    for (const auto& b : v->routing().bindings())
      if (auto d = binding_of(b)) all.push_back({false, true, std::move(*d)});
    return all;
  }
};

// ----------------------------------------------------------------------------- cluster thread

cluster_definitions::cluster_definitions(std::shared_ptr<cluster::etcd_client> client,
                                         std::string cluster, std::string node,
                                         broker::vhost_registry& vhosts, net::worker_pool& pool)
    : client_(std::move(client)),
      prefix_(fmt::format("/warren/{}/definitions/", cluster)),
      node_(std::move(node)),
      vhosts_(vhosts),
      pool_(pool),
      sink_(std::make_shared<sink>()),
      directory_(std::make_shared<remote_directory>()) {}

void cluster_definitions::start() {
  {
    std::lock_guard lock(sink_->mutex);
    sink_->io = &client_->io();
    sink_->owner = weak_from_this();
  }
  for (const auto& name : vhosts_.names()) install_tap(name);
  mirror_ = std::make_shared<cluster::prefix_mirror>(
      client_, prefix_, [w = weak_from_this()](const cluster::prefix_mirror::items_map& items) {
        if (auto self = w.lock()) self->on_mirror(items);
      });
  mirror_->start();
}

void cluster_definitions::stop() {
  {
    std::lock_guard lock(sink_->mutex);
    sink_->io = nullptr;
  }
  if (mirror_) mirror_->stop();
}

void cluster_definitions::vhost_created(const std::string& name) {
  sink_->post([name](cluster_definitions& d) { d.install_tap(name); });
}

void cluster_definitions::vhost_deleted(const std::string& name, bool here) {
  sink_->post([name, here](cluster_definitions& d) {
    d.taps_.erase(name);
    d.ready_.erase(name);
    std::string vp = vhost_key_prefix(name);
    auto in_vhost = [&](const std::string& k) { return k.starts_with(vp); };
    std::erase_if(d.local_, [&](const auto& kv) { return in_vhost(kv.first); });
    std::erase_if(d.known_, in_vhost);
    d.directory_->erase_vhost(name);
    if (here)
      d.client_->delete_range(d.abs(vp), cluster::prefix_end(d.abs(vp)),
                              [name](const std::string& err) {
                                if (!err.empty())
                                  spdlog::error(
                                      "cluster: the definitions of deleted vhost '{}' were not "
                                      "deleted from etcd: {}",
                                      name, err);
                              });
  });
}

void cluster_definitions::install_tap(const std::string& name) {
  if (taps_.count(name)) return;
  broker::vhost* v = vhosts_.find(name);
  if (!v) return;
  auto t = std::make_shared<tap>();
  t->v = v;
  t->home = &pool_.at(v->home_worker());
  t->out = sink_;
  t->node = node_;
  taps_[name] = t;
  t->home->post([t, dir = directory_, name, locate = locate_, secret = secret_,
                 liveness = liveness_] {
    auto chained = t->v->routing_observer();
    t->v->set_routing_observer([t, chained](const broker::routing_change& c) {
      if (chained) chained(c);
      t->observe(c);
    });
    t->v->set_remote_queue_lookup(
        [dir, name, locate](std::string_view q) -> std::optional<broker::vhost::remote_queue_info> {
          auto r = dir->record_of(name, q);
          if (!r) return std::nullopt;
          return broker::vhost::remote_queue_info{
              r->node, r->def.durable, locate && locate(r->node).has_value(), r->exclusive};
        });
    auto links = std::make_shared<node_links>(
        t->home->io(), node_links::settings{t->node, name, locate, secret, liveness});
    t->v->set_remote_sender([links](const std::string& node, const broker::message& m,
                                    std::vector<std::string> queues,
                                    const broker::shard_answer* answer) {
      links->send(node, m, std::move(queues), answer);
    });
    t->out->post([t, all = t->snapshot()](cluster_definitions& d) mutable {
      d.on_snapshot(*t, std::move(all));
    });
  });
}

const std::string* cluster_definitions::etcd_value(const std::string& key) const {
  if (!mirror_) return nullptr;
  auto it = mirror_->items().find(abs(key));
  return it == mirror_->items().end() ? nullptr : &it->second.value;
}

// The tap of the vhost now of that name: not one of a vhost deleted since (a vhost of the same
// name may have been created again).
bool cluster_definitions::current(const tap& t) const {
  auto it = taps_.find(t.v->name());
  return it != taps_.end() && it->second.get() == &t;
}

void cluster_definitions::on_snapshot(const tap& t, std::vector<local_change> all) {
  if (!current(t)) return;
  const std::string& vhost = t.v->name();
  std::string vp = vhost_key_prefix(vhost);
  std::erase_if(local_, [&](const auto& kv) { return kv.first.starts_with(vp); });
  for (const auto& c : all) local_[definition_key(c.d)] = definition_value(c.d);
  ready_.insert(vhost);
  if (!synced_once_) return;
  std::vector<std::string> keys;
  for (const auto& [k, v] : local_)
    if (k.starts_with(vp)) keys.push_back(k);
  for (auto it = mirror_->items().lower_bound(abs(vp)); it != mirror_->items().end(); ++it) {
    if (!it->first.starts_with(abs(vp))) break;
    keys.push_back(it->first.substr(prefix_.size()));
  }
  reconcile_all(keys);
}

std::vector<std::string> cluster_definitions::drop_local_bindings(const definition& d) {
  std::vector<std::string> dropped;
  if (std::holds_alternative<mgmt::binding_def>(d)) return dropped;
  std::string bp = vhost_key_prefix(vhost_of(d)) + "bindings/";
  for (auto it = local_.lower_bound(bp); it != local_.end() && it->first.starts_with(bp);) {
    if (binding_goes_with(it->first, d)) {
      dropped.push_back(it->first);
      it = local_.erase(it);
    } else {
      ++it;
    }
  }
  return dropped;
}

void cluster_definitions::on_local(const tap& t, std::vector<local_change> changes) {
  if (!current(t)) return;
  const std::string& vhost = t.v->name();
  bool write = synced_once_ && ready_.count(vhost);
  for (auto& c : changes) {
    std::string key = definition_key(c.d);
    if (!c.put) {
      std::optional<std::string> was;
      if (auto it = local_.find(key); it != local_.end()) {
        was = std::move(it->second);
        local_.erase(it);
      }
      auto dropped = drop_local_bindings(c.d);
      if (!c.from_etcd && write) {
        send_puts();  // in order: the puts before this delete go first
        write_delete(key, c.d, dropped, was ? &*was : nullptr);
      }
      continue;
    }
    std::string value = definition_value(c.d);
    local_[key] = value;
    if (c.from_etcd || !write) continue;
    const std::string* ev = etcd_value(key);
    // Equal to etcd's: nothing to write, unless a write of ours is still on its way (then the
    // mirror may show a value that our next write, a delete, is about to change).
    if (ev && *ev == value && !pending_.count(key)) continue;
    // This node's own record of a queue, changed (deleted and declared again differently while
    // the old record's deletion had not reached the mirror): replaced. With a write of ours still
    // pending, the mirror is behind it, and our last write was the delete: create-if-absent.
    const std::string* old = nullptr;
    if (ev && std::holds_alternative<queue_record>(c.d) && !pending_.count(key))
      if (auto e = parse_definition(key, *ev); e && std::get<queue_record>(*e).node == node_)
        old = ev;
    // Pending from now: a reconcile meanwhile must not act on etcd's older state of the key.
    ++pending_[key].in_flight;
    queued_puts_.push_back({key, value, old ? std::optional<std::string>(*old) : std::nullopt});
  }
  // While a batch is on its way, the next one gathers (a burst of declares, one per client
  // round trip, then goes in a few txns instead of one each).
  if (put_batches_in_flight_ == 0) send_puts();
}

void cluster_definitions::send_puts() {
  if (!queued_puts_.empty()) write_puts(queued_puts_);
}

// Each item's key is pending already (counted once in in_flight).
void cluster_definitions::write_puts(std::vector<put_item>& puts) {
  // A burst of declares (thousands of queues at start-up) would be as many txns one after the
  // other; instead one txn holds up to `chunk` of them, each its own nested txn (etcd 3.3+) with
  // its own compare, so that one conflict does not fail the others. A key appears once per txn
  // (etcd refuses duplicates), and etcd's --max-txn-ops (128) bounds the size.
  constexpr size_t chunk = 100;
  size_t i = 0;
  while (i < puts.size()) {
    std::set<std::string> seen;
    size_t j = i;
    while (j < puts.size() && j - i < chunk && seen.insert(puts[j].key).second) ++j;
    ++put_batches_in_flight_;
    if (j - i == 1) {
      const auto& p = puts[i];
      write_put(p.key, p.value, p.old ? &*p.old : nullptr, true);
    } else {
      json ops = json::array();
      std::vector<std::string> keys;
      for (size_t k = i; k < j; ++k) {
        const auto& p = puts[k];
        std::string a = abs(p.key);
        json cmp = p.old ? cluster::cmp_value_equal(a, *p.old) : cluster::cmp_version_equal(a, 0);
        ops.push_back({{"request_txn",
                        {{"compare", json::array({cmp})},
                         {"success", json::array({cluster::op_put(a, p.value)})},
                         {"failure", json::array({cluster::op_range(a)})}}}});
        keys.push_back(p.key);
      }
      spdlog::debug("cluster: writing {} definitions in one txn", keys.size());
      client_->call(
          "/v3/kv/txn", cluster::txn_request(json::array(), std::move(ops), json::array()),
          [w = weak_from_this(), keys](const std::string& err, const json& answer) {
            auto self = w.lock();
            if (!self) return;
            std::string perr;
            auto outer = err.empty() ? cluster::parse_txn(answer, perr) : std::nullopt;
            const json* responses = nullptr;
            if (outer)
              if (auto it = answer.find("responses");
                  it != answer.end() && it->is_array() && it->size() == keys.size())
                responses = &*it;
            for (size_t k = 0; k < keys.size(); ++k) {
              int64_t rev = 0;
              if (responses) {
                const json& r = (*responses)[k];
                auto nested = r.find("response_txn");
                std::string e;
                auto t = nested != r.end() ? cluster::parse_txn(*nested, e) : std::nullopt;
                if (t && t->succeeded)
                  rev = outer->revision;
                else if (t && !t->ranges.empty() && !t->ranges[0].kvs.empty())
                  rev = t->ranges[0].kvs[0].mod_revision;
              }
              std::string why = err.empty() && !outer ? "unexpected answer: " + perr : err;
              self->written(keys[k], why, rev);
            }
            self->batch_done();
          });
    }
    i = j;
  }
  puts.clear();
}

void cluster_definitions::batch_done() {
  if (--put_batches_in_flight_ == 0) send_puts();
}

void cluster_definitions::write_put(const std::string& key, const std::string& value,
                                    const std::string* old, bool batched) {
  std::string k = abs(key);
  json compare =
      json::array({old ? cluster::cmp_value_equal(k, *old) : cluster::cmp_version_equal(k, 0)});
  spdlog::debug("cluster: writing {}{}", key, old ? " (replacing)" : "");
  if (!batched) ++pending_[key].in_flight;
  client_->txn(std::move(compare), json::array({cluster::op_put(k, value)}),
               json::array({cluster::op_range(k)}),
               [w = weak_from_this(), key, batched](const std::string& err, cluster::txn_result r) {
                 auto self = w.lock();
                 if (!self) return;
                 if (batched) self->batch_done();
                 int64_t rev = 0;
                 if (err.empty()) {
                   if (r.succeeded)
                     rev = r.revision;
                   else if (!r.ranges.empty() && !r.ranges[0].kvs.empty())
                     rev = r.ranges[0].kvs[0].mod_revision;  // etcd's value decides: wait for it
                 }
                 self->written(key, err, rev);
               });
}

void cluster_definitions::write_delete(const std::string& key, const definition& d,
                                       const std::vector<std::string>& also,
                                       const std::string* was) {
  std::string k = abs(key);
  json compare;
  bool main_key = true;
  if (std::holds_alternative<queue_record>(d)) {
    // Only this node's own record: another node's queue of that name is not this one's to end.
    // The value this node wrote last (its put may still be on its way: the client sends in
    // order, so the put comes first), else etcd's if it is this node's.
    const std::string* mine = was;
    if (!mine)
      if (const std::string* ev = etcd_value(key))
        if (auto e = parse_definition(key, *ev); e && std::get<queue_record>(*e).node == node_)
          mine = ev;
    if (mine)
      compare = json::array({cluster::cmp_value_equal(k, *mine)});
    else
      main_key = false;  // not ours: only the bindings below
  } else {
    compare = json::array({cluster::cmp_version_greater(k, 0)});
  }
  if (auto* x = std::get_if<mgmt::exchange_def>(&d); x && still_bound_elsewhere(key, *x)) {
    // An auto-delete exchange goes when its last binding goes, but this node sees only the
    // bindings to its own queues: with bindings to other nodes' queues left in etcd, it stays
    // the cluster's, and comes back here.
    spdlog::info(
        "cluster: auto-delete exchange '{}' in vhost '{}' still has bindings to other nodes' "
        "queues; kept",
        x->name, x->vhost);
    reconcile_all({key});
    return;
  }
  json ops = json::array();
  if (main_key) ops.push_back(cluster::op_delete(k));
  // This node's bindings that went with it, some perhaps still on their way to etcd (the client
  // sends in order, so their puts come first), and etcd's.
  std::set<std::string> gone;
  for (const auto& b : also) gone.insert(abs(b));
  if (!std::holds_alternative<mgmt::binding_def>(d)) {
    // The bindings that went with it, as etcd has them (other nodes' bindings to their own
    // queues from a deleted exchange too: they lost them as well when they applied the delete).
    std::string bp = abs(vhost_key_prefix(vhost_of(d)) + "bindings/");
    for (auto it = mirror_->items().lower_bound(bp);
         it != mirror_->items().end() && it->first.starts_with(bp); ++it)
      if (binding_goes_with(it->first.substr(prefix_.size()), d)) gone.insert(it->first);
  }
  // Each key deleted is pending like the main one: etcd's stale value of a binding (its put
  // landed, its delete not yet seen) must not be applied back here meanwhile.
  // The bindings go in either branch: when the exchange or record is no longer there (or not
  // ours), this node's bindings that went with it are still to delete.
  std::vector<std::string> keys;
  if (main_key) keys.push_back(key);
  json bindings_only = json::array();
  for (const auto& b : gone) {
    ops.push_back(cluster::op_delete(b));
    bindings_only.push_back(cluster::op_delete(b));
    keys.push_back(b.substr(prefix_.size()));
  }
  if (ops.empty()) return;
  if (!main_key) compare = json::array();
  spdlog::debug("cluster: deleting {}{} and {} bindings", key, main_key ? "" : " (not ours)",
                gone.size());
  for (const auto& x : keys) ++pending_[x].in_flight;
  // The raw answer, for the count of keys deleted: a txn that deleted nothing leaves no event
  // for the mirror to wait for.
  client_->call("/v3/kv/txn",
                cluster::txn_request(std::move(compare), std::move(ops), std::move(bindings_only)),
                [w = weak_from_this(), keys](const std::string& err, const json& answer) {
                  auto self = w.lock();
                  if (!self) return;
                  int64_t rev = 0;
                  std::string perr;
                  if (err.empty())
                    if (auto r = cluster::parse_txn(answer, perr)) {
                      int64_t deleted = 0;
                      if (auto it = answer.find("responses"); it != answer.end() && it->is_array())
                        for (const auto& x : *it)
                          if (auto d = x.find("response_delete_range"); d != x.end())
                            if (auto n = d->find("deleted"); n != d->end() && n->is_string()) {
                              // int64 fields are JSON strings in the gateway's answers
                              const std::string& t = n->get_ref<const std::string&>();
                              int64_t v = 0;
                              std::from_chars(t.data(), t.data() + t.size(), v);
                              deleted += v;
                            }
                      if (deleted > 0) rev = r->revision;
                    }
                  for (const auto& x : keys) self->written(x, err, rev);
                });
}

bool cluster_definitions::still_bound_elsewhere(const std::string& key,
                                                const mgmt::exchange_def& x) const {
  const std::string* ev = etcd_value(key);
  if (!ev) return false;
  auto e = parse_definition(key, *ev);
  if (!e || !std::get<mgmt::exchange_def>(*e).auto_delete) return false;
  std::string bp = abs(vhost_key_prefix(x.vhost) + "bindings/" + percent_encode(x.name) + "/");
  for (auto it = mirror_->items().lower_bound(bp);
       it != mirror_->items().end() && it->first.starts_with(bp); ++it) {
    auto b = parse_definition(it->first.substr(prefix_.size()), it->second.value);
    if (!b || !std::get<mgmt::binding_def>(*b).to_queue) continue;
    queue_record probe{mgmt::queue_def{x.vhost, std::get<mgmt::binding_def>(*b).destination}, {}};
    std::string qk = definition_key(probe);
    if (const std::string* qv = etcd_value(qk))
      if (auto q = parse_definition(qk, *qv); q && std::get<queue_record>(*q).node != node_)
        return true;
  }
  return false;
}

void cluster_definitions::written(const std::string& key, const std::string& err, int64_t rev) {
  if (!err.empty()) spdlog::error("cluster: definition {} not written to etcd: {}", key, err);
  auto it = pending_.find(key);
  if (it == pending_.end()) return;
  --it->second.in_flight;
  it->second.rev = std::max(it->second.rev, rev);
  if (it->second.in_flight > 0) return;
  // Nothing to wait for (a failed write, or a delete of what was not there): etcd's state
  // stands, and is applied at the key's next change or the next whole read.
  if (it->second.rev == 0) {
    pending_.erase(it);
    return;
  }
  if (it->second.rev <= mirror_->revision()) {
    pending_.erase(it);
    reconcile_all({key});
    return;
  }
  waiting_.emplace(it->second.rev, key);
}

void cluster_definitions::on_mirror(const cluster::prefix_mirror::items_map& items) {
  bool first = !synced_once_;
  synced_once_ = true;
  std::vector<std::string> keys;
  if (mirror_->changed_all()) {
    std::set<std::string> all;
    for (const auto& [k, kv] : items) all.insert(k.substr(prefix_.size()));
    for (const auto& [k, v] : local_) all.insert(k);
    for (const auto& k : known_) all.insert(k);  // deleted while the watch was lost
    keys.assign(all.begin(), all.end());
    if (first)
      spdlog::info("cluster: {} definitions in etcd, {} here; joining them (the union)",
                   items.size(), local_.size());
  } else {
    for (const auto& k : mirror_->changed()) keys.push_back(k.substr(prefix_.size()));
  }
  // Keys whose last write the mirror has now reached, in revision order (not a walk over every
  // pending key per event: a burst of declares has thousands pending). An entry whose key was
  // written again since is stale and skipped; the newer write queued its own entry.
  while (!waiting_.empty() && waiting_.begin()->first <= mirror_->revision()) {
    std::string key = std::move(waiting_.begin()->second);
    waiting_.erase(waiting_.begin());
    auto it = pending_.find(key);
    if (it == pending_.end() || it->second.in_flight > 0 || it->second.rev > mirror_->revision())
      continue;
    pending_.erase(it);
    keys.push_back(std::move(key));
  }
  reconcile_all(keys);
}

void cluster_definitions::reconcile_all(const std::vector<std::string>& keys) {
  // Queue records first, so that a binding's destination is known; exchanges before bindings.
  std::vector<std::string> sorted(keys);
  auto rank = [](const std::string& k) { return int(kind_of(k)); };
  std::stable_sort(sorted.begin(), sorted.end(),
                   [&](const std::string& a, const std::string& b) { return rank(a) < rank(b); });
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  for (const auto& k : sorted) reconcile(k);
  run_actions();
}

// Makes this node's copy of `key` agree with etcd's:
//
// | etcd      | here      | exchange or binding                      | queue record             |
// | --------- | --------- | ---------------------------------------- | ------------------------ |
// | V         | V         | nothing                                  | nothing                  |
// | V         | none      | declared here                            | another node's: listed   |
// |           |           |                                          | and refused here; this   |
// |           |           |                                          | node's: a stale record,  |
// |           |           |                                          | deleted                  |
// | V         | W         | exchange: etcd's replaces ours (logged)  | another node's: ours     |
// |           |           |                                          | stays unrecorded (logged)|
// | none      | V         | deleted in etcd (seen there before):     | seen there before: left  |
// |           |           | deleted here; never seen: written (union)| (its vhost goes); never  |
// |           |           |                                          | seen: written            |
//
// A key with this node's write in flight, or its echo not yet back, is left alone.
void cluster_definitions::reconcile(const std::string& key) {
  key_kind kind = kind_of(key);
  if (kind == key_kind::other) return;
  auto vh = key_vhost(key);
  if (!vh || !ready_.count(*vh)) return;
  if (pending_.count(key) || applying_.count(key)) return;
  const std::string* ev = etcd_value(key);
  auto lit = local_.find(key);
  const std::string* lv = lit == local_.end() ? nullptr : &lit->second;
  std::optional<definition> e;
  if (ev) {
    e = parse_definition(key, *ev);
    if (!e) {
      if (conflicts_logged_.insert(key).second)
        spdlog::error("cluster: etcd key {} is not a definition; ignored", abs(key));
      return;
    }
    known_.insert(key);
  }

  if (kind == key_kind::queue) {
    if (e && std::get<queue_record>(*e).node != node_) {
      const auto& r = std::get<queue_record>(*e);
      directory_->set_queue(r);
      remote_queue_changed(*vh, r.def.name, r.node);
      if (lv && conflicts_logged_.insert(key).second)
        spdlog::error(
            "cluster: queue '{}' in vhost '{}' exists here and on node '{}', which recorded it "
            "first; this node's stays local and unlisted elsewhere (delete one of them)",
            r.def.name, r.def.vhost, r.node);
      return;
    }
    if (!e) {
      // Forget a remote record that went (its name is free here again).
      auto p = key_parts(key);
      if (p.size() == 3)
        if (auto n = percent_decode(p[2])) {
          directory_->erase_queue(*vh, *n);
          remote_queue_changed(*vh, *n, std::nullopt);
        }
    }
    if (e && !lv) {
      write_delete(key, *e);  // our own record of a queue we no longer have
    } else if (lv && !ev && known_.count(key)) {
      // Our record, deleted in etcd by someone else: its vhost is being deleted (or an operator
      // did it); not written back, which would outlive the vhost.
    } else if (lv && (!ev || *ev != *lv)) {
      write_put(key, *lv, ev);
    }
    if (!ev) known_.erase(key);
    return;
  }

  if (kind == key_kind::binding && e) {
    const auto& b = std::get<mgmt::binding_def>(*e);
    if (b.to_queue) {
      queue_record probe{mgmt::queue_def{b.vhost, b.destination, {}, {}, {}}, {}};
      if (const std::string* qv = etcd_value(definition_key(probe))) {
        auto q = parse_definition(definition_key(probe), *qv);
        if (q && std::get<queue_record>(*q).node != node_) {
          // Bound to another node's queue: listed for export, and applied here, where
          // publishes are routed to that node (vhost::add_remote_queue); never written back.
          directory_->set_binding(key, b);
          if (remote_bound_.emplace(key, b).second)
            actions_[*vh].push_back({action::declare, *e, key});
          return;
        }
      }
    }
  }
  if (kind == key_kind::binding && !e) {
    directory_->erase_binding(key);
    if (auto rb = remote_bound_.find(key); rb != remote_bound_.end()) {
      actions_[*vh].push_back({action::remove, rb->second, key});
      remote_bound_.erase(rb);
      return;
    }
  }

  if (ev && lv && *ev == *lv) return;
  if (e && !lv) {
    actions_[*vh].push_back({action::declare, *e, key});
    return;
  }
  if (e && lv) {
    if (conflicts_logged_.insert(key).second)
      spdlog::warn(
          "cluster: definition {} differs from etcd's ({} here, {} in etcd): etcd's "
          "is the cluster's, and replaces this node's",
          key, *lv, *ev);
    actions_[*vh].push_back({action::replace, *e, key});
    return;
  }
  if (!ev && lv) {
    if (known_.count(key)) {
      known_.erase(key);
      auto d = parse_definition(key, *lv);
      if (d) actions_[*vh].push_back({action::remove, std::move(*d), key});
      return;
    }
    write_put(key, *lv);  // the union: what etcd never had
    return;
  }
  known_.erase(key);
}

void cluster_definitions::remote_queue_changed(const std::string& vhost, const std::string& name,
                                               std::optional<std::string> node) {
  auto t = taps_.find(vhost);
  if (t == taps_.end()) return;
  t->second->home->post([t = t->second, name, node = std::move(node)] {
    if (node)
      t->v->add_remote_queue(name, *node);
    else
      t->v->remove_remote_queue(name);
  });
}

void cluster_definitions::run_actions() {
  for (auto& [vh, list] : actions_) {
    auto t = taps_.find(vh);
    if (t == taps_.end() || list.empty()) continue;
    std::vector<std::string> keys;
    for (const auto& a : list) {
      keys.push_back(a.key);
      spdlog::debug("cluster: applying {} ({})", a.key,
                    a.what == action::declare  ? "declare"
                    : a.what == action::remove ? "remove"
                                               : "replace");
      const std::string* ev = etcd_value(a.key);
      applying_[a.key] = ev ? std::optional<std::string>(*ev) : std::nullopt;
    }
    t->second->home->post([t = t->second, list = std::move(list), keys = std::move(keys)] {
      broker::vhost& v = *t->v;
      t->from_etcd = true;
      for (const auto& a : list) {
        std::optional<broker::error> err;
        if (auto* x = std::get_if<mgmt::exchange_def>(&a.d)) {
          broker::exchange_settings s{x->name,        x->type,     x->durable,
                                      x->auto_delete, x->internal, x->arguments};
          if (a.what != action::declare) err = v.delete_exchange(x->name, false);
          if (!err && a.what != action::remove) err = v.declare_exchange(s, false);
        } else if (auto* b = std::get_if<mgmt::binding_def>(&a.d)) {
          auto dest = b->to_queue ? v.queue_dest(b->destination, 0, false)
                                  : v.exchange_dest(b->destination);
          if (b->to_queue && std::holds_alternative<broker::error>(dest))
            if (auto id = v.remote_queue_id(b->destination)) dest = *id;
          if (auto* e = std::get_if<broker::error>(&dest))
            err = *e;
          else if (a.what == action::remove)
            err =
                v.unbind(b->source, std::get<broker::dest_id>(dest), b->routing_key, b->arguments);
          else
            err = v.bind(b->source, std::get<broker::dest_id>(dest), b->routing_key, b->arguments);
        }
        // Removing what is gone already (a binding that went with its exchange) is done.
        if (err && a.what == action::remove && err->code == broker::error_code::not_found)
          err.reset();
        if (err)
          spdlog::warn("cluster: definition {} from etcd not applied in vhost '{}': {}", a.key,
                       v.name(), err->text);
      }
      t->from_etcd = false;
      t->flush();
      t->out->post([keys](cluster_definitions& d) { d.on_applied(keys); });
    });
  }
  actions_.clear();
}

void cluster_definitions::on_applied(const std::vector<std::string>& keys) {
  std::vector<std::string> again;
  for (const auto& k : keys) {
    auto a = applying_.find(k);
    if (a == applying_.end()) continue;
    // etcd changed while the action ran (the change was not reconciled then): again. (Not when
    // it did not: an action that failed would be tried for ever.)
    const std::string* now = etcd_value(k);
    if (now ? a->second != *now : a->second.has_value()) again.push_back(k);
    applying_.erase(a);
    // An exchange replaced by etcd's lost its bindings here: etcd's are applied again.
    if (kind_of(k) != key_kind::exchange) continue;
    const std::string* ev = etcd_value(k);
    auto d = ev ? parse_definition(k, *ev) : std::nullopt;
    if (!d) continue;
    std::string bp = abs(vhost_key_prefix(vhost_of(*d)) + "bindings/");
    for (auto it = mirror_->items().lower_bound(bp);
         it != mirror_->items().end() && it->first.starts_with(bp); ++it)
      if (std::string rel = it->first.substr(prefix_.size()); binding_goes_with(rel, *d))
        again.push_back(rel);
  }
  if (!again.empty()) reconcile_all(again);
}

}  // namespace warren::app
