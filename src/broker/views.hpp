// Plain copies of the broker's objects for the management API and metrics: made on the object's
// worker (a vhost's views on its home worker, a connection's on its own), then carried to the
// worker answering the request. No pointers into the model cross with them.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "broker/stats.hpp"
#include "common/field_table.hpp"

namespace warren::broker {

// A deduplicating exchange's or queue's window (broker/dedup.hpp).
struct dedup_view {
  uint64_t ids = 0;       // remembered now
  uint64_t capacity = 0;  // x-cache-size
  uint64_t dropped = 0;   // duplicates dropped since the start
  uint64_t memory = 0;    // bytes the window holds
};

struct queue_view {
  std::string name;
  bool durable = false;
  bool auto_delete = false;
  bool exclusive = false;
  uint64_t exclusive_owner = 0;  // connection id
  common::field_table arguments;
  size_t worker = 0;  // the worker (shard) the queue lives on
  uint64_t ready = 0;
  uint64_t unacked = 0;
  uint64_t ready_bytes = 0;
  uint64_t unacked_bytes = 0;
  uint64_t paged = 0;  // ready messages held only on disk
  uint32_t consumers = 0;
  queue_counters counters;
  std::array<double, 6> rates{};  // per queue_series
  // Only when asked for (samples, or a single queue): the history, and the consumers.
  std::shared_ptr<const queue_history> history;
  uint64_t memory = 0;  // bytes the queue's bookkeeping and in-memory bodies hold, roughly
  std::optional<dedup_view> dedup;
};

struct exchange_view {
  std::string name;
  std::string type;
  bool durable = false;
  bool auto_delete = false;
  bool internal = false;
  common::field_table arguments;
  exchange_counters counters;
  std::array<double, 2> rates{};
  std::optional<dedup_view> dedup;
};

struct binding_view {
  std::string source;
  std::string destination;
  bool to_exchange = false;  // destination_type "exchange" (else "queue")
  std::string routing_key;
  common::field_table arguments;
};

struct consumer_view {
  std::string tag;
  std::string queue;
  uint64_t channel_id = 0;
  bool ack_required = true;
  bool exclusive = false;
  uint16_t prefetch = 0;
  common::field_table arguments;  // x-priority, as given
  bool active = true;             // false for a waiting single-active consumer
};

// A channel as its vhost sees it: delivery bookkeeping.
struct channel_usage {
  uint64_t channel_id = 0;
  uint32_t unacked = 0;
  uint32_t consumers = 0;
  uint16_t global_prefetch = 0;
};

// The sums of a vhost (or of the broker).
struct vhost_totals {
  uint64_t ready = 0;
  uint64_t unacked = 0;
  uint64_t ready_bytes = 0;
  uint64_t unacked_bytes = 0;
  uint64_t queues = 0;
  uint64_t exchanges = 0;
  uint64_t consumers = 0;
  queue_counters counters;
  std::array<double, 6> rates{};  // per queue_series
  void add(const vhost_totals& o);
};

// An AMQP channel as its connection sees it (on the connection's worker).
struct channel_view {
  uint64_t id = 0;  // broker-wide, the vhost's key
  uint16_t number = 0;
  bool confirm = false;
  bool transactional = false;
  bool closing = false;
  // Held back by a queue's backlog, or by what it handed to other workers or nodes.
  bool flow_blocked = false;
  uint16_t prefetch = 0;      // basic.qos for new consumers
  uint64_t unconfirmed = 0;
  uint64_t uncommitted = 0;
  uint64_t publish = 0;
  uint64_t confirmed = 0;
  uint64_t returned = 0;
  uint64_t delivered = 0;  // deliveries and gets written to the client
  uint64_t acked = 0;      // acknowledgements the client sent
  // Per second over the last 5 s: publish, confirmed, returned, delivered, acked.
  std::array<double, 5> rates{};
  int64_t idle_since = 0;
};

// A client connection (AMQP for now) on its worker.
struct connection_view {
  uint64_t id = 0;
  size_t worker = 0;
  std::string name;  // "peer_host:peer_port -> host:port"
  std::string protocol = "AMQP 0-9-1";
  std::string peer_host;
  uint16_t peer_port = 0;
  std::string host;
  uint16_t port = 0;
  std::string user;
  std::string vhost;
  std::string state;  // starting, tuning, opening, running, blocking, blocked, closing
  std::string auth_mechanism;
  // TLS, in RabbitMQ's words (ssl_protocol "tlsv1.3", ...); ssl false on a plain connection.
  // The peer_cert_* are empty without a client certificate.
  bool ssl = false;
  std::string ssl_protocol;
  std::string ssl_key_exchange;
  std::string ssl_cipher;
  std::string ssl_hash;
  std::string peer_cert_subject;
  std::string peer_cert_issuer;
  std::string peer_cert_validity;
  common::field_table client_properties;
  uint16_t channel_max = 0;
  uint32_t frame_max = 0;
  uint16_t heartbeat = 0;
  int64_t connected_at = 0;  // wall ms
  uint64_t recv_oct = 0;
  uint64_t send_oct = 0;
  uint64_t recv_cnt = 0;
  uint64_t send_cnt = 0;
  uint64_t send_pend = 0;
  double recv_rate = 0;
  double send_rate = 0;
  std::vector<channel_view> channels;
};

}  // namespace warren::broker
