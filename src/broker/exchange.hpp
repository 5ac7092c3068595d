// Exchanges: named routers from a message's routing key (or headers) to destinations (queues,
// and exchanges for exchange-to-exchange bindings). One class per routing rule; a routing_table
// (broker/routing.hpp) owns them and keeps the list of bindings. Runs on that table's thread only.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/consistent_hash_ring.hpp"
#include "broker/dedup.hpp"
#include "broker/dest_id.hpp"
#include "broker/error.hpp"
#include "broker/headers_match.hpp"
#include "broker/message.hpp"
#include "broker/recent_history.hpp"
#include "broker/stats.hpp"
#include "broker/topic_index.hpp"
#include "common/field_table.hpp"

namespace warren::broker {

struct exchange_settings {
  std::string name;
  std::string type;
  bool durable = false;
  bool auto_delete = false;
  bool internal = false;
  common::field_table arguments;
};

// Publishes to an exchange routed on other workers' copies of the routing table
// (broker/routing_copy.cpp): one slot per worker, each written by its worker only (a relaxed load
// and store, no contended cache line), added to the authority's own counts when read.
struct copied_counters {
  explicit copied_counters(size_t workers) : slots(workers) {}
  struct alignas(64) slot {
    std::atomic<uint64_t> publish_in{0};
    std::atomic<uint64_t> publish_out{0};
  };
  std::vector<slot> slots;
};

class exchange {
 public:
  exchange(exchange_settings s, dest_id id) : settings_(std::move(s)), id_(id) {}
  virtual ~exchange() = default;

  const exchange_settings& settings() const { return settings_; }
  const std::string& name() const { return settings_.name; }
  dest_id id() const { return id_; }

  // Refuses a binding this type cannot hold (e.g. bad x-match) before it is recorded.
  virtual maybe_error check_binding(std::string_view /*key*/,
                                    const common::field_table& /*args*/) const {
    return std::nullopt;
  }
  // The routing table guarantees each (destination, key, arguments) is added once and removed
  // once.
  virtual void add_binding(dest_id d, const std::string& key, const common::field_table& args) = 0;
  virtual void remove_binding(dest_id d, const std::string& key,
                              const common::field_table& args) = 0;
  // Appends matching destinations (duplicates allowed: the vhost removes them).
  virtual void route(const message& m, std::vector<dest_id>& out) const = 0;
  // A message was published to this exchange (after routing).
  virtual void on_published(const message_ptr& /*m*/) {}
  // Messages a newly bound queue receives at once (the recent-history exchange's history).
  virtual void history(std::vector<message_ptr>& /*out*/) const {}
  // Hands the message to a receiver outside the queue model (the web gateway's inboxes, rooms
  // and feeds). True if it took the message, which then counts as routed.
  virtual bool deliver_external(const message& /*m*/) { return false; }

  // Deduplication (broker/dedup.hpp): set for the type x-message-deduplication and for any
  // exchange declared with x-message-deduplication = true; the vhost asks it before routing.
  std::unique_ptr<dedup_filter> dedup;

  // Routing this exchange changes state (its history, a gateway sink, a federation link's
  // filter): it is routed by the authority only, never on a worker's copy. Deduplication too.
  virtual bool keeps_state() const { return dedup != nullptr; }
  // Statistics (broker/stats.hpp), on the vhost's worker.
  exchange_counters stats;
  // Shared by the authority's exchange and its copies on the other workers (null unsharded).
  std::shared_ptr<copied_counters> copied;
  // stats plus what the copies counted: the authority reads this.
  exchange_counters counts() const {
    exchange_counters c = stats;
    if (copied)
      for (const auto& s : copied->slots) {
        c.publish_in += s.publish_in.load(std::memory_order_relaxed);
        c.publish_out += s.publish_out.load(std::memory_order_relaxed);
      }
    return c;
  }
  exchange_history samples;

 private:
  exchange_settings settings_;
  dest_id id_;
};

// The exchange types Warren knows; nullptr for an unknown type name.
std::unique_ptr<exchange> make_exchange(exchange_settings s, dest_id id);
bool is_known_exchange_type(std::string_view type);

class direct_exchange final : public exchange {
 public:
  using exchange::exchange;
  void add_binding(dest_id d, const std::string& key, const common::field_table& args) override;
  void remove_binding(dest_id d, const std::string& key, const common::field_table& args) override;
  void route(const message& m, std::vector<dest_id>& out) const override;

 private:
  std::unordered_map<std::string, std::vector<dest_id>> by_key_;
};

class fanout_exchange final : public exchange {
 public:
  using exchange::exchange;
  void add_binding(dest_id d, const std::string& key, const common::field_table& args) override;
  void remove_binding(dest_id d, const std::string& key, const common::field_table& args) override;
  void route(const message& m, std::vector<dest_id>& out) const override;

 private:
  std::map<dest_id, uint32_t> bound_;  // destination -> number of bindings to it
};

class topic_exchange final : public exchange {
 public:
  using exchange::exchange;
  void add_binding(dest_id d, const std::string& key, const common::field_table& args) override;
  void remove_binding(dest_id d, const std::string& key, const common::field_table& args) override;
  void route(const message& m, std::vector<dest_id>& out) const override;

 private:
  topic_index index_;
  // Bindings that differ only in arguments share one index entry.
  std::map<std::pair<std::string, dest_id>, uint32_t> refs_;
};

class headers_exchange final : public exchange {
 public:
  using exchange::exchange;
  maybe_error check_binding(std::string_view key, const common::field_table& args) const override;
  void add_binding(dest_id d, const std::string& key, const common::field_table& args) override;
  void remove_binding(dest_id d, const std::string& key, const common::field_table& args) override;
  void route(const message& m, std::vector<dest_id>& out) const override;

 private:
  struct rule {
    dest_id dest;
    x_match mode;
    common::field_table args;
  };
  std::vector<rule> rules_;
};

// x-recent-history (seed 000, the RabbitMQ chat): routes like fanout and keeps the last N
// messages (x-recent-history-length, default 20), which a queue receives when it is bound, so
// that a new chat member sees the recent conversation. A message with the header
// x-recent-history-no-store = true is routed but not kept.
class recent_history_exchange final : public exchange {
 public:
  recent_history_exchange(exchange_settings s, dest_id id, size_t length)
      : exchange(std::move(s), id), history_(length) {}
  void add_binding(dest_id d, const std::string& key, const common::field_table& args) override {
    fanout_.add_binding(d, key, args);
  }
  void remove_binding(dest_id d, const std::string& key, const common::field_table& args) override {
    fanout_.remove_binding(d, key, args);
  }
  void route(const message& m, std::vector<dest_id>& out) const override { fanout_.route(m, out); }
  void on_published(const message_ptr& m) override;
  void history(std::vector<message_ptr>& out) const override;
  bool keeps_state() const override { return true; }

 private:
  fanout_exchange fanout_{exchange_settings{}, 0};
  recent_history<message_ptr> history_;
};

// x-consistent-hash (seed 001: a queue is single-threaded, so spread one hot stream over
// several): each message goes to one bound queue picked by hashing its routing key, or the
// header named by the argument hash-header, or the property named by hash-property
// (message_id, correlation_id or timestamp). The binding key is the queue's weight.
class consistent_hash_exchange final : public exchange {
 public:
  using exchange::exchange;
  maybe_error check_binding(std::string_view key, const common::field_table& args) const override;
  void add_binding(dest_id d, const std::string& key, const common::field_table& args) override;
  void remove_binding(dest_id d, const std::string& key, const common::field_table& args) override;
  void route(const message& m, std::vector<dest_id>& out) const override;

 private:
  consistent_hash_ring ring_;
  std::map<dest_id, uint32_t> bindings_;  // destination -> number of bindings (first weight wins)
};

// The web gateway's exchanges (docs/web-api.md): x-warren-inbox (routing key: a user id),
// x-warren-room (a room name) and x-warren-feed (the user whose followers get it). Queues may be
// bound to them and are routed to as by a direct exchange; besides, every message goes to the
// sink the gateway attaches, on the vhost's home worker. Without a sink (the gateway is not
// running in this vhost) they route to their queues only.
class sink_exchange final : public exchange {
 public:
  using sink = std::function<bool(const message&)>;
  using exchange::exchange;
  void add_binding(dest_id d, const std::string& key, const common::field_table& args) override {
    direct_.add_binding(d, key, args);
  }
  void remove_binding(dest_id d, const std::string& key, const common::field_table& args) override {
    direct_.remove_binding(d, key, args);
  }
  void route(const message& m, std::vector<dest_id>& out) const override { direct_.route(m, out); }
  bool deliver_external(const message& m) override { return sink_ && sink_(m); }
  bool keeps_state() const override { return true; }
  void set_sink(sink s) { sink_ = std::move(s); }

 private:
  direct_exchange direct_{exchange_settings{}, 0};
  sink sink_;
};

bool is_sink_exchange_type(std::string_view type);

// x-federation-upstream (exchange_federation.cpp): what a federation link's downstream (RabbitMQ's
// federation plugin, or Warren's) declares on its upstream and binds to the federated exchange.
// Routes like fanout, except a message that has already passed the downstream (its
// x-received-from names x-downstream-name and x-downstream-vhost) or made x-max-hops hops.
class federation_upstream_exchange final : public exchange {
 public:
  federation_upstream_exchange(exchange_settings s, dest_id id);
  void add_binding(dest_id d, const std::string& key, const common::field_table& args) override {
    fanout_.add_binding(d, key, args);
  }
  void remove_binding(dest_id d, const std::string& key, const common::field_table& args) override {
    fanout_.remove_binding(d, key, args);
  }
  void route(const message& m, std::vector<dest_id>& out) const override;
  bool keeps_state() const override { return true; }

 private:
  fanout_exchange fanout_{exchange_settings{}, 0};
  int64_t max_hops_ = 1;
  std::string downstream_name_;   // empty: unknown (RabbitMQ before 3.3)
  std::string downstream_vhost_;  // empty: unknown (RabbitMQ before 3.8.9)
};
// RabbitMQ's validation of its arguments: x-max-hops present and an integer.
maybe_error check_federation_upstream_arguments(const common::field_table& args);
// RabbitMQ's should_forward: false if the x-received-from header has max_hops entries or one
// naming (cluster, vhost). Federation links apply it to what they receive too.
bool federation_should_forward(const std::optional<common::field_table>& headers, int64_t max_hops,
                               std::string_view cluster, std::string_view vhost);

// Validates type-specific declare arguments (e.g. x-recent-history-length).
maybe_error check_exchange_arguments(const exchange_settings& s);

}  // namespace warren::broker
