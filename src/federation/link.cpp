// A federation link's life: connect, declare, bind, consume, republish; reconnect with backoff.
#include "federation/link.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>

#include "amqp/protocol/field_table.hpp"
#include "amqp/server/convert.hpp"
#include "common/byte_io.hpp"

namespace warren::federation {

namespace protocol = amqp::protocol;
using common::field_array;
using common::field_table;
using common::field_value;

namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const std::string* string_at(const field_table& t, std::string_view key) {
  const field_value* v = t.find(key);
  return v ? std::get_if<std::string>(&v->v) : nullptr;
}

std::string encode(const field_table& t) {
  std::string out;
  common::byte_writer w(out);
  protocol::encode_table(w, t);
  return out;
}

// Puts `entry` first in the array header `key` (rabbit_basic:prepend_table_header).
void prepend(field_table& headers, const std::string& key, field_table entry) {
  field_array arr;
  if (const field_value* old = headers.find(key))
    if (const auto* a = std::get_if<field_array>(&old->v)) arr = *a;
  arr.items.insert(arr.items.begin(), field_value(std::move(entry)));
  headers.set(key, std::move(arr));
}

}  // namespace

upstream_settings read_upstream(const std::string& name, const json& v,
                                const std::string& local_exchange) {
  upstream_settings u;
  u.name = name;
  u.exchange = local_exchange;
  u.queue = local_exchange;
  if (auto it = v.find("uri"); it != v.end()) {
    if (it->is_string())
      u.uris.push_back(it->get<std::string>());
    else if (it->is_array())
      for (const auto& s : *it)
        if (s.is_string()) u.uris.push_back(s.get<std::string>());
  }
  if (v.contains("exchange")) u.exchange = v["exchange"].get<std::string>();
  if (v.contains("queue")) u.queue = v["queue"].get<std::string>();
  if (v.contains("prefetch-count"))
    u.prefetch = uint32_t(std::max(1.0, v["prefetch-count"].get<double>()));
  if (v.contains("reconnect-delay")) u.reconnect_delay = v["reconnect-delay"].get<double>();
  if (v.contains("ack-mode")) u.ack_mode = v["ack-mode"].get<std::string>();
  if (v.contains("trust-user-id")) u.trust_user_id = v["trust-user-id"].get<bool>();
  if (v.contains("max-hops")) u.max_hops = int64_t(v["max-hops"].get<double>());
  if (v.contains("expires")) u.expires = int64_t(v["expires"].get<double>());
  if (v.contains("message-ttl")) u.message_ttl = int64_t(v["message-ttl"].get<double>());
  if (v.contains("resource-cleanup-mode")) u.cleanup = v["resource-cleanup-mode"] != "never";
  return u;
}

link::link(supervisor& sup, std::string key, std::string vhost, broker::exchange_settings local,
           upstream_settings up, bool is_queue)
    : sup_(sup),
      key_(std::move(key)),
      vhost_(std::move(vhost)),
      local_(std::move(local)),
      up_(std::move(up)),
      timer_(sup.home().io()),
      is_queue_(is_queue) {
  status_.type = is_queue_ ? "queue" : "exchange";
  status_.vhost = vhost_;
  status_.name = local_.name;
  status_.upstream = up_.name;
  status_.upstream_exchange = is_queue_ ? up_.queue : up_.exchange;
}

void link::start() {
  if (up_.uris.empty()) return set_state("error", "the upstream has no uri");
  // RabbitMQ picks one of the URIs at random at each connection; the first is as good and
  // keeps the status stable.
  auto parsed = amqp::client::parse_uri(up_.uris.front());
  if (auto* why = std::get_if<std::string>(&parsed)) return set_state("error", *why);
  uri_ = std::get<amqp::client::uri>(parsed);
  status_.uri = uri_->safe;
  if (is_queue_) {
    queue_ = up_.queue;
    status_.internal_queue = queue_;
    return connect();
  }
  // The queue on the upstream (rabbit_federation_exchange_link:upstream_queue_name).
  std::string down_part;
  if (uri_->vhost != vhost_)
    down_part = ":" + vhost_ + ":" + local_.name;
  else if (up_.exchange != local_.name)
    down_part = ":" + local_.name;
  queue_ = "federation: " + up_.exchange + " -> " + sup_.cluster_name() + down_part;
  internal_exchange_ = queue_ + " A";
  status_.internal_queue = queue_;
  connect();
}

void link::stop(bool cleanup) {
  stopped_ = true;
  timer_.cancel();
  // The upstream queue and exchange of an exchange link would otherwise collect messages for a
  // downstream that no longer asks (resource-cleanup-mode "never" keeps them, as RabbitMQ).
  if (cleanup && !is_queue_ && conn_ && conn_->open() && up_.cleanup) {
    protocol::queue_delete qd;
    qd.queue = queue_;
    conn_->call(qd);
    protocol::exchange_delete xd;
    xd.exchange = internal_exchange_;
    conn_->call(xd);
  }
  if (conn_) conn_->close();
  conn_.reset();
  if (running_) sup_.counters().links_running.fetch_sub(1);
  running_ = false;
  sup_.forget(key_);
}

void link::set_state(const std::string& state, const std::string& error) {
  bool run = state == "running";
  if (run != running_) {
    if (run)
      sup_.counters().links_running.fetch_add(1);
    else
      sup_.counters().links_running.fetch_sub(1);
    running_ = run;
  }
  status_.state = state;
  status_.error = error;
  status_.timestamp = now_ms();
  if (!stopped_) sup_.report(key_, status_);
}

void link::connect() {
  if (stopped_) return;
  set_state("starting");
  uint64_t gen = ++generation_;
  bound_.clear();
  consuming_ = false;
  std::weak_ptr<link> weak = shared_from_this();
  amqp::client::events ev;
  ev.ready = [weak, gen] {
    if (auto self = weak.lock(); self && self->generation_ == gen) self->on_ready();
  };
  ev.closed = [weak, gen](const std::string& error) {
    if (auto self = weak.lock(); self && self->generation_ == gen) self->on_closed(error);
  };
  ev.delivered = [weak, gen](amqp::client::delivery&& d) {
    if (auto self = weak.lock(); self && self->generation_ == gen) self->on_delivery(std::move(d));
  };
  conn_ = std::make_shared<amqp::client::connection>(
      sup_.home().io(), *uri_,
      fmt::format("Federation link (upstream: {}, policy applied to {} {})", up_.name,
                  is_queue_ ? "queue" : "exchange", local_.name),
      std::move(ev));
  conn_->start();
}

void link::on_closed(const std::string& error) {
  conn_.reset();
  if (stopped_) return;
  spdlog::warn("federation link {} of exchange '{}' in vhost '{}': {}", up_.name, local_.name,
               vhost_, error.empty() ? "closed" : error);
  set_state("error", error.empty() ? "connection closed" : error);
  retry_later();
}

void link::retry_later() {
  // RabbitMQ waits reconnect-delay between attempts; doubling it up to 8 times that (at most a
  // minute) keeps a long outage from becoming a connection storm.
  double delay = up_.reconnect_delay * double(1 << std::min(attempts_, 3));
  delay = std::min(delay, std::max(60.0, up_.reconnect_delay));
  ++attempts_;
  timer_.expires_after(std::chrono::milliseconds(int64_t(delay * 1000)));
  std::weak_ptr<link> weak = shared_from_this();
  timer_.async_wait([weak](const boost::system::error_code& ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->connect();
  });
}

void link::on_ready() {
  upstream_cluster_.clear();
  if (const std::string* c = string_at(conn_->server_properties(), "cluster_name"))
    upstream_cluster_ = *c;
  auto c = conn_;
  if (is_queue_) {
    std::weak_ptr<link> weak = shared_from_this();
    uint64_t gen = generation_;
    auto declared = [weak, gen](const protocol::method&) {
      auto self = weak.lock();
      if (!self || self->generation_ != gen) return;
      self->attempts_ = 0;
      spdlog::info("federation link {} of queue '{}' in vhost '{}' running ({} on {})",
                   self->up_.name, self->local_.name, self->vhost_, self->queue_, self->uri_->safe);
      self->set_state("running");
      self->poll_queue();
    };
    protocol::queue_declare uq;
    uq.queue = queue_;
    uq.durable = local_.durable;
    uq.auto_delete = local_.auto_delete;
    uq.arguments = local_.arguments;
    if (up_.ack_mode == "no-ack") return c->call(uq, declared);
    c->call(uq);
    protocol::basic_qos qos;
    qos.prefetch_count = uint16_t(std::min<uint32_t>(up_.prefetch, 65535));
    c->call(qos, declared);
    return;
  }
  protocol::exchange_declare x;
  x.exchange = up_.exchange;
  x.type = local_.type;
  x.durable = local_.durable;
  x.auto_delete = local_.auto_delete;
  x.internal = local_.internal;
  x.arguments = local_.arguments;
  c->call(x);
  protocol::queue_declare q;
  q.queue = queue_;
  q.durable = true;
  if (up_.expires) q.arguments.set("x-expires", int64_t(*up_.expires));
  if (up_.message_ttl) q.arguments.set("x-message-ttl", int64_t(*up_.message_ttl));
  q.arguments.set("x-internal-purpose", "federation");
  c->call(q);
  protocol::exchange_declare ix;
  ix.exchange = internal_exchange_;
  ix.type = "x-federation-upstream";
  ix.durable = true;
  ix.internal = true;
  ix.auto_delete = true;
  ix.arguments.set("x-max-hops", int64_t(up_.max_hops));
  ix.arguments.set("x-downstream-name", sup_.cluster_name());
  ix.arguments.set("x-downstream-vhost", vhost_);
  ix.arguments.set("x-internal-purpose", "federation");
  c->call(ix);
  protocol::queue_bind qb;
  qb.queue = queue_;
  qb.exchange = internal_exchange_;
  c->call(qb);
  if (up_.ack_mode != "no-ack") {
    protocol::basic_qos qos;
    qos.prefetch_count = uint16_t(std::min<uint32_t>(up_.prefetch, 65535));
    c->call(qos);
  }
  protocol::basic_consume bc;
  bc.queue = queue_;
  bc.consumer_tag = "federation-link-" + up_.name;
  bc.no_ack = up_.ack_mode == "no-ack";
  std::weak_ptr<link> weak = shared_from_this();
  uint64_t gen = generation_;
  c->call(bc, [weak, gen](const protocol::method&) {
    auto self = weak.lock();
    if (!self || self->generation_ != gen) return;
    self->attempts_ = 0;
    spdlog::info("federation link {} of exchange '{}' in vhost '{}' running ({} on {})",
                 self->up_.name, self->local_.name, self->vhost_, self->up_.exchange,
                 self->uri_->safe);
    self->set_state("running");
    self->poll_bindings();
  });
}

// Reads the local exchange's bindings on the vhost's home worker, every second while running.
void link::poll_bindings() {
  if (stopped_ || !conn_ || !conn_->open()) return;
  broker::vhost* v = sup_.vhosts().find(vhost_);
  if (!v) return;
  std::weak_ptr<link> weak = shared_from_this();
  net::worker* back = &sup_.home();
  std::string name = local_.name;
  uint64_t gen = generation_;
  sup_.pool().at(v->home_worker()).post([v, name, back, weak, gen] {
    binding_set want;
    for (auto& b : v->view_bindings())
      if (b.source == name) {
        std::string enc = encode(b.arguments);
        want.emplace(std::make_pair(b.routing_key, std::move(enc)), std::move(b.arguments));
      }
    back->post([weak, gen, want = std::move(want)]() mutable {
      auto self = weak.lock();
      if (!self || self->generation_ != gen || self->stopped_) return;
      self->sync_bindings(std::move(want));
      self->timer_.expires_after(std::chrono::seconds(1));
      std::weak_ptr<link> w2 = self;
      self->timer_.async_wait([w2, gen](const boost::system::error_code& ec) {
        if (ec) return;
        if (auto s = w2.lock(); s && s->generation_ == gen) s->poll_bindings();
      });
    });
  });
}

// A federated queue pulls from upstream only while it is empty and has consumers of its own
// (RabbitMQ's rabbit_federation_queue:consumer_state_changed), so that messages stay upstream
// for the upstream's consumers otherwise.
void link::poll_queue() {
  if (stopped_ || !conn_ || !conn_->open()) return;
  broker::vhost* v = sup_.vhosts().find(vhost_);
  if (!v) return;
  std::weak_ptr<link> weak = shared_from_this();
  net::worker* back = &sup_.home();
  std::string name = local_.name;
  uint64_t gen = generation_;
  sup_.pool().at(v->home_worker()).post([v, name, back, weak, gen] {
    auto views = v->view_queues(name);
    bool run = !views.empty() && views[0].ready == 0 && views[0].consumers > 0;
    back->post([weak, gen, run] {
      auto self = weak.lock();
      if (!self || self->generation_ != gen || self->stopped_ || !self->conn_) return;
      std::string tag = "federation-link-" + self->up_.name;
      if (run && !self->consuming_) {
        protocol::basic_consume bc;
        bc.queue = self->queue_;
        bc.consumer_tag = tag;
        bc.no_ack = self->up_.ack_mode == "no-ack";
        bc.arguments.set("x-priority", int64_t(-1));
        self->conn_->call(bc);
        self->consuming_ = true;
      } else if (!run && self->consuming_) {
        protocol::basic_cancel cancel;
        cancel.consumer_tag = tag;
        self->conn_->call(cancel);
        self->consuming_ = false;
      }
      self->timer_.expires_after(std::chrono::milliseconds(250));
      std::weak_ptr<link> w2 = self;
      self->timer_.async_wait([w2, gen](const boost::system::error_code& ec) {
        if (ec) return;
        if (auto s = w2.lock(); s && s->generation_ == gen) s->poll_queue();
      });
    });
  });
}

void link::sync_bindings(binding_set want) {
  if (!conn_ || !conn_->open()) return;
  // The arguments sent upstream (rabbit_federation_exchange_link:update_binding): x-bound-from
  // gets our entry first, with the hops a message could still make; none left: not sent.
  auto upstream_args = [&](const field_table& args) -> std::optional<field_table> {
    int64_t hops = up_.max_hops;
    if (const field_value* bf = args.find("x-bound-from"))
      if (const auto* arr = std::get_if<field_array>(&bf->v); arr && !arr->items.empty()) {
        const auto* first = std::get_if<field_table>(&arr->items.front().v);
        int64_t prev = first ? common::table_int(*first, "hops").value_or(0) : 0;
        bool seen = false;
        for (const auto& it : arr->items)
          if (const auto* t = std::get_if<field_table>(&it.v)) {
            const std::string* c = string_at(*t, "cluster-name");
            const std::string* vh = string_at(*t, "vhost");
            seen = seen || (c && *c == upstream_cluster_ && vh && *vh == uri_->vhost);
          }
        hops = seen ? 0 : std::min(prev - 1, up_.max_hops);
      }
    if (hops <= 0) return std::nullopt;
    field_table out = args;
    field_table info;
    info.set("cluster-name", sup_.cluster_name());
    info.set("vhost", vhost_);
    info.set("exchange", vhost_ + ":" + local_.name + " A");
    info.set("hops", int16_t(hops));
    prepend(out, "x-bound-from", std::move(info));
    return out;
  };
  for (auto it = bound_.begin(); it != bound_.end();) {
    if (want.count(it->first)) {
      ++it;
      continue;
    }
    if (auto args = upstream_args(it->second)) {
      protocol::exchange_unbind u;
      u.destination = internal_exchange_;
      u.source = up_.exchange;
      u.routing_key = it->first.first;
      u.arguments = std::move(*args);
      conn_->call(u);
    }
    it = bound_.erase(it);
  }
  for (auto& [k, args] : want) {
    if (bound_.count(k)) continue;
    if (auto up_args = upstream_args(args)) {
      protocol::exchange_bind b;
      b.destination = internal_exchange_;
      b.source = up_.exchange;
      b.routing_key = k.first;
      b.arguments = std::move(*up_args);
      conn_->call(b);
    }
    bound_.emplace(k, args);
  }
}

void link::on_delivery(amqp::client::delivery&& d) {
  bool ack = up_.ack_mode != "no-ack";
  if (!is_queue_ && !broker::federation_should_forward(d.properties.headers, up_.max_hops,
                                                       sup_.cluster_name(), vhost_)) {
    if (ack) conn_->ack(d.tag, false);
    return;
  }
  field_table h = d.properties.headers.value_or(field_table{});
  field_table entry;
  entry.set("uri", uri_->safe);
  entry.set(is_queue_ ? "queue" : "exchange", is_queue_ ? up_.queue : up_.exchange);
  entry.set("redelivered", d.redelivered);
  if (!upstream_cluster_.empty()) entry.set("cluster-name", upstream_cluster_);
  entry.set("vhost", uri_->vhost);
  if (is_queue_) {
    // A queue's messages carry where they were first published, and how often they came
    // through this same upstream queue (rabbit_federation_queue_link:update_headers).
    int64_t visits = 0;
    field_array kept;
    const field_value* old = h.find("x-received-from");
    const auto* been = old ? std::get_if<field_array>(&old->v) : nullptr;
    if (!been) {
      h.set("x-original-exchange", d.exchange);
      h.set("x-original-routing-key", d.routing_key);
    } else {
      for (const auto& item : been->items) {
        const auto* t = std::get_if<field_table>(&item.v);
        const std::string* u = t ? string_at(*t, "uri") : nullptr;
        const std::string* qn = t ? string_at(*t, "queue") : nullptr;
        if (u && *u == uri_->safe && qn && *qn == up_.queue)
          visits = common::table_int(*t, "visit-count").value_or(0);
        else
          kept.items.push_back(item);
      }
      h.set("x-received-from", std::move(kept));
    }
    entry.set("visit-count", int64_t(visits + 1));
  }
  prepend(h, "x-received-from", std::move(entry));
  d.properties.headers = std::move(h);
  if (!up_.trust_user_id) d.properties.user_id.reset();

  auto m = std::make_shared<broker::message>();
  m->exchange = is_queue_ ? std::string() : local_.name;
  m->routing_key = is_queue_ ? local_.name : d.routing_key;
  m->properties = amqp::server::to_broker(std::move(d.properties));
  if (m->properties.expiration) {
    int64_t ms = 0;
    if (broker::parse_expiration(*m->properties.expiration, ms)) m->ttl_ms = ms;
  }
  m->body = std::move(d.body);

  broker::vhost* v = sup_.vhosts().find(vhost_);
  if (!v) return conn_->close();
  if (up_.ack_mode == "on-publish") conn_->ack(d.tag, false);
  bool confirm = up_.ack_mode == "on-confirm";
  std::weak_ptr<link> weak = shared_from_this();
  net::worker* back = &sup_.home();
  uint64_t gen = generation_, tag = d.tag;
  ++status_.forwarded;
  sup_.counters().forwarded.fetch_add(1, std::memory_order_relaxed);
  sup_.pool().at(v->home_worker()).post([v, m = std::move(m), confirm, back, weak, gen, tag] {
    // On-confirm: the upstream ack waits for every shard that took the message (queues on other
    // workers answer on theirs), then for the largest store ticket to be on disk.
    constexpr int64_t unknown = int64_t(1) << 40;  // answers to come, until the home counts them
    struct gather {
      std::atomic<int64_t> left{int64_t(1) << 40};
      std::atomic<uint64_t> ticket{0};
      std::function<void(uint64_t)> done;
      void one(uint64_t t) {
        uint64_t seen = ticket.load();
        while (t > seen && !ticket.compare_exchange_weak(seen, t)) {
        }
        if (left.fetch_sub(1) == 1) done(ticket.load());
      }
    };
    auto g = std::make_shared<gather>();
    broker::shard_answer on_shard = [g](uint64_t t, bool) { g->one(t); };
    uint64_t ticket = 0;
    uint32_t remote = 0;
    auto r = v->publish(m, 0, &ticket, confirm ? &on_shard : nullptr, &remote);
    bool ok = !std::holds_alternative<broker::error>(r);
    std::string why = ok ? std::string() : std::get<broker::error>(r).text;
    if (!confirm && ok) return;
    auto answer = [back, weak, gen, tag, ok, why] {
      back->post([weak, gen, tag, ok, why] {
        auto self = weak.lock();
        if (!self || self->generation_ != gen || !self->conn_) return;
        if (ok) return self->conn_->ack(tag, false);
        // The local exchange refused it (deleted meanwhile): leave it upstream and restart.
        spdlog::warn("federation link {}: cannot publish to '{}': {}", self->up_.name,
                     self->local_.name, why);
        self->conn_->close();
      });
    };
    if (!ok) return answer();
    g->done = [v, answer](uint64_t t) {
      if (t != 0 && v->get_journal())
        v->get_journal()->when_synced(t, answer);  // on the store's thread: answer only posts
      else
        answer();
    };
    g->left.fetch_add(int64_t(remote) + 1 - unknown);
    g->one(ticket);  // the home's part
  });
}

}  // namespace warren::federation
