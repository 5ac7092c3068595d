// Each worker's copy of a vhost's routing table (docs/architecture.md, "Spreading queues over
// workers"): the authority hands every routing change to the other shards by message passing,
// and a publish on a worker other than the home is routed there, on that shard's copy, then
// handed to each shard holding target queues once. No lock on the publish path: a copy is
// touched on its own worker only, and whether it is up to date is one atomic load.
#include <algorithm>

#include "broker/vhost.hpp"

namespace warren::broker {

void vhost::copy_routing(const routing_change& c, size_t place) {
  std::shared_ptr<copied_counters> counters;
  if (const auto* a = std::get_if<exchange_added>(&c))
    if (exchange* x = routing_.exchange_by_id(a->id))
      counters = x->copied = std::make_shared<copied_counters>(shards_.size());
  // Bumped before the change is posted, so before the answer to whoever made it: a publisher that
  // has seen the answer (on any connection) finds its worker's copy behind until the change is
  // applied there, and publishes through the authority meanwhile. One writer: no read-modify-write.
  uint64_t version = routing_version_.load(std::memory_order_relaxed) + 1;
  routing_version_.store(version, std::memory_order_release);
  for (size_t s = 0; s < shards_.size(); ++s) {
    if (s == home_) continue;
    on_shard(s, [c, version, place, counters](vhost& sh) {
      sh.apply_copy(c, version, place, counters);
    });
  }
}

void vhost::apply_copy(const routing_change& c, uint64_t version, size_t place,
                       const std::shared_ptr<copied_counters>& counters) {
  routing_.apply(c);
  if (const auto* a = std::get_if<exchange_added>(&c)) {
    if (exchange* x = routing_.exchange_by_id(a->id)) x->copied = counters;
  } else if (const auto* q = std::get_if<queue_added>(&c)) {
    if (place != shard_ && place != SIZE_MAX) places_[q->id] = place;
  } else if (const auto* r = std::get_if<queue_removed>(&c)) {
    places_.erase(r->id);
  }
  copy_version_ = version;
}

std::optional<std::variant<publish_outcome, error>> vhost::publish_here(message_ptr& m,
                                                                        uint64_t publisher,
                                                                        uint64_t* sync_ticket,
                                                                        const shard_answer* answer,
                                                                        uint32_t* remote) {
  // In a cluster the authority routes: queues of other nodes are in its table only
  // (vhost_remote.cpp), not in the copies.
  if (is_authority() || !copy_current() || authority().in_cluster()) return std::nullopt;
  exchange* x = find_exchange(m->exchange);
  // A missing or internal exchange: the authority says so, in its words.
  if (!x || x->settings().internal) return std::nullopt;
  dest_list targets;
  dest_set seen;
  seen.insert(x->id());
  int64_t now = now_ms();
  bool owner_only = false;
  // Nothing external here: the exchanges with sinks keep state, so they stop the routing.
  (void)routing_.route(*x, *m, now, targets, seen, nullptr, &owner_only);
  if (owner_only) return std::nullopt;
  // Counted in this worker's slot of the exchange's copied counters; the views add them up.
  copied_counters::slot* slot = x->copied ? &x->copied->slots[shard_] : nullptr;
  auto bump = [](std::atomic<uint64_t>& n) {
    n.store(n.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  };
  if (slot) bump(slot->publish_in);
  if (sync_ticket) *sync_ticket = 0;
  if (targets.empty()) return publish_outcome::unroutable;
  if (slot) bump(slot->publish_out);
  count(global_counters::routed);
  std::sort(targets.begin(), targets.end());
  targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
  bool rejected = false;
  external_ticket_ = 0;
  answer_ = answer;
  remote_ = remote;
  uint64_t ticket = enqueue_all(std::move(m), targets, now, rejected, publisher);
  answer_ = nullptr;
  remote_ = nullptr;
  if (sync_ticket) *sync_ticket = std::max(ticket, external_ticket_);
  return rejected ? publish_outcome::rejected : publish_outcome::routed;
}

}  // namespace warren::broker
