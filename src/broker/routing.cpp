// The routing table: exchanges, bindings, the queue directory, and routing through them.
#include "broker/routing.hpp"

#include <algorithm>
#include <set>

#include "broker/dedup.hpp"

namespace warren::broker {

routing_table::routing_table() {
  dest_id id = 1;
  for (auto [n, t] :
       std::initializer_list<std::pair<const char*, const char*>>{{"", "direct"},
                                                                  {"amq.direct", "direct"},
                                                                  {"amq.fanout", "fanout"},
                                                                  {"amq.topic", "topic"},
                                                                  {"amq.headers", "headers"},
                                                                  {"amq.match", "headers"}}) {
    exchange_settings s;
    s.name = n;
    s.type = t;
    s.durable = true;
    add_exchange(s, exchange_bit | id++);
  }
}

void routing_table::add_exchange(const exchange_settings& s, dest_id id) {
  auto x = make_exchange(s, id);
  exchange_ids_[id] = x.get();
  exchanges_[s.name] = std::move(x);
}

void routing_table::remove_bindings_to(dest_id d) {
  for (auto it = bindings_.begin(); it != bindings_.end();) {
    if (it->dest == d) {
      if (exchange* x = find_exchange(it->source)) x->remove_binding(d, it->key, it->args);
      it = bindings_.erase(it);
    } else {
      ++it;
    }
  }
}

void routing_table::apply(const routing_change& c) {
  std::visit(
      [&](const auto& ch) {
        using T = std::decay_t<decltype(ch)>;
        if constexpr (std::is_same_v<T, exchange_added>) {
          add_exchange(ch.settings, ch.id);
        } else if constexpr (std::is_same_v<T, exchange_removed>) {
          auto it = exchanges_.find(ch.name);
          if (it == exchanges_.end()) return;
          dest_id id = it->second->id();
          // Bindings from it go without unbinding them one by one: the exchange goes too.
          std::erase_if(bindings_, [&](const binding& b) { return b.source == ch.name; });
          remove_bindings_to(id);
          exchange_ids_.erase(id);
          exchanges_.erase(it);
        } else if constexpr (std::is_same_v<T, binding_added>) {
          if (exchange* x = find_exchange(ch.b.source)) {
            x->add_binding(ch.b.dest, ch.b.key, ch.b.args);
            bindings_.push_back(ch.b);
          }
        } else if constexpr (std::is_same_v<T, binding_removed>) {
          auto it = std::find(bindings_.begin(), bindings_.end(), ch.b);
          if (it == bindings_.end()) return;
          if (exchange* x = find_exchange(ch.b.source))
            x->remove_binding(ch.b.dest, ch.b.key, ch.b.args);
          bindings_.erase(it);
        } else if constexpr (std::is_same_v<T, queue_added>) {
          queues_[ch.name] = ch.id;
        } else if constexpr (std::is_same_v<T, queue_removed>) {
          remove_bindings_to(ch.id);
          if (auto it = queues_.find(ch.name); it != queues_.end() && it->second == ch.id)
            queues_.erase(it);
        }
      },
      c);
}

exchange* routing_table::find_exchange(std::string_view name) const {
  auto it = exchanges_.find(name);
  return it == exchanges_.end() ? nullptr : it->second.get();
}

exchange* routing_table::exchange_by_id(dest_id id) const {
  auto it = exchange_ids_.find(id);
  return it == exchange_ids_.end() ? nullptr : it->second;
}

std::optional<dest_id> routing_table::queue_id(std::string_view name) const {
  auto it = queues_.find(name);
  if (it == queues_.end()) return std::nullopt;
  return it->second;
}

bool routing_table::has_binding(const binding& b) const {
  return std::find(bindings_.begin(), bindings_.end(), b) != bindings_.end();
}

bool routing_table::bound_from(std::string_view name) const {
  return std::any_of(bindings_.begin(), bindings_.end(),
                     [&](const binding& b) { return b.source == name; });
}

std::vector<std::string> routing_table::sources_bound_to(dest_id d) const {
  std::set<std::string> sources;
  for (const auto& b : bindings_)
    if (b.dest == d) sources.insert(b.source);
  return {sources.begin(), sources.end()};
}

bool routing_table::route(exchange& x, const message& m, int64_t now, dest_list& out,
                          dest_set& seen, bool* duplicate, bool* owner_only) {
  if (owner_only && x.keeps_state()) {
    *owner_only = true;
    return false;
  }
  if (x.dedup && x.dedup->check_and_remember(m, now)) {
    if (duplicate) *duplicate = true;
    return true;
  }
  size_t before = out.size();
  // The exchange's own matches go to the end of scratch_ (reused: no allocation per publish),
  // read by index because routing on from here (and a sink that publishes) appends after them;
  // they are cut off again before returning.
  size_t first = scratch_.size();
  if (x.name().empty()) {
    if (auto q = queue_id(m.routing_key)) scratch_.push_back(*q);
  } else {
    x.route(m, scratch_);
  }
  size_t last = scratch_.size();
  bool external = x.deliver_external(m);
  for (size_t i = first; i < last; ++i) {
    dest_id d = scratch_[i];
    if (d & exchange_bit) {
      if (exchange* to = exchange_by_id(d); to && seen.insert(d))
        external |= route(*to, m, now, out, seen, duplicate, owner_only);
    } else {
      out.push_back(d);
    }
  }
  if (out.size() == before && !external) {
    // Nothing took it: the exchange's alternate exchange gets a try.
    if (auto ae = common::table_string(x.settings().arguments, "alternate-exchange")) {
      if (exchange* a = find_exchange(*ae); a && seen.insert(a->id()))
        external |= route(*a, m, now, out, seen, duplicate, owner_only);
    }
  }
  scratch_.resize(first);
  return external;
}

}  // namespace warren::broker
