// A vhost's messages on their way through its queues: publishing and enqueueing, publisher
// throttling, dead-lettering, expiry (tick), paging out under memory pressure and restoring from
// the store (declarations are broker/vhost.cpp; routing broker/routing.cpp; consumers, deliveries
// and acknowledgements vhost_deliveries.cpp; queues on other nodes vhost_remote.cpp).
// Reply codes and texts follow RabbitMQ 3.10 (rabbit_channel, rabbit_amqqueue, rabbit_exchange).
#include <fmt/format.h>

#include <algorithm>
#include <ctime>

#include "broker/forward.hpp"
#include "broker/vhost.hpp"

namespace warren::broker {
// ----------------------------------------------------------------------------- publishing

std::variant<publish_outcome, error> vhost::publish(message_ptr m, uint64_t publisher,
                                                    uint64_t* sync_ticket,
                                                    const shard_answer* answer, uint32_t* remote) {
  if (m->exchange == forward_exchange) {  // only a node's link gets here (the channel checks)
    // The header is in the decoded properties: out of them, and the encoded ones are stale.
    std::shared_ptr<message> own =
        m.use_count() == 1 ? std::const_pointer_cast<message>(m) : std::make_shared<message>(*m);
    m.reset();
    auto t = take_forward_header(own->properties);
    if (!t)
      return error{error_code::precondition_failed,
                   fmt::format("a publish to '{}' in vhost '{}' needs a valid '{}' header",
                               forward_exchange, name_, forward_header)};
    own->amqp_properties.clear();
    return publish_forwarded(std::move(own), std::move(*t), publisher, sync_ticket, answer, remote);
  }
  exchange* x = find_exchange(m->exchange);
  if (!x) return no_exchange(m->exchange);
  if (x->settings().internal)
    return error{
        error_code::access_refused,
        fmt::format("cannot publish to internal exchange '{}' in vhost '{}'", m->exchange, name_)};
  dest_list targets;
  dest_set seen;
  seen.insert(x->id());
  external_ticket_ = 0;
  // A duplicate an exchange on the way drops counts as taken: no basic.return, and its confirm
  // waits for what was stored before it, the original included.
  bool duplicate = false;
  // A sink may hand the message to another node (send_to_node), whose answer the publish counts.
  answer_ = answer;
  remote_ = remote;
  bool external = routing_.route(*x, *m, now_ms(), targets, seen, &duplicate);
  answer_ = nullptr;
  remote_ = nullptr;
  if (duplicate) external_stored(last_write_ticket_);
  if (sync_ticket) *sync_ticket = external_ticket_;
  x->on_published(m);
  ++x->stats.publish_in;
  if (targets.empty() && !external) return publish_outcome::unroutable;
  ++x->stats.publish_out;
  count(global_counters::routed);
  if (targets.empty()) return publish_outcome::routed;
  std::sort(targets.begin(), targets.end());
  targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
  bool rejected = false;
  answer_ = answer;
  remote_ = remote;
  keeps_published_ = x->settings().type == "x-recent-history";
  uint64_t ticket = enqueue_all(m, targets, now_ms(), rejected, publisher);
  answer_ = nullptr;
  remote_ = nullptr;
  keeps_published_ = false;
  if (sync_ticket) *sync_ticket = std::max(ticket, external_ticket_);
  // Refused (nacked): the publisher will send it again, which must not count as a duplicate.
  if (rejected && x->dedup)
    if (auto k = x->dedup->key_of(*m)) x->dedup->forget(*k);
  return rejected ? publish_outcome::rejected : publish_outcome::routed;
}

uint64_t vhost::enqueue_all(message_ptr m, std::span<const dest_id> targets, int64_t now,
                            bool& rejected, uint64_t publisher) {
  boost::container::small_vector<queue*, 16> qs;
  // Queues living on other shards, by shard: the message is handed over there, once per shard.
  boost::container::small_vector<std::pair<size_t, std::vector<dest_id>>, 4> away;
  std::vector<dest_id> other_nodes;  // queues of other nodes of the cluster (vhost_remote.cpp)
  // The authority's twins, or a shard copy's places: queues that live on another shard.
  const auto& elsewhere = is_authority() ? twins_ : places_;
  for (dest_id d : targets) {
    if (!remote_ids_.empty() && remote_ids_.count(d)) {
      other_nodes.push_back(d);
      continue;
    }
    if (!elsewhere.empty())
      if (auto t = elsewhere.find(d); t != elsewhere.end()) {
        auto g = std::find_if(away.begin(), away.end(),
                              [&](const auto& p) { return p.first == t->second; });
        if (g == away.end()) g = away.insert(away.end(), {t->second, {}});
        g->second.push_back(d);
        continue;
      }
    if (queue* q = queue_by_id(d)) {
      // A deduplicating queue that has seen the message's key skips it, as one that took it.
      if (q->dedup)
        if (auto k = q->dedup->key_of(*m); k && q->dedup->seen(*k, now)) {
          ++q->dedup->dropped;
          external_stored(last_write_ticket_);
          continue;
        }
      qs.push_back(q);
    }
  }
  // The queues that keep the message in the store: durable ones for a persistent message (a
  // restart gives it back to them), and any that will page it out. One record serves them all.
  std::vector<uint32_t> durable;
  boost::container::small_vector<bool, 16> keeps(qs.size(), false);
  uint32_t refs = 0;
  if (journal_) {
    for (size_t i = 0; i < qs.size(); ++i) {
      bool d = m->persistent() && qs[i]->store_id != 0;
      if (d) durable.push_back(qs[i]->store_id);
      if (d || qs[i]->pages(*m)) {
        keeps[i] = true;
        ++refs;
      }
    }
  }
  uint64_t ticket = 0;
  if (refs) {
    if (m->store_id) {
      // Already stored for other queues (a recent-history replay): a record of its own.
      auto copy = std::make_shared<message>(*m);
      copy->store_id = 0;
      m = std::move(copy);
    }
    ticket = journal_->write(*m, refs, durable);
    if (durable.empty()) ticket = 0;  // only spooled for paging: nothing to wait for
    last_write_ticket_ = std::max(last_write_ticket_, ticket);
  }
  for (size_t i = 0; i < qs.size(); ++i) {
    queue* q = qs[i];
    bool took = enqueue(*q, m, now, rejected, keeps[i]);
    if (took && q->dedup)
      if (auto k = q->dedup->key_of(*m)) q->dedup->remember(*k, *m, now);
    if (keeps[i] && !took) journal_->release(m->store_segment, m->store_offset, q->store_id);
    // Past its backlog mark (in messages or bytes), a queue with consumers lets its publishers
    // run ahead of its deliveries by at most flow_slack messages or flow_slack_bytes (the
    // credits count deliveries minus publishes), so a flood cannot starve its consumers or fill
    // the memory, while a publisher slower than them is never held.
    if (publisher != 0 && !q->consumers().empty() &&
        (q->message_count() > backlog_high || q->message_bytes() > backlog_high_bytes)) {
      --q->flow_credit;
      q->flow_credit_bytes -= int64_t(m->body.size());
      if (q->flow_credit < -int64_t(flow_slack) || q->flow_credit_bytes < -flow_slack_bytes)
        throttle(*q, publisher);
    }
  }
  // Then the queues on other shards, each with a message of its own whenever another thread
  // keeps this one (its store fields are written when a queue stores or pages it): a copy when
  // queues here or on another shard took it too, or an exchange keeps it (x-recent-history).
  if (!other_nodes.empty()) send_remote(*m, other_nodes);
  bool shared = !qs.empty() || away.size() > 1 || keeps_published_;
  for (auto& [sh, ids] : away) {
    if (answer_ && remote_) ++*remote_;
    hand_over(sh, shared ? std::make_shared<message>(*m) : m, std::move(ids), publisher, answer_);
  }
  return ticket;
}

void vhost::throttle(queue& q, uint64_t publisher) {
  if (std::find(q.throttled.begin(), q.throttled.end(), publisher) != q.throttled.end()) return;
  auto it = channels_.find(publisher);
  if (it == channels_.end()) return;
  q.throttled.push_back(publisher);
  if (it->second.throttled_by++ == 0) it->second.target->throttle(true);
}

void vhost::release_throttles(queue& q) {
  for (uint64_t id : q.throttled) {
    auto it = channels_.find(id);
    if (it != channels_.end() && --it->second.throttled_by == 0) it->second.target->throttle(false);
  }
  q.throttled.clear();
}

bool vhost::enqueue(queue& q, message_ptr m, int64_t now, bool& rejected, bool stored) {
  std::vector<queue::entry> dropped;
  if (q.enqueue(m, now, dropped, false, stored) == queue::accept::rejected) {
    rejected = true;
    if (q.policy().overflow == overflow_mode::reject_publish_dlx)
      dead_letter(q, queue::entry{0, std::move(m)}, "maxlen", now);
    return false;
  }
  dead_letter_all(q, dropped, "maxlen", now);
  ++q.stats.publish;
  dispatch(q);
  return true;
}

void vhost::dead_letter_all(queue& q, std::vector<queue::entry>& entries, std::string_view reason,
                            int64_t now) {
  // These left the queue for good: released from the store, then maybe stored anew elsewhere.
  for (auto& e : entries) {
    release(q, e);
    dead_letter(q, std::move(e), reason, now);
  }
  entries.clear();
}

void vhost::dead_letter(queue& q, queue::entry e, std::string_view reason, int64_t) {
  const auto& dlx = q.policy().dead_letter_exchange;
  if (!dlx) return;
  broker::count(reason == "expired"  ? global_counters::dead_lettered_expired
                : reason == "maxlen" ? global_counters::dead_lettered_maxlen
                                     : global_counters::dead_lettered_rejected);
  const message& old = *e.msg;
  auto m = std::make_shared<message>(old);
  m->store_id = 0;             // a new message, stored on its own if it needs to be
  m->amqp_properties.clear();  // its headers change below
  m->exchange = *dlx;
  if (q.policy().dead_letter_routing_key) m->routing_key = *q.policy().dead_letter_routing_key;
  common::field_table headers = old.properties.headers.value_or(common::field_table{});
  common::field_array deaths;
  if (auto a = headers.find("x-death"))
    if (auto arr = a->get_if<common::field_array>()) deaths = *arr;
  // One x-death entry per (queue, reason), most recent first, with a count.
  int64_t count = 1;
  for (auto it = deaths.items.begin(); it != deaths.items.end(); ++it) {
    auto t = it->get_if<common::field_table>();
    if (t && common::table_string(*t, "queue") == std::string_view(q.name()) &&
        common::table_string(*t, "reason") == reason) {
      if (auto c = t->find("count"); c && c->get_if<int64_t>()) count = *c->get_if<int64_t>() + 1;
      deaths.items.erase(it);
      break;
    }
  }
  common::field_table death;
  death.set("count", count);
  death.set("reason", std::string(reason));
  death.set("queue", q.name());
  death.set("time", common::timestamp{uint64_t(std::time(nullptr))});
  death.set("exchange", old.exchange);
  death.set("routing-keys", common::field_array{{common::field_value(old.routing_key)}});
  if (old.properties.expiration) {
    death.set("original-expiration", *old.properties.expiration);
    m->properties.expiration.reset();
    m->ttl_ms.reset();
  }
  deaths.items.insert(deaths.items.begin(), common::field_value(std::move(death)));
  bool any_rejected = false;
  for (const auto& d : deaths.items)
    if (auto t = d.get_if<common::field_table>())
      if (common::table_string(*t, "reason") == std::string_view("rejected")) any_rejected = true;
  headers.set("x-death", deaths);
  if (!headers.find("x-first-death-reason")) {
    headers.set("x-first-death-reason", std::string(reason));
    headers.set("x-first-death-queue", q.name());
    headers.set("x-first-death-exchange", old.exchange);
  }
  m->properties.headers = std::move(headers);
  std::vector<std::string> death_queues;
  if (!any_rejected)
    for (const auto& v : deaths.items)
      if (auto t = v.get_if<common::field_table>())
        death_queues.emplace_back(common::table_string(*t, "queue").value_or(""));
  if (!is_authority()) {
    // Routing is the authority's: the message goes there.
    to_authority([m = std::move(m), dq = std::move(death_queues), any_rejected](vhost& a) mutable {
      a.route_dead_letter(std::move(m), std::move(dq), any_rejected);
    });
    return;
  }
  route_dead_letter(std::move(m), std::move(death_queues), any_rejected);
}

void vhost::route_dead_letter(message_ptr m, std::vector<std::string> death_queues,
                              bool any_rejected) {
  exchange* x = find_exchange(m->exchange);
  if (!x) return;  // as RabbitMQ: a missing dead-letter exchange drops the message
  dest_list targets;
  dest_set seen;
  seen.insert(x->id());
  routing_.route(*x, *m, now_ms(), targets, seen);
  std::sort(targets.begin(), targets.end());
  targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
  // A message that would come back to a queue it already died in, with no client rejection on
  // the way, is in a cycle: RabbitMQ drops it for that queue.
  targets.erase(std::remove_if(targets.begin(), targets.end(),
                               [&](dest_id d) {
                                 queue* t = queue_by_id(d);
                                 return !t || (!any_rejected &&
                                               std::find(death_queues.begin(), death_queues.end(),
                                                         t->name()) != death_queues.end());
                               }),
                targets.end());
  bool rejected = false;
  (void)enqueue_all(std::move(m), targets, now_ms(), rejected, 0);
}

void vhost::tick(int64_t now) {
  if (now >= next_sample_) {
    next_sample_ = now + queue_history::interval_ms;
    sample(wall_ms());
  }
  std::vector<queue*> expiring, unused;
  std::vector<dest_id> still;
  for (dest_id id : timed_) {
    queue* q = queue_by_id(id);
    if (!q) continue;  // deleted
    if (!q->has_expiring() && !q->policy().expires_ms) {
      q->timed_listed = false;
      continue;
    }
    still.push_back(id);
    if (q->has_expiring()) expiring.push_back(q);
    if (q->policy().expires_ms && q->consumers().empty() &&
        now - q->last_used >= *q->policy().expires_ms)
      unused.push_back(q);
  }
  timed_.swap(still);  // dead-lettering below may list more queues
  for (queue* q : expiring) {
    if (queue_by_id(q->id()) != q) continue;
    std::vector<queue::entry> expired;
    q->expire(now, expired);
    dead_letter_all(*q, expired, "expired", now);
  }
  for (queue* q : unused)
    if (queue_by_id(q->id()) == q) destroy_queue(*q, true);
}

// ----------------------------------------------------------------------------- paging and restore

void vhost::set_memory_pressure(bool on) {
  if (is_authority())
    for (auto& sh : owned_shards_)
      on_shard(sh->shard_, [on](vhost& v) { v.set_memory_pressure(on); });
  memory_pressure_ = on;
  page_cursor_.clear();
  if (on) read_cache_.trim();  // what it holds alive goes first; it fills again as queues read
  for (auto& [name, q] : queues_) {
    q->page_threshold = on ? queue::read_ahead : page_threshold_;
    q->page_threshold_bytes = on ? queue::read_ahead_bytes : SIZE_MAX;
  }
}

vhost::page_out_step vhost::page_out_some(size_t budget_bytes) {
  page_out_step step;
  if (!memory_pressure_) return step;
  queue::page_budget budget{budget_bytes, 0};
  // A step resumes at the queue where the last one ran out of budget: the queues before it are
  // done (they page what arrives since), so a vhost with many queues is walked once, not once
  // per step.
  for (auto it = queues_.lower_bound(page_cursor_); it != queues_.end(); ++it) {
    step.messages += it->second->page_out(queue::read_ahead, queue::read_ahead_bytes, budget);
    if (budget.bytes == 0) {
      step.more = true;
      page_cursor_ = it->first;
      break;
    }
  }
  if (!step.more) page_cursor_.clear();
  step.ticket = budget.ticket;
  return step;
}

bool vhost::restore_message(uint32_t queue_store_id, message_ptr m) {
  auto it = store_queues_.find(queue_store_id);
  if (it == store_queues_.end()) return false;
  if (size_t s = twin_shard(it->second->id()); s != SIZE_MAX)
    return shard_at(s).restore_message(queue_store_id, std::move(m));  // recovery: direct
  queue& q = *it->second;
  std::vector<queue::entry> dropped;
  if (q.enqueue(m, now_ms(), dropped, true, true) == queue::accept::rejected)
    journal_->release(m->store_segment, m->store_offset, q.store_id);  // over its limit
  for (auto& e : dropped) release(q, e);  // drop-head: the oldest go, not dead-lettered
  return true;
}

bool vhost::restore_paged(uint32_t queue_store_id, const queue::stored_ref& r, int64_t now,
                          bool& paged) {
  paged = false;
  auto it = store_queues_.find(queue_store_id);
  if (it == store_queues_.end()) return false;
  if (size_t s = twin_shard(it->second->id()); s != SIZE_MAX)
    return shard_at(s).restore_paged(queue_store_id, r, now, paged);  // recovery: direct
  queue& q = *it->second;
  std::vector<queue::entry> dropped;
  auto res = q.enqueue_paged(r, now, dropped);
  if (!res) return true;
  paged = true;
  if (*res == queue::accept::rejected) journal_->release(r.segment, r.offset, q.store_id);
  for (auto& e : dropped) release(q, e);
  return true;
}

}  // namespace warren::broker
