// A queue: its messages in order, its consumers, and its limits. Owned by the vhost and touched
// only on the vhost's worker. Delivery bookkeeping (delivery tags, unacknowledged messages,
// prefetch) lives in the vhost's channel records; the queue keeps what is ready to deliver.
#pragma once

#include <cstdint>
#include <deque>
#include <list>
#include <optional>
#include <string>

#include "broker/dest_id.hpp"
#include "broker/error.hpp"
#include "broker/message.hpp"
#include "common/field_table.hpp"

namespace warren::broker {

struct queue_settings {
  std::string name;
  bool durable = false;
  bool exclusive = false;
  bool auto_delete = false;
  common::field_table arguments;
  uint64_t exclusive_owner = 0;  // connection id, for exclusive queues
};

enum class overflow_mode { drop_head, reject_publish };

// Limits taken from the arguments (x-max-length, x-max-length-bytes, x-overflow).
struct queue_limits {
  std::optional<uint64_t> max_length;
  std::optional<uint64_t> max_bytes;
  overflow_mode overflow = overflow_mode::drop_head;
};

// Validates the arguments Warren understands and refuses the others' bad values like RabbitMQ
// (406 PRECONDITION_FAILED); fills `limits`.
maybe_error parse_queue_arguments(const common::field_table& args, queue_limits& limits);

struct consumer;  // vhost.hpp

class queue {
 public:
  struct entry {
    uint64_t seq;  // arrival order; requeued messages go back to their place by it
    message_ptr msg;
    bool redelivered = false;
  };

  queue(queue_settings s, queue_limits l, dest_id id)
      : settings_(std::move(s)), limits_(l), id_(id) {}

  const queue_settings& settings() const { return settings_; }
  const std::string& name() const { return settings_.name; }
  dest_id id() const { return id_; }

  // False when the queue refuses the message (x-overflow reject-publish at its limit).
  bool enqueue(message_ptr m);
  std::optional<entry> take();
  // Puts back an unacknowledged message at its original place, marked redelivered.
  void requeue(entry e);
  size_t purge();
  size_t message_count() const { return ready_.size(); }
  uint64_t message_bytes() const { return bytes_; }

  std::list<consumer*>& consumers() { return consumers_; }
  // Round-robin position among consumers.
  std::list<consumer*>::iterator& next_consumer() { return next_; }
  bool had_consumer = false;  // auto-delete applies only once a consumer has come and gone
  bool deleting = false;      // set while the vhost tears it down

 private:
  void enforce_limits();

  queue_settings settings_;
  queue_limits limits_;
  dest_id id_;
  uint64_t next_seq_ = 1;
  uint64_t bytes_ = 0;
  std::deque<entry> ready_;
  std::list<consumer*> consumers_;
  std::list<consumer*>::iterator next_ = consumers_.end();
};

}  // namespace warren::broker
