// A vhost's management side: copies of its objects for the API and metrics, its statistics
// samples, the API's "get messages", and tearing everything down when the vhost is deleted.
// Runs on the vhost's home worker like the rest of the vhost.
#include <fmt/format.h>

#include "broker/vhost.hpp"

namespace warren::broker {

namespace {

void add_counters(queue_counters& sum, const queue_counters& c) {
  sum.publish += c.publish;
  sum.deliver += c.deliver;
  sum.deliver_no_ack += c.deliver_no_ack;
  sum.get += c.get;
  sum.get_no_ack += c.get_no_ack;
  sum.get_empty += c.get_empty;
  sum.redeliver += c.redeliver;
  sum.ack += c.ack;
}

queue_history::values sample_of(uint64_t ready, uint64_t unacked, const queue_counters& c) {
  return {ready, unacked, c.publish, c.deliver_get(), c.ack, c.redeliver};
}

std::array<double, 6> rates_of(const queue_history& h) {
  std::array<double, 6> r{};
  for (size_t s = qs_publish; s < r.size(); ++s) r[s] = h.rate(s);
  // Lengths are rates too in RabbitMQ's *_details (how fast the backlog grows).
  r[qs_ready] = h.rate(qs_ready);
  r[qs_unacked] = h.rate(qs_unacked);
  return r;
}

}  // namespace

void vhost_totals::add(const vhost_totals& o) {
  ready += o.ready;
  unacked += o.unacked;
  ready_bytes += o.ready_bytes;
  unacked_bytes += o.unacked_bytes;
  queues += o.queues;
  exchanges += o.exchanges;
  consumers += o.consumers;
  add_counters(counters, o.counters);
  for (size_t i = 0; i < rates.size(); ++i) rates[i] += o.rates[i];
}

namespace {
std::optional<dedup_view> dedup_view_of(const std::unique_ptr<dedup_filter>& f) {
  if (!f) return std::nullopt;
  return dedup_view{f->cache().size(), f->cache().capacity(), f->dropped,
                    f->cache().memory_bytes()};
}

queue_view view_of(const queue& q, bool with_history) {
  queue_view v;
  const auto& s = q.settings();
  v.name = s.name;
  v.durable = s.durable;
  v.auto_delete = s.auto_delete;
  v.exclusive = s.exclusive;
  v.exclusive_owner = s.exclusive_owner;
  v.arguments = s.arguments;
  v.ready = q.message_count();
  v.ready_bytes = q.message_bytes();
  v.unacked = q.unacked;
  v.unacked_bytes = q.unacked_bytes;
  v.paged = q.paged_count();
  v.consumers = uint32_t(const_cast<queue&>(q).consumers().size());
  v.counters = q.stats;
  v.rates = rates_of(q.history);
  if (with_history) {
    auto h = std::make_shared<queue_history>();
    h->copy_from(q.history);
    v.history = std::move(h);
  }
  // Bookkeeping plus what of the bodies is in memory (paged ones cost only their index's
  // buffers and block list).
  v.memory = sizeof(queue) + q.history.heap_bytes() + (v.ready - v.paged) * 96 +
             q.paged_ram_bytes() +
             (v.ready_bytes - std::min<uint64_t>(v.ready_bytes, q.paged_bytes()));
  v.dedup = dedup_view_of(q.dedup);
  if (v.dedup) v.memory += v.dedup->memory;
  return v;
}
}  // namespace

std::vector<queue_view> vhost::view_queues(std::string_view only, bool with_history) const {
  std::vector<queue_view> out;
  // A twin (a queue living on another shard) is that shard's to show.
  if (!only.empty()) {
    if (const queue* q = find_queue(only); q && !twins_.count(q->id())) {
      out.push_back(view_of(*q, with_history));
      out.back().worker = shard_;
    }
    return out;
  }
  out.reserve(queues_.size());
  for (const auto& [n, q] : queues_)
    if (twins_.empty() || !twins_.count(q->id())) {
      out.push_back(view_of(*q, with_history));
      out.back().worker = shard_;
    }
  return out;
}

size_t vhost::count_queues(const std::function<bool(std::string_view)>& keep) const {
  if (!keep) return queues_.size();
  size_t n = 0;
  for (const auto& [name, q] : queues_) n += keep(name) ? 1 : 0;
  return n;
}

std::vector<queue_view> vhost::view_queues_window(const std::function<bool(std::string_view)>& keep,
                                                  size_t skip, size_t count,
                                                  bool with_history) const {
  std::vector<queue_view> out;
  out.reserve(std::min(count, queues_.size()));
  for (const auto& [name, q] : queues_) {
    if (out.size() == count) break;
    if (keep && !keep(name)) continue;
    if (skip > 0) {
      --skip;
      continue;
    }
    out.push_back(view_of(*q, with_history));
    out.back().worker = shard_;
  }
  return out;
}

namespace {
exchange_view view_of(const exchange& x) {
  exchange_view v;
  const auto& s = x.settings();
  v.name = s.name;
  v.type = s.type;
  v.durable = s.durable;
  v.auto_delete = s.auto_delete;
  v.internal = s.internal;
  v.arguments = s.arguments;
  v.counters = x.counts();
  v.rates = {x.samples.rate(0), x.samples.rate(1)};
  v.dedup = dedup_view_of(x.dedup);
  return v;
}
}  // namespace

std::vector<exchange_view> vhost::view_exchanges() const {
  std::vector<exchange_view> out;
  out.reserve(routing_.exchanges().size());
  for (const auto& [n, x] : routing_.exchanges()) out.push_back(view_of(*x));
  return out;
}

std::optional<exchange_view> vhost::view_exchange(std::string_view name) const {
  if (const exchange* x = find_exchange(name)) return view_of(*x);
  return std::nullopt;
}

std::vector<binding_view> vhost::view_bindings() const {
  std::vector<binding_view> out;
  out.reserve(queues_.size() + routing_.bindings().size());
  for (const auto& [n, q] : queues_) out.push_back({"", n, false, n, {}});
  for (const auto& b : routing_.bindings()) {
    bool to_exchange = (b.dest & exchange_bit) != 0;
    const exchange* x = to_exchange ? exchange_by_id(b.dest) : nullptr;
    const queue* q = to_exchange ? nullptr : queue_by_id(b.dest);
    if (!x && !q) continue;
    out.push_back({b.source, x ? x->name() : q->name(), to_exchange, b.key, b.args});
  }
  return out;
}

std::vector<consumer_view> vhost::view_consumers(std::string_view queue_name) const {
  std::vector<consumer_view> out;
  auto add = [&](const queue& q) {
    bool first = true;
    for (const consumer* c : const_cast<queue&>(q).consumers()) {
      consumer_view& v = out.emplace_back();
      v.tag = c->tag;
      v.queue = q.name();
      v.channel_id = c->channel->id;
      v.ack_required = !c->no_ack;
      v.exclusive = c->exclusive;
      v.prefetch = c->prefetch;
      if (c->priority != 0) v.arguments.set("x-priority", int64_t(c->priority));
      v.active = !q.policy().single_active_consumer || first;
      first = false;
    }
  };
  if (!queue_name.empty()) {
    if (const queue* q = find_queue(queue_name)) add(*q);
    return out;
  }
  for (const auto& [n, q] : queues_) add(*q);
  return out;
}

std::vector<channel_usage> vhost::view_channels() const {
  std::vector<channel_usage> out;
  out.reserve(channels_.size());
  for (const auto& [id, ch] : channels_)
    out.push_back({id, ch.unacked_count, uint32_t(ch.consumers.size()), ch.global_prefetch});
  return out;
}

vhost_totals vhost::totals() const {
  // Up to live_totals_limit queues the walk costs about 2 ms and the totals are live; beyond, a
  // poll every few seconds would stall the worker's messages for tens of ms (100 000 queues:
  // 18 ms), so the totals are those of the last 5 s sample, as RabbitMQ's always are.
  vhost_totals t;
  if (queues_.size() > live_totals_limit) {
    t = sampled_totals_;
  } else {
    t = walk_totals();
  }
  // Over shards these add up: the authority counts every queue (twins included) and exchange.
  t.queues = is_authority() ? queues_.size() : 0;
  t.exchanges = is_authority() ? routing_.exchanges().size() : 0;
  t.rates = rates_of(history_);
  return t;
}

vhost_totals vhost::walk_totals() const {
  vhost_totals t;
  t.counters = retired_;
  for (const auto& [n, q] : queues_) {
    t.ready += q->message_count();
    t.ready_bytes += q->message_bytes();
    t.unacked += q->unacked;
    t.unacked_bytes += q->unacked_bytes;
    t.consumers += const_cast<queue&>(*q).consumers().size();
    add_counters(t.counters, q->stats);
  }
  return t;
}

void vhost::sample(int64_t wall) {
  for (auto& [n, q] : queues_)
    q->history.record(wall, sample_of(q->message_count(), q->unacked, q->stats));
  sampled_totals_ = walk_totals();
  uint64_t ready = sampled_totals_.ready, unacked = sampled_totals_.unacked;
  const queue_counters& sum = sampled_totals_.counters;
  for (auto& [n, x] : routing_.exchanges())
    if (is_authority()) {
      auto c = x->counts();
      x->samples.record(wall, {c.publish_in, c.publish_out});
    }
  history_.record(wall, sample_of(ready, unacked, sum));
  sampled_ready_.store(ready, std::memory_order_relaxed);
  sampled_unacked_.store(unacked, std::memory_order_relaxed);
}

std::variant<std::vector<get_ok>, error> vhost::fetch(std::string_view queue_name, size_t count,
                                                      fetch_mode mode) {
  queue* q = find_queue(queue_name);
  if (!q) return no_queue(queue_name);
  // A channel of the vhost's own, outside the ids AMQP channels use (they count up from 1).
  uint64_t ch = (uint64_t(1) << 62) + ++next_fetch_channel_;
  class no_target final : public delivery_target {
    void deliver(const std::string&, uint64_t, bool, const message_ptr&) override {}
    void cancelled(const std::string&) override {}
  };
  open_channel(ch, 0, std::make_shared<no_target>());
  std::vector<get_ok> out;
  std::optional<error> failed;
  while (out.size() < count) {
    // The API reads exclusive queues too (RabbitMQ's management does), so ownership is not checked.
    auto r = get(ch, queue_name, false, q->settings().exclusive_owner);
    if (auto* ok = std::get_if<get_ok>(&r)) {
      out.push_back(std::move(*ok));
      continue;
    }
    if (auto* e = std::get_if<error>(&r)) failed = *e;
    break;
  }
  bool requeue = mode == fetch_mode::ack_requeue_true || mode == fetch_mode::reject_requeue_true;
  if (!out.empty()) {
    if (mode == fetch_mode::ack_requeue_false)
      (void)ack(ch, 0, true);
    else
      (void)settle_range(ch, 0, true, requeue, !requeue);
  }
  close_channel(ch);
  if (failed) return *failed;
  return out;
}

void vhost::destroy_all() {
  std::vector<std::string> names;
  for (const auto& [n, q] : queues_) names.push_back(n);
  for (const auto& n : names)
    if (queue* q = find_queue(n)) destroy_queue(*q, true);
}

}  // namespace warren::broker
