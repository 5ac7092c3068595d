// A queue: its messages in order (per priority level), its consumers, and its limits. Owned by
// the vhost and touched only on the vhost's worker. Delivery bookkeeping (delivery tags,
// unacknowledged messages, prefetch) lives in the vhost's channel records; the queue keeps what
// is ready to deliver, and hands back what it drops so the vhost can dead-letter it.
#pragma once

#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "broker/dedup.hpp"
#include "broker/dest_id.hpp"
#include "broker/error.hpp"
#include "broker/journal.hpp"
#include "broker/message.hpp"
#include "broker/paged_index.hpp"
#include "broker/stats.hpp"
#include "common/field_table.hpp"

namespace warren::broker {

class read_cache;

struct queue_settings {
  std::string name;
  bool durable = false;
  bool exclusive = false;
  bool auto_delete = false;
  common::field_table arguments;
  uint64_t exclusive_owner = 0;  // connection id, for exclusive queues
};

enum class overflow_mode { drop_head, reject_publish, reject_publish_dlx };

// What the arguments ask for (x-max-length, x-overflow, x-message-ttl, x-dead-letter-*, ...).
struct queue_policy {
  std::optional<uint64_t> max_length;
  std::optional<uint64_t> max_bytes;
  overflow_mode overflow = overflow_mode::drop_head;
  std::optional<int64_t> message_ttl_ms;
  std::optional<int64_t> expires_ms;  // delete after this long unused
  std::optional<std::string> dead_letter_exchange;
  std::optional<std::string> dead_letter_routing_key;
  uint8_t max_priority = 0;  // 0: no priorities
  bool single_active_consumer = false;
};

// Validates the arguments and refuses bad values like RabbitMQ (406 PRECONDITION_FAILED).
maybe_error parse_queue_arguments(const common::field_table& args, queue_policy& policy);

// Milliseconds on the steady clock; 0 means "never".
int64_t now_ms();

struct consumer;  // vhost.hpp

class queue {
 public:
  struct entry {
    uint64_t seq;  // arrival order; requeued messages go back to their place by it
    message_ptr msg;
    int64_t expires_at = 0;  // now_ms() deadline, 0 = never
    bool redelivered = false;
    uint8_t level = 0;    // priority level
    bool stored = false;  // holds a reference on the message's store record (see journal)
  };
  // A message paged out: only where its record is, in the queue's paged index (on disk).
  using paged = broker::paged;
  enum class accept { ok, rejected };

  queue(queue_settings s, queue_policy p, dest_id id);

  const queue_settings& settings() const { return settings_; }
  const queue_policy& policy() const { return policy_; }
  const std::string& name() const { return settings_.name; }
  dest_id id() const { return id_; }

  // Adds a message; messages pushed out by drop-head overflow are appended to `dropped`.
  // `stored`: the queue holds a reference on m's store record; such a message is paged out
  // (kept only as its location) when pages(m) says so.
  accept enqueue(message_ptr m, int64_t now, std::vector<entry>& dropped, bool redelivered = false,
                 bool stored = false);
  // Whether a message enqueued now would be paged out: the queue pages (it has a pager) and
  // either holds more than page_threshold messages in memory or has paged messages at m's
  // priority level already (they must stay behind those, in order).
  bool pages(const message& m) const;
  // Recovery without decoding the record: a stored message (where it is, its body size,
  // priority and TTL) goes straight to the paged tail, marked redelivered, if the queue would
  // page it now; nullopt if it would not (the caller then decodes the message and enqueues it).
  struct stored_ref {
    uint32_t segment, offset, length, body_size;
    uint8_t priority = 0;
    std::optional<int64_t> ttl_ms;
  };
  std::optional<accept> enqueue_paged(const stored_ref& r, int64_t now,
                                      std::vector<entry>& dropped);
  // The next message to deliver, skipping (into `expired`) those whose TTL has passed.
  std::optional<entry> take(int64_t now, std::vector<entry>& expired);
  // Moves expired messages at the heads into `expired`.
  void expire(int64_t now, std::vector<entry>& expired);
  // Puts back an unacknowledged message at its original place, marked redelivered.
  void requeue(entry e);
  size_t purge();
  // f(segment, offset) for every ready message holding a store reference, paged or not.
  template <typename F>
  void for_each_stored(F&& f) const {
    for (const auto& l : levels_)
      for (const auto& e : l)
        if (e.stored) f(e.msg->store_segment, e.msg->store_offset);
    for (const auto& l : paged_)
      if (l) l->for_each([&](const paged& p) { f(p.segment, p.offset); });
  }
  size_t paged_count() const { return paged_count_; }
  // RAM the paged indexes hold (buffers and block lists), whatever the depth of the backlog.
  size_t paged_ram_bytes() const;
  uint64_t paged_bytes() const { return paged_bytes_; }
  // What one step of a gradual page-out may do: `bytes` is spent by each message paged (its
  // body and page_cost_per_message) and the page-out stops when it reaches 0; `ticket` is the
  // store's ticket of the last record written (0: none), which the caller can wait for.
  struct page_budget {
    size_t bytes = SIZE_MAX;
    uint64_t ticket = 0;
  };
  static constexpr size_t page_cost_per_message = 64;
  // Pages out the ready messages beyond the first `keep` (or `keep_bytes` of bodies) in memory
  // at each priority level (memory pressure), within `budget`, writing spool records for those
  // not in the store yet. Returns how many.
  size_t page_out(size_t keep, size_t keep_bytes, page_budget& budget);
  // Deduplication (x-message-deduplication = true; broker/dedup.hpp): the vhost skips this
  // queue for a message whose key the filter has seen, and remembers the key once the queue
  // took the message.
  std::unique_ptr<dedup_filter> dedup;
  // Paging: reads records back, releases unreadable ones. Set by the vhost for every queue
  // when it has a store.
  journal* pager = nullptr;
  // The shard's cache of records read back (fanout messages paged by several queues are read
  // once); null: every read goes to the pager.
  read_cache* reads = nullptr;
  // Where the paged indexes keep their blocks (the pager's spool file); null: in RAM.
  std::shared_ptr<index_spool> spool;
  size_t page_threshold = 0;
  // Under memory pressure also a bound in bytes on what stays in memory (SIZE_MAX: none), so
  // that large messages do not keep read_ahead times their size in memory.
  size_t page_threshold_bytes = SIZE_MAX;
  // Paged messages read back at a time (and at most read_ahead_bytes of bodies), when fewer than
  // half as many (or half as many bytes) are left in memory.
  static constexpr size_t read_ahead = 512;
  static constexpr size_t read_ahead_bytes = 4u << 20;
  size_t message_count() const { return count_; }
  uint64_t message_bytes() const { return bytes_; }
  bool has_expiring() const { return expiring_ > 0; }
  // Where the queue lists itself when it starts holding messages that expire: the vhost's list
  // of queues its housekeeping tick looks at (vhost::timed_), so that the tick does not walk
  // every queue of a vhost with 100 000 of them. `timed_listed` says it is on that list.
  std::vector<dest_id>* timed_sink = nullptr;
  bool timed_listed = false;
  void list_timed();

  // Consumers in delivery preference: higher x-priority first; within a priority the one served
  // longest ago first (the vhost rotates a consumer to the back of its group after a delivery).
  std::list<consumer*>& consumers() { return consumers_; }
  void add_consumer(consumer* c);
  void rotate(std::list<consumer*>::iterator it);

  bool had_consumer = false;        // auto-delete applies only once a consumer has come and gone
  bool deleting = false;            // set while the vhost tears it down
  int64_t last_used = 0;            // for x-expires
  std::vector<uint64_t> throttled;  // publishing channels this queue holds back
  int64_t flow_credit = 0;          // deliveries minus publishes, capped (see vhost::flow_slack)
  int64_t flow_credit_bytes = 0;    // the same in body bytes (vhost::flow_slack_bytes)
  uint32_t store_id = 0;            // its number in the message store; 0: not durable

  // Statistics (broker/stats.hpp), kept by the vhost on this queue's worker.
  uint32_t unacked = 0;        // delivered or got, not yet settled
  uint64_t unacked_bytes = 0;  // their bodies
  queue_counters stats;
  queue_history history;

 private:
  std::deque<entry>& level(uint8_t p) { return levels_[p]; }
  void drop_for_limits(std::vector<entry>& dropped);
  std::optional<entry> pop_front();
  void refill(uint8_t lvl);                  // pages in the head of level lvl's paged tail
  entry remove_front(std::deque<entry>& l);  // keeps the counters right
  void add_expiring();                       // one more ready message with a deadline
  bool pages_level(uint8_t lvl) const;
  bool over_limits(uint64_t body_size) const;
  int64_t deadline(std::optional<int64_t> message_ttl, int64_t now) const;  // 0: none

  queue_settings settings_;
  queue_policy policy_;
  dest_id id_;
  uint64_t next_seq_ = 1;
  uint64_t bytes_ = 0;
  size_t count_ = 0;
  size_t expiring_ = 0;                    // ready messages with a deadline
  std::vector<std::deque<entry>> levels_;  // index = priority level; highest delivered first
  paged_index& paged_at(uint8_t lvl);      // created on first use
  size_t paged_at_count(uint8_t lvl) const { return paged_[lvl] ? paged_[lvl]->size() : 0; }
  // Per level, the tail that is only on disk (null until the level first pages).
  std::vector<std::unique_ptr<paged_index>> paged_;
  size_t paged_count_ = 0;
  uint64_t paged_bytes_ = 0;  // bodies of the paged entries
  std::list<consumer*> consumers_;
};

}  // namespace warren::broker
