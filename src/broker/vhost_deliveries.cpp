// The vhost's consumers and the delivery bookkeeping of the channels that use it: channel
// records, consume and cancel, dispatch to consumers under prefetch and transit windows,
// basic.get, and acknowledgements (ack, reject, recover), flow and credit. Home worker only.
// Reply codes and texts follow RabbitMQ 3.10 (rabbit_channel).
#include "broker/vhost.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace warren::broker {

// ----------------------------------------------------------------------------- consumers

// Every shard keeps a record of every channel: any of them may deliver to it or hold back its
// publishes. The channel sends its channel-wide calls (open, close, qos, flow, recover) to each
// shard itself, so that what it sends a shard directly afterwards comes after them.

void vhost::open_channel(uint64_t channel_id, uint64_t connection_id,
                         std::shared_ptr<delivery_target> target,
                         std::shared_ptr<std::atomic<int64_t>> global_unacked) {
  channel_record& ch = channels_.try_emplace(channel_id, &unacked_pool_).first->second;
  ch.id = channel_id;
  ch.connection_id = connection_id;
  ch.target = std::move(target);
  ch.next_tag = tag_base_ + 1;
  ch.global_unacked = std::move(global_unacked);
}

bool vhost::reserve_global(channel_record& ch) {
  if (!ch.global_unacked) return ch.global_prefetch == 0 || ch.unacked_count < ch.global_prefetch;
  // Shared over shards: every acknowledged delivery is counted, limit or not.
  if (ch.global_prefetch == 0) {
    ch.global_unacked->fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  int64_t n = ch.global_unacked->load(std::memory_order_relaxed);
  while (n < ch.global_prefetch)
    if (ch.global_unacked->compare_exchange_weak(n, n + 1, std::memory_order_relaxed)) return true;
  return false;
}

void vhost::released_global(channel_record& ch) {
  if (!ch.global_unacked) return;
  int64_t before = ch.global_unacked->fetch_sub(1, std::memory_order_relaxed);
  if (ch.global_prefetch == 0 || before < ch.global_prefetch) return;
  // It was full: the channel's consumers on other shards may be waiting for this room.
  vhost& a = *authority_;
  uint64_t id = ch.id;
  for (vhost* sh : a.shards_)
    if (sh != this) a.post_(sh->shard_, [sh, id] { sh->dispatch_channel(id); });
}

void vhost::dispatch_channel(uint64_t channel_id) {
  auto it = channels_.find(channel_id);
  if (it == channels_.end()) return;
  std::vector<queue*> qs;
  for (auto& [tag, c] : it->second.consumers) qs.push_back(c->q);
  for (queue* q : qs)
    if (queue_by_id(q->id()) == q) dispatch(*q);
}

void vhost::close_channel(uint64_t channel_id) {
  auto it = channels_.find(channel_id);
  if (it == channels_.end()) return;
  channel_record& ch = it->second;
  while (!ch.consumers.empty()) remove_consumer(*ch.consumers.begin()->second, false);
  std::vector<queue*> touched;
  while (!ch.unacked.empty()) settle(ch, ch.unacked.begin(), true, touched);
  channels_.erase(it);
  std::sort(touched.begin(), touched.end());
  touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
  for (queue* q : touched)
    if (queue_by_id(q->id()) == q) dispatch(*q);
}

void vhost::close_connection(uint64_t connection_id) {
  // The authority deletes the connection's exclusive queues, twins included (their shards tear
  // them down).
  std::vector<queue*> exclusive;
  for (auto& [n, q] : queues_)
    if (q->settings().exclusive && q->settings().exclusive_owner == connection_id)
      exclusive.push_back(q.get());
  for (queue* q : exclusive) destroy_queue(*q, false);
}

maybe_error vhost::consume(uint64_t channel_id, std::string_view queue_name, const std::string& tag,
                           bool no_ack, bool exclusive, uint16_t prefetch, uint64_t connection_id,
                           const common::field_table& args) {
  auto cit = channels_.find(channel_id);
  if (cit == channels_.end()) return error{error_code::not_found, "channel is closed"};
  channel_record& ch = cit->second;
  queue* q = find_queue(queue_name);
  if (!q) return no_queue(queue_name);
  if (auto e = check_exclusive(*q, connection_id)) return e;
  if (ch.consumers.count(tag))
    return error{error_code::not_allowed, fmt::format("attempt to reuse consumer tag '{}'", tag)};
  bool held_exclusively = std::any_of(q->consumers().begin(), q->consumers().end(),
                                      [](const consumer* c) { return c->exclusive; });
  if (held_exclusively || (exclusive && !q->consumers().empty()))
    return error{error_code::access_refused,
                 fmt::format("queue '{}' in vhost '{}' in exclusive use", queue_name, name_)};
  auto c = std::make_unique<consumer>();
  c->tag = tag;
  c->channel = &ch;
  c->q = q;
  c->prefetch = prefetch;
  c->no_ack = no_ack;
  c->exclusive = exclusive;
  if (const common::field_value* p = args.find("x-priority")) {
    auto n = common::integer_value(*p);
    if (!n)
      return error{error_code::precondition_failed,
                   "invalid arg 'x-priority' for consumer: expected an integer"};
    c->priority = int32_t(*n);
  }
  if (q->policy().single_active_consumer) c->priority = 0;  // SAC: strictly first come
  q->add_consumer(c.get());
  q->had_consumer = true;
  q->last_used = now_ms();
  ch.consumers[tag] = std::move(c);
  return std::nullopt;
}

void vhost::dispatch_queue(std::string_view name) {
  if (queue* q = find_queue(name)) dispatch(*q);
}

bool vhost::has_consumer(uint64_t channel_id, std::string_view tag) const {
  auto it = channels_.find(channel_id);
  return it != channels_.end() && it->second.consumers.count(tag) != 0;
}

void vhost::cancel(uint64_t channel_id, std::string_view tag) {
  auto it = channels_.find(channel_id);
  if (it == channels_.end()) return;
  auto c = it->second.consumers.find(tag);
  if (c != it->second.consumers.end()) remove_consumer(*c->second, false);
}

void vhost::remove_consumer(consumer& c, bool notify) {
  queue* q = c.q;
  channel_record* ch = c.channel;
  auto& list = q->consumers();
  auto pos = std::find(list.begin(), list.end(), &c);
  if (pos != list.end()) list.erase(pos);
  // Its unacknowledged messages stay with the channel, to be acked or requeued there.
  for (auto& [tag, u] : ch->unacked)
    if (u.owner == &c) u.owner = nullptr;
  std::string tag = c.tag;
  ch->consumers.erase(ch->consumers.find(tag));  // destroys c
  if (notify) ch->target->cancelled(tag);
  if (q->consumers().empty()) release_throttles(*q);  // a queue without consumers only buffers
  if (q->settings().auto_delete && q->consumers().empty() && q->had_consumer && !q->deleting)
    destroy_queue(*q, false);
}

void vhost::dispatch(queue& q) {
  auto& list = q.consumers();
  int64_t now = 0;
  std::vector<queue::entry> expired;
  while (q.message_count() > 0 && !list.empty()) {
    // Consumers are ordered by priority, least recently served first within a priority: the
    // first with room takes the message. With a single active consumer only the first counts.
    auto chosen = list.end();
    for (auto it = list.begin(); it != list.end(); ++it) {
      consumer* c = *it;
      channel_record& ch = *c->channel;
      bool room =
          ch.flow_active && ch.in_transit < transit_window &&
          (ch.in_transit == 0 || ch.in_transit_bytes < transit_window_bytes) &&
          (c->no_ack || ((c->prefetch == 0 || c->unacked < c->prefetch) && reserve_global(ch)));
      if (room) {
        chosen = it;
        break;
      }
      if (q.policy().single_active_consumer) break;
    }
    if (chosen == list.end()) break;  // every consumer is at its limit
    if (now == 0) now = now_ms();
    auto e = q.take(now, expired);
    consumer* c = *chosen;
    if (!e) {
      // The slot it reserved goes back, and a consumer of the channel on another shard that
      // found the limit reached meanwhile is told, as for an acknowledgement.
      if (!c->no_ack) released_global(*c->channel);
      break;
    }
    if (!q.policy().single_active_consumer) q.rotate(chosen);
    deliver_one(*c, std::move(*e));
  }
  if (!expired.empty()) dead_letter_all(q, expired, "expired", now);
  if (!q.throttled.empty() &&
      ((q.flow_credit >= 0 && q.flow_credit_bytes >= 0) ||
       (q.message_count() <= backlog_low && q.message_bytes() <= backlog_low_bytes) ||
       list.empty()))
    release_throttles(q);
}

void vhost::deliver_one(consumer& c, queue::entry e) {
  channel_record& ch = *c.channel;
  if (c.q->flow_credit < int64_t(flow_slack)) ++c.q->flow_credit;
  if (c.q->flow_credit_bytes < flow_slack_bytes)
    c.q->flow_credit_bytes =
        std::min(flow_slack_bytes, c.q->flow_credit_bytes + int64_t(e.msg->body.size()));
  ++ch.in_transit;
  ch.in_transit_bytes += e.msg->body.size();
  uint64_t tag = ch.next_tag++;
  bool redelivered = e.redelivered;
  message_ptr m = e.msg;
  queue& q = *c.q;
  if (redelivered) {
    ++q.stats.redeliver;
    count(global_counters::redelivered);
  }
  if (!c.no_ack) {
    ++q.stats.deliver;
    count(global_counters::delivered_consume_manual_ack);
    ++q.unacked;
    q.unacked_bytes += m->body.size();
    ch.unacked.emplace(tag, unacked_message{std::move(e), q.id(), q.store_id, &c});
    ++c.unacked;
    ++ch.unacked_count;
  } else {
    ++q.stats.deliver_no_ack;
    count(global_counters::delivered_consume_auto_ack);
    release(q, e);
  }
  ch.target->deliver(c.tag, tag, redelivered, m);
}

std::variant<get_ok, get_empty, error> vhost::get(uint64_t channel_id, std::string_view queue_name,
                                                  bool no_ack, uint64_t connection_id) {
  auto cit = channels_.find(channel_id);
  if (cit == channels_.end()) return error{error_code::not_found, "channel is closed"};
  queue* q = find_queue(queue_name);
  if (!q) return no_queue(queue_name);
  if (auto e = check_exclusive(*q, connection_id)) return *e;
  int64_t now = now_ms();
  q->last_used = now;
  std::vector<queue::entry> expired;
  auto e = q->take(now, expired);
  dead_letter_all(*q, expired, "expired", now);
  if (!e) {
    ++q->stats.get_empty;
    count(global_counters::get_empty);
    return get_empty{};
  }
  channel_record& ch = cit->second;
  uint64_t tag = ch.next_tag++;
  get_ok ok{tag, e->redelivered, uint32_t(q->message_count()), e->msg};
  if (e->redelivered) {
    ++q->stats.redeliver;
    count(global_counters::redelivered);
  }
  if (!no_ack) {
    ++q->stats.get;
    count(global_counters::delivered_get_manual_ack);
    ++q->unacked;
    q->unacked_bytes += e->msg->body.size();
    ch.unacked.emplace(tag, unacked_message{std::move(*e), q->id(), q->store_id, nullptr});
    ++ch.unacked_count;
    if (ch.global_unacked) ch.global_unacked->fetch_add(1, std::memory_order_relaxed);
  } else {
    ++q->stats.get_no_ack;
    count(global_counters::delivered_get_auto_ack);
    release(*q, *e);
  }
  return ok;
}

// ----------------------------------------------------------------------------- acks

void vhost::settle(channel_record& ch, unacked_map::iterator it, bool requeue,
                   std::vector<queue*>& touched, bool dead) {
  unacked_message& u = it->second;
  if (u.owner) --u.owner->unacked;
  --ch.unacked_count;
  released_global(ch);
  queue* q = queue_by_id(u.queue_id);
  if (!requeue && !dead) count(global_counters::acknowledged);
  if (q) {
    --q->unacked;
    q->unacked_bytes -= u.entry.msg->body.size();
    if (!requeue && !dead) ++q->stats.ack;
  }
  if (q && requeue) {
    q->requeue(std::move(u.entry));
  } else {
    // Acked, rejected, or its queue is gone: the store forgets it there.
    if (journal_ && u.entry.stored)
      journal_->release(u.entry.msg->store_segment, u.entry.msg->store_offset, u.store_queue);
    if (q && dead) dead_letter(*q, std::move(u.entry), "rejected", now_ms());
  }
  if (q) touched.push_back(q);
  ch.unacked.erase(it);
}

maybe_error vhost::reject(uint64_t channel_id, uint64_t tag, bool multiple, bool requeue,
                          bool strict) {
  return settle_range(channel_id, tag, multiple, requeue, !requeue, strict);
}

maybe_error vhost::settle_range(uint64_t channel_id, uint64_t tag, bool multiple, bool requeue,
                                bool dead, bool strict) {
  auto cit = channels_.find(channel_id);
  if (cit == channels_.end()) return std::nullopt;
  channel_record& ch = cit->second;
  // The channel's global limit is shared by its consumers of every queue: room made here may be
  // for a consumer of another queue than those the settled messages came from. Other shards are
  // told by released_global; this one's queues of the channel are dispatched below.
  bool was_full =
      ch.global_prefetch != 0 &&
      (ch.global_unacked ? ch.global_unacked->load(std::memory_order_relaxed) >= ch.global_prefetch
                         : ch.unacked_count >= ch.global_prefetch);
  std::vector<queue*> touched;
  if (multiple) {
    // tag 0 with multiple: everything outstanding.
    auto end = tag == 0 ? ch.unacked.end() : ch.unacked.upper_bound(tag);
    if (ch.unacked.begin() == end && tag != 0 && strict)
      return error{error_code::precondition_failed, fmt::format("unknown delivery tag {}", tag)};
    while (ch.unacked.begin() != end) settle(ch, ch.unacked.begin(), requeue, touched, dead);
  } else {
    auto it = ch.unacked.find(tag);
    if (it == ch.unacked.end())
      return error{error_code::precondition_failed, fmt::format("unknown delivery tag {}", tag)};
    settle(ch, it, requeue, touched, dead);
  }
  if (was_full)
    for (auto& [consumer_tag, c] : ch.consumers) touched.push_back(c->q);
  std::sort(touched.begin(), touched.end());
  touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
  for (queue* q : touched)
    if (queue_by_id(q->id()) == q) dispatch(*q);
  return std::nullopt;
}

maybe_error vhost::ack(uint64_t channel_id, uint64_t tag, bool multiple, bool strict) {
  return settle_range(channel_id, tag, multiple, false, false, strict);
}

void vhost::recover(uint64_t channel_id) {
  (void)reject(channel_id, 0, true, true);
}

void vhost::set_global_prefetch(uint64_t channel_id, uint16_t n) {
  auto it = channels_.find(channel_id);
  if (it == channels_.end()) return;
  it->second.global_prefetch = n;
  for (auto& [tag, c] : it->second.consumers) dispatch(*c->q);
}

void vhost::credit(uint64_t channel_id, uint32_t n, uint64_t bytes) {
  auto it = channels_.find(channel_id);
  if (it == channels_.end()) return;
  channel_record& ch = it->second;
  bool was_full = ch.in_transit >= transit_window || ch.in_transit_bytes >= transit_window_bytes;
  ch.in_transit -= std::min(n, ch.in_transit);
  ch.in_transit_bytes -= std::min(bytes, ch.in_transit_bytes);
  if (ch.in_transit == 0) ch.in_transit_bytes = 0;
  if (was_full)
    for (auto& [tag, c] : ch.consumers) dispatch(*c->q);
}

void vhost::set_flow(uint64_t channel_id, bool active) {
  auto it = channels_.find(channel_id);
  if (it == channels_.end()) return;
  it->second.flow_active = active;
  if (active)
    for (auto& [tag, c] : it->second.consumers) dispatch(*c->q);
}

}  // namespace warren::broker
