// Queue storage: priority levels, TTL deadlines, length limits.
#include "broker/queue.hpp"

#include <algorithm>
#include <chrono>

#include "broker/vhost.hpp"

namespace warren::broker {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

namespace {

error bad_arg(const std::string& k, std::string_view expect) {
  return error{error_code::precondition_failed,
               "invalid arg '" + k + "' for queue: expected " + std::string(expect)};
}

}  // namespace

maybe_error parse_queue_arguments(const common::field_table& args, queue_policy& p) {
  for (const auto& e : args.entries) {
    const std::string& k = e.key;
    auto n = common::integer_value(e.value);
    auto s = e.value.get_if<std::string>();
    if (k == "x-max-length" || k == "x-max-length-bytes") {
      if (!n || *n < 0) return bad_arg(k, "a non-negative integer");
      (k == "x-max-length" ? p.max_length : p.max_bytes) = uint64_t(*n);
    } else if (k == "x-overflow") {
      if (s && *s == "drop-head")
        p.overflow = overflow_mode::drop_head;
      else if (s && *s == "reject-publish")
        p.overflow = overflow_mode::reject_publish;
      else if (s && *s == "reject-publish-dlx")
        p.overflow = overflow_mode::reject_publish_dlx;
      else
        return bad_arg(k, "drop-head, reject-publish or reject-publish-dlx");
    } else if (k == "x-message-ttl") {
      if (!n || *n < 0) return bad_arg(k, "a non-negative integer");
      p.message_ttl_ms = *n;
    } else if (k == "x-expires") {
      if (!n || *n <= 0) return bad_arg(k, "a positive integer");
      p.expires_ms = *n;
    } else if (k == "x-dead-letter-exchange") {
      if (!s) return bad_arg(k, "a string");
      p.dead_letter_exchange = *s;
    } else if (k == "x-dead-letter-routing-key") {
      if (!s) return bad_arg(k, "a string");
      p.dead_letter_routing_key = *s;
    } else if (k == "x-max-priority") {
      if (!n || *n < 0 || *n > 255) return bad_arg(k, "an integer from 0 to 255");
      p.max_priority = uint8_t(*n);
    } else if (k == "x-single-active-consumer") {
      auto b = e.value.get_if<bool>();
      if (!b) return bad_arg(k, "a boolean");
      p.single_active_consumer = *b;
    } else if (k == "x-queue-leader-locator") {
      // Where a cluster places a new queue (docs/cluster.md): RabbitMQ's two values.
      if (!s || (*s != "client-local" && *s != "balanced"))
        return bad_arg(k, "client-local or balanced");
    } else if (k == "x-queue-type") {
      if (!s || *s != "classic")
        return error{error_code::precondition_failed,
                     "invalid arg 'x-queue-type': only 'classic' queues exist in Warren"};
    }
    // Other arguments are stored and ignored, as RabbitMQ ignores unknown ones.
  }
  std::optional<dedup_settings> dedup;
  if (auto e = parse_dedup_arguments(args, {}, dedup)) return e;
  if (p.dead_letter_routing_key && !p.dead_letter_exchange)
    return error{error_code::precondition_failed,
                 "invalid arg 'x-dead-letter-routing-key' for queue: "
                 "x-dead-letter-exchange must be set too"};
  return std::nullopt;
}

queue::queue(queue_settings s, queue_policy p, dest_id id)
    : settings_(std::move(s)),
      policy_(std::move(p)),
      id_(id),
      levels_(policy_.max_priority + 1u),
      paged_(policy_.max_priority + 1u) {
  last_used = now_ms();
  std::optional<dedup_settings> d;
  if (!parse_dedup_arguments(settings_.arguments, {}, d) && d)
    dedup = std::make_unique<dedup_filter>(std::move(*d));
}

bool queue::pages_level(uint8_t lvl) const {
  if (!pager) return false;
  return paged_at_count(lvl) > 0 || count_ - paged_count_ >= page_threshold ||
         bytes_ - paged_bytes_ >= page_threshold_bytes;
}

bool queue::pages(const message& m) const {
  return pages_level(std::min<uint8_t>(m.properties.priority.value_or(0), policy_.max_priority));
}

bool queue::over_limits(uint64_t body_size) const {
  return (policy_.max_length && count_ >= *policy_.max_length) ||
         (policy_.max_bytes && bytes_ + body_size > *policy_.max_bytes);
}

int64_t queue::deadline(std::optional<int64_t> message_ttl, int64_t now) const {
  std::optional<int64_t> ttl = policy_.message_ttl_ms;
  if (message_ttl && (!ttl || *message_ttl < *ttl)) ttl = message_ttl;
  return ttl ? now + *ttl : 0;
}

queue::accept queue::enqueue(message_ptr m, int64_t now, std::vector<entry>& dropped,
                             bool redelivered, bool stored) {
  bool full = over_limits(m->body.size());
  if (full && policy_.overflow != overflow_mode::drop_head) return accept::rejected;
  int64_t deadline = this->deadline(m->ttl_ms, now);
  uint8_t lvl = std::min<uint8_t>(m->properties.priority.value_or(0), policy_.max_priority);
  bool page = stored && pages_level(lvl);  // decided before counting m, as the vhost did
  bytes_ += m->body.size();
  ++count_;
  if (deadline) add_expiring();
  if (page) {
    paged_at(lvl).push_back(paged{m->store_segment, m->store_offset, m->store_length,
                                  uint32_t(m->body.size()), redelivered, deadline});
    ++paged_count_;
    paged_bytes_ += m->body.size();
  } else {
    level(lvl).push_back(entry{next_seq_++, std::move(m), deadline, redelivered, lvl, stored});
  }
  drop_for_limits(dropped);
  return accept::ok;
}

std::optional<queue::accept> queue::enqueue_paged(const stored_ref& r, int64_t now,
                                                  std::vector<entry>& dropped) {
  uint8_t lvl = std::min<uint8_t>(r.priority, policy_.max_priority);
  if (!pages_level(lvl)) return std::nullopt;
  if (over_limits(r.body_size) && policy_.overflow != overflow_mode::drop_head)
    return accept::rejected;
  int64_t deadline = this->deadline(r.ttl_ms, now);
  bytes_ += r.body_size;
  ++count_;
  if (deadline) add_expiring();
  paged_at(lvl).push_back(paged{r.segment, r.offset, r.length, r.body_size, true, deadline});
  ++paged_count_;
  paged_bytes_ += r.body_size;
  drop_for_limits(dropped);
  return accept::ok;
}

void queue::list_timed() {
  if (timed_listed || !timed_sink) return;
  timed_listed = true;
  timed_sink->push_back(id_);
}

void queue::add_expiring() {
  if (expiring_++ == 0) list_timed();
}

queue::entry queue::remove_front(std::deque<entry>& l) {
  entry e = std::move(l.front());
  l.pop_front();
  bytes_ -= e.msg->body.size();
  --count_;
  if (e.expires_at) --expiring_;
  return e;
}

paged_index& queue::paged_at(uint8_t lvl) {
  if (!paged_[lvl]) paged_[lvl] = std::make_unique<paged_index>(spool);
  return *paged_[lvl];
}

size_t queue::paged_ram_bytes() const {
  size_t n = paged_.capacity() * sizeof(paged_[0]);
  for (const auto& l : paged_)
    if (l) n += l->ram_bytes();
  return n;
}

void queue::refill(uint8_t lvl) {
  auto& mem = levels_[lvl];
  if (paged_at_count(lvl) == 0 || mem.size() >= read_ahead / 2) return;
  if (!mem.empty() && bytes_ - paged_bytes_ >= read_ahead_bytes / 2) return;
  auto& pg = *paged_[lvl];
  // Read back in arrival order; they take their place behind what is in memory (a message
  // arriving meanwhile was paged too, behind them). An unreadable record is logged by the store
  // and the message dropped from the queue. At least one, however large.
  std::vector<paged> taken;
  std::vector<journal::location> where;
  size_t before = pg.size();
  for (size_t bytes = 0;
       taken.size() < read_ahead && (taken.empty() || bytes < read_ahead_bytes);) {
    paged p;
    if (!pg.pop_front(p)) break;
    bytes += p.body_size;
    taken.push_back(p);
    where.push_back({p.segment, p.offset, p.length});
  }
  // Entries of an index block that could not be read back are gone (logged by the index).
  size_t lost = before - pg.size() - taken.size();
  paged_count_ -= lost;
  count_ -= lost;
  std::vector<message_ptr> got;
  if (reads)
    reads->read_many(*pager, where, got);
  else
    pager->read_many(where, got);
  for (size_t i = 0; i < taken.size(); ++i) {
    const paged& p = taken[i];
    --paged_count_;
    paged_bytes_ -= p.body_size;
    message_ptr m = std::move(got[i]);
    if (!m) {
      bytes_ -= p.body_size;
      --count_;
      if (p.expires_at) --expiring_;
      pager->release(p.segment, p.offset, store_id);
      continue;
    }
    mem.push_back(entry{next_seq_++, std::move(m), p.expires_at, bool(p.redelivered), lvl, true});
  }
}

size_t queue::page_out(size_t keep, size_t keep_bytes, page_budget& budget) {
  if (!pager) return 0;
  size_t n = 0;
  for (size_t lvl = 0; lvl < levels_.size() && budget.bytes > 0; ++lvl) {
    auto& mem = levels_[lvl];
    if (mem.size() <= keep && mem.size() <= 1) continue;
    auto& pg = paged_at(uint8_t(lvl));
    uint64_t mem_bytes = 0;
    for (const entry& e : mem) mem_bytes += e.msg->body.size();
    // From the back, so that each goes to the front of the paged tail and order is kept.
    while (budget.bytes > 0 && (mem.size() > keep || (mem.size() > 1 && mem_bytes > keep_bytes))) {
      entry& e = mem.back();
      mem_bytes -= e.msg->body.size();
      const message& m = *e.msg;
      if (!e.stored) {
        // Its record may exist (for other queues): shared if still there, else a spool record.
        // (Overwriting m's store fields is safe then: no queue holds a reference on them.)
        if (!m.store_id || !pager->retain(m.store_segment)) budget.ticket = pager->write(m, 1, {});
      }
      budget.bytes -= std::min(budget.bytes, m.body.size() + page_cost_per_message);
      pg.push_front(paged{m.store_segment, m.store_offset, m.store_length, uint32_t(m.body.size()),
                          e.redelivered, e.expires_at});
      ++paged_count_;
      paged_bytes_ += m.body.size();
      mem.pop_back();
      ++n;
    }
  }
  return n;
}

std::optional<queue::entry> queue::pop_front() {
  for (size_t i = levels_.size(); i-- > 0;) {
    refill(uint8_t(i));
    if (!levels_[i].empty()) return remove_front(levels_[i]);
  }
  return std::nullopt;
}

void queue::drop_for_limits(std::vector<entry>& dropped) {
  // drop-head: the oldest messages (lowest priority first) make room, RabbitMQ's default.
  while (count_ > 0 && ((policy_.max_length && count_ > *policy_.max_length) ||
                        (policy_.max_bytes && bytes_ > *policy_.max_bytes))) {
    for (size_t i = 0; i < levels_.size(); ++i) {
      refill(uint8_t(i));
      auto& l = levels_[i];
      if (l.empty()) continue;
      dropped.push_back(remove_front(l));
      break;
    }
  }
}

void queue::expire(int64_t now, std::vector<entry>& expired) {
  if (expiring_ == 0) return;
  // As RabbitMQ's classic queues: a message expires when it reaches the head.
  for (size_t i = 0; i < levels_.size(); ++i) {
    auto& l = levels_[i];
    for (;;) {
      refill(uint8_t(i));
      if (l.empty() || l.front().expires_at == 0 || l.front().expires_at > now) break;
      expired.push_back(remove_front(l));
    }
  }
}

std::optional<queue::entry> queue::take(int64_t now, std::vector<entry>& expired) {
  expire(now, expired);
  return pop_front();
}

void queue::requeue(entry e) {
  e.redelivered = true;
  bytes_ += e.msg->body.size();
  ++count_;
  if (e.expires_at) add_expiring();
  auto& l = level(e.level);
  auto pos = std::lower_bound(l.begin(), l.end(), e.seq,
                              [](const entry& x, uint64_t s) { return x.seq < s; });
  l.insert(pos, std::move(e));
}

size_t queue::purge() {
  size_t n = count_;
  for (auto& l : levels_) l.clear();
  for (auto& l : paged_) l.reset();
  paged_count_ = 0;
  paged_bytes_ = 0;
  bytes_ = 0;
  count_ = 0;
  expiring_ = 0;
  return n;
}

void queue::add_consumer(consumer* c) {
  auto pos = std::find_if(consumers_.begin(), consumers_.end(),
                          [&](const consumer* o) { return o->priority < c->priority; });
  consumers_.insert(pos, c);
}

void queue::rotate(std::list<consumer*>::iterator it) {
  consumer* c = *it;
  auto end = std::next(it);
  while (end != consumers_.end() && (*end)->priority == c->priority) ++end;
  consumers_.splice(end, consumers_, it);
}

}  // namespace warren::broker
