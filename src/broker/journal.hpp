// What a vhost tells its persistent store. The vhost decides what is durable (durable
// exchanges and queues, bindings between durable ends, persistent messages in durable queues);
// the store (src/store) decides how it reaches the disk. Every call is made on the vhost's home
// worker, in the order of the operations, so the store can keep one ordered log: a message is
// never on disk before the declaration of the queue holding it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "broker/exchange.hpp"
#include "broker/message.hpp"

namespace warren::broker {

struct queue_settings;
class index_spool;

// The definitions half: what vhost::snapshot reports too (an export collects it this way).
class definitions_journal {
 public:
  virtual ~definitions_journal() = default;

  // --- definitions (only durable ones reach the journal) ---
  virtual void exchange_declared(const exchange_settings& s) = 0;
  virtual void exchange_deleted(std::string_view name) = 0;
  // `store_id` is the queue's number in message records, stable across restarts.
  virtual void queue_declared(const queue_settings& s, uint32_t store_id) = 0;
  virtual void queue_deleted(std::string_view name) = 0;
  virtual void binding_changed(bool added, std::string_view source, bool dest_is_queue,
                               std::string_view dest, std::string_view key,
                               const common::field_table& args) = 0;
};

// The whole journal: definitions and messages.
class journal : public definitions_journal {
 public:
  // --- messages ---
  // Records the message before it is enqueued anywhere, holding `refs` references on its
  // segment (one per queue that will keep it there: durable queues, and queues that page it
  // out). `durable_queues` are the store ids of the durable queues it is for: a restart gives it
  // back to them. With none, the record is only a spool for paging and a restart ignores it.
  // Sets m.store_* and returns the ticket to wait for (see synced) before confirming it.
  virtual uint64_t write(const message& m, uint32_t refs,
                         std::span<const uint32_t> durable_queues) = 0;
  // A queue is done for good with the record at (segment, offset): acked, dropped, expired,
  // dead-lettered, purged, or its queue deleted. `queue_id` is the queue's store id for a durable
  // queue (recorded, so that a restart does not give it back), 0 for a queue that only paged it.
  virtual void release(uint32_t segment, uint32_t offset, uint32_t queue_id) = 0;
  // One more reference on an existing record (a queue pages out a message already stored).
  // False if the segment is gone (everyone released it): the caller writes a new record.
  virtual bool retain(uint32_t segment) = 0;
  // Reads a record back (paging in). Null if it cannot be read (logged).
  virtual message_ptr read(uint32_t segment, uint32_t offset, uint32_t length) = 0;
  struct location {
    uint32_t segment, offset, length;
  };
  // Reads several records (out[i] for where[i], null if unreadable). A store may read
  // neighbouring records with one system call; this default reads them one by one.
  virtual void read_many(std::span<const location> where, std::vector<message_ptr>& out) {
    out.clear();
    for (const auto& l : where) out.push_back(read(l.segment, l.offset, l.length));
  }

  // Where paged queues keep their indexes (paged_index.hpp): a spool file beside the store's
  // segments. Null: they keep them in RAM.
  virtual std::shared_ptr<index_spool> paged_index_spool() { return nullptr; }

  // Runs fn once everything written up to `ticket` is on disk: at once on the calling thread if
  // it is already, else later on the store's own thread (fn should only post somewhere).
  // Callable from any thread.
  virtual void when_synced(uint64_t ticket, std::function<void()> fn) = 0;
  // The highest ticket on disk. Any thread.
  virtual uint64_t synced() const = 0;
};

}  // namespace warren::broker
