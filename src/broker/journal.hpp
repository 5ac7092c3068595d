// What a vhost tells its persistent store. The vhost decides what is durable (durable
// exchanges and queues, bindings between durable ends, persistent messages in durable queues);
// the store (src/store) decides how it reaches the disk. Every call is made on the vhost's home
// worker, in the order of the operations, so the store can keep one ordered log: a message is
// never on disk before the declaration of the queue holding it.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "broker/exchange.hpp"
#include "broker/message.hpp"
#include "broker/queue.hpp"

namespace warren::broker {

class journal {
 public:
  virtual ~journal() = default;

  // --- definitions (only durable ones reach the journal) ---
  virtual void exchange_declared(const exchange_settings& s) = 0;
  virtual void exchange_deleted(std::string_view name) = 0;
  // `store_id` is the queue's number in message records, stable across restarts.
  virtual void queue_declared(const queue_settings& s, uint32_t store_id) = 0;
  virtual void queue_deleted(std::string_view name) = 0;
  virtual void binding_changed(bool added, std::string_view source, bool dest_is_queue,
                               std::string_view dest, std::string_view key,
                               const common::field_table& args) = 0;

  // --- messages ---
  // Gives `m` its store id and segment (message::store_id) before it is enqueued anywhere,
  // holding `refs` references on that segment (one per durable queue it is meant for).
  virtual void assign(const message& m, uint32_t refs) = 0;
  // Gives back references taken by assign that no queue used (a queue refused the message).
  virtual void unref(const message& m, uint32_t n) = 0;
  // Records the message, held by the queues `queue_ids` (store ids). Returns the ticket to
  // wait for (see synced) before confirming it to the publisher.
  virtual uint64_t write(const message& m, std::span<const uint32_t> queue_ids) = 0;
  // The queue `queue_id` is done with `m` for good (acked, dropped, expired, dead-lettered,
  // purged, or its queue deleted).
  virtual void release(const message& m, uint32_t queue_id) = 0;

  // Runs fn once everything written up to `ticket` is on disk: at once on the calling thread if
  // it is already, else later on the store's own thread (fn should only post somewhere).
  // Callable from any thread.
  virtual void when_synced(uint64_t ticket, std::function<void()> fn) = 0;
  // The highest ticket on disk. Any thread.
  virtual uint64_t synced() const = 0;
};

}  // namespace warren::broker
