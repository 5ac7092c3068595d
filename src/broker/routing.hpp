// A vhost's routing state: its exchanges, its bindings and the directory of its queues by name
// (the default exchange routes to each queue by its name). Changed only through apply() with a
// routing_change, a plain value: the owner of the definitions (the vhost) checks a declaration,
// applies the change to its own table and hands the same value to whoever keeps a copy
// (vhost::set_routing_observer). Once queues are spread over workers, each worker keeps a copy
// and routes its publishers' messages there; a node of a cluster would be fed the same values
// over its link. Not thread-safe: each copy is touched on one thread only.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "broker/dest_id.hpp"
#include "broker/exchange.hpp"
#include "common/field_table.hpp"

namespace warren::broker {

struct binding {
  std::string source;
  dest_id dest;
  std::string key;
  common::field_table args;
  bool operator==(const binding&) const = default;
};

// The changes, each applied as a whole. Ids are chosen by the owner, so every copy names the same
// object with the same id.
struct exchange_added {
  exchange_settings settings;
  dest_id id;
};
// The exchange and every binding from it or to it.
struct exchange_removed {
  std::string name;
};
struct binding_added {
  binding b;
};
struct binding_removed {
  binding b;
};
struct queue_added {
  std::string name;
  dest_id id;
};
// The queue's name and every binding to it.
struct queue_removed {
  std::string name;
  dest_id id;
};
using routing_change = std::variant<exchange_added, exchange_removed, binding_added,
                                    binding_removed, queue_added, queue_removed>;

class routing_table {
 public:
  // Exchange ids carry this bit; queue ids do not.
  static constexpr dest_id exchange_bit = dest_id(1) << 63;
  // The default exchange ("") and the amq.* ones take ids 1 to 6 in every copy; the owner numbers
  // what it adds from first_free_id on.
  static constexpr dest_id first_free_id = 7;

  routing_table();

  void apply(const routing_change& c);

  exchange* find_exchange(std::string_view name) const;
  exchange* exchange_by_id(dest_id id) const;
  // The queue of that name in the directory.
  std::optional<dest_id> queue_id(std::string_view name) const;
  bool has_binding(const binding& b) const;
  // True if some binding has `name` as its source.
  bool bound_from(std::string_view name) const;
  // The sources of the bindings to `d` (each once, in name order): when `d` goes, these may be
  // left unused (auto-delete).
  std::vector<std::string> sources_bound_to(dest_id d) const;

  const std::map<std::string, std::unique_ptr<exchange>, std::less<>>& exchanges() const {
    return exchanges_;
  }
  const std::vector<binding>& bindings() const { return bindings_; }
  size_t queue_count() const { return queues_.size(); }

  // Appends the queues `m` goes to from `x` (following exchange-to-exchange bindings and
  // alternate exchanges; `seen` holds the exchanges passed, against cycles). Returns true if an
  // exchange on the way handed the message to an external sink, or dropped it as a duplicate
  // (broker/dedup.hpp: then `*duplicate` is set, if given; `now` is the deduplication window's
  // clock). Hot path: allocates nothing once its scratch buffer has grown.
  // On a worker's copy, `owner_only` is given: an exchange on the way that keeps state
  // (exchange::keeps_state) sets it and stops the routing (the authority routes that message).
  bool route(exchange& x, const message& m, int64_t now, dest_list& out, dest_set& seen,
             bool* duplicate = nullptr, bool* owner_only = nullptr);

 private:
  void add_exchange(const exchange_settings& s, dest_id id);
  // Unbinds every binding to `d` from its source exchange.
  void remove_bindings_to(dest_id d);

  std::map<std::string, std::unique_ptr<exchange>, std::less<>> exchanges_;
  std::map<dest_id, exchange*> exchange_ids_;
  std::vector<binding> bindings_;
  std::map<std::string, dest_id, std::less<>> queues_;
  std::vector<dest_id> scratch_;  // route(): each exchange's matches, reused
};

}  // namespace warren::broker
