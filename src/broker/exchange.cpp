// Exchange types: direct, fanout, topic, headers and the plugins' types Warren has built in.
#include "broker/exchange.hpp"

#include <algorithm>

namespace warren::broker {

bool is_known_exchange_type(std::string_view type) {
  return type == "direct" || type == "fanout" || type == "topic" || type == "headers" ||
         type == "x-recent-history" || type == "x-consistent-hash" || type == dedup_exchange_type ||
         type == "x-federation-upstream" || is_sink_exchange_type(type);
}

bool is_sink_exchange_type(std::string_view type) {
  return type == "x-warren-inbox" || type == "x-warren-room" || type == "x-warren-feed";
}

maybe_error check_exchange_arguments(const exchange_settings& s) {
  std::optional<dedup_settings> dedup;
  if (auto e = parse_dedup_arguments(s.arguments, s.type, dedup)) return e;
  if (s.type == "x-recent-history" && !parse_history_length(s.arguments))
    return error{error_code::precondition_failed,
                 "invalid arg 'x-recent-history-length': expected a positive integer"};
  if (s.type == "x-consistent-hash") {
    auto h = s.arguments.find("hash-header");
    auto p = common::table_string(s.arguments, "hash-property");
    if (h && p)
      return error{error_code::precondition_failed,
                   "hash-header and hash-property are mutually exclusive"};
    if (p && *p != "message_id" && *p != "correlation_id" && *p != "timestamp")
      return error{error_code::precondition_failed,
                   "hash-property must be message_id, correlation_id or timestamp"};
  }
  if (s.type == "x-federation-upstream") return check_federation_upstream_arguments(s.arguments);
  return std::nullopt;
}

namespace {

std::unique_ptr<exchange> make_exchange_of_type(exchange_settings s, dest_id id) {
  // The plugin's x-message-deduplication routes as fanout does, behind its filter.
  if (s.type == dedup_exchange_type) return std::make_unique<fanout_exchange>(std::move(s), id);
  if (s.type == "direct") return std::make_unique<direct_exchange>(std::move(s), id);
  if (s.type == "fanout") return std::make_unique<fanout_exchange>(std::move(s), id);
  if (s.type == "topic") return std::make_unique<topic_exchange>(std::move(s), id);
  if (s.type == "headers") return std::make_unique<headers_exchange>(std::move(s), id);
  if (s.type == "x-recent-history") {
    size_t n = parse_history_length(s.arguments).value_or(default_history_length);
    return std::make_unique<recent_history_exchange>(std::move(s), id, n);
  }
  if (s.type == "x-consistent-hash")
    return std::make_unique<consistent_hash_exchange>(std::move(s), id);
  if (is_sink_exchange_type(s.type)) return std::make_unique<sink_exchange>(std::move(s), id);
  if (s.type == "x-federation-upstream")
    return std::make_unique<federation_upstream_exchange>(std::move(s), id);
  return nullptr;
}

}  // namespace

std::unique_ptr<exchange> make_exchange(exchange_settings s, dest_id id) {
  std::optional<dedup_settings> dedup;
  // Arguments were checked on declare; one that fails here (none should) means no filter.
  (void)parse_dedup_arguments(s.arguments, s.type, dedup);
  auto x = make_exchange_of_type(std::move(s), id);
  if (x && dedup) x->dedup = std::make_unique<dedup_filter>(std::move(*dedup));
  return x;
}

void direct_exchange::add_binding(dest_id d, const std::string& key, const common::field_table&) {
  by_key_[key].push_back(d);
}

void direct_exchange::remove_binding(dest_id d, const std::string& key,
                                     const common::field_table&) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return;
  auto& v = it->second;
  if (auto pos = std::find(v.begin(), v.end(), d); pos != v.end()) v.erase(pos);
  if (v.empty()) by_key_.erase(it);
}

void direct_exchange::route(const message& m, std::vector<dest_id>& out) const {
  auto it = by_key_.find(m.routing_key);
  if (it != by_key_.end()) out.insert(out.end(), it->second.begin(), it->second.end());
}

void fanout_exchange::add_binding(dest_id d, const std::string&, const common::field_table&) {
  ++bound_[d];
}

void fanout_exchange::remove_binding(dest_id d, const std::string&, const common::field_table&) {
  auto it = bound_.find(d);
  if (it != bound_.end() && --it->second == 0) bound_.erase(it);
}

void fanout_exchange::route(const message&, std::vector<dest_id>& out) const {
  for (const auto& [d, n] : bound_) out.push_back(d);
}

void topic_exchange::add_binding(dest_id d, const std::string& key, const common::field_table&) {
  if (refs_[{key, d}]++ == 0) index_.add(key, d);
}

void topic_exchange::remove_binding(dest_id d, const std::string& key, const common::field_table&) {
  index_.remove(key, d);
}

void topic_exchange::route(const message& m, std::vector<dest_id>& out) const {
  index_.match(m.routing_key, out);
}

maybe_error headers_exchange::check_binding(std::string_view,
                                            const common::field_table& args) const {
  if (!parse_x_match(args))
    return error{error_code::precondition_failed,
                 "Invalid x-match field value; expected all, any, all-with-x, or any-with-x"};
  return std::nullopt;
}

void headers_exchange::add_binding(dest_id d, const std::string&, const common::field_table& args) {
  rules_.push_back(rule{d, parse_x_match(args).value_or(x_match::all), args});
}

void headers_exchange::remove_binding(dest_id d, const std::string&,
                                      const common::field_table& args) {
  auto it = std::find_if(rules_.begin(), rules_.end(),
                         [&](const rule& r) { return r.dest == d && r.args == args; });
  if (it != rules_.end()) rules_.erase(it);
}

void headers_exchange::route(const message& m, std::vector<dest_id>& out) const {
  const common::field_table* h = m.properties.headers ? &*m.properties.headers : nullptr;
  for (const auto& r : rules_)
    if (headers_match(r.mode, r.args, h)) out.push_back(r.dest);
}

void recent_history_exchange::on_published(const message_ptr& m) {
  const common::field_table* h = m->properties.headers ? &*m->properties.headers : nullptr;
  if (!history_no_store(h)) history_.push(m);
}

void recent_history_exchange::history(std::vector<message_ptr>& out) const {
  history_.for_each([&](const message_ptr& m) { out.push_back(m); });
}

maybe_error consistent_hash_exchange::check_binding(std::string_view key,
                                                    const common::field_table&) const {
  if (!parse_weight(key))
    return error{error_code::precondition_failed,
                 "the binding key of a consistent-hash exchange is a positive integer weight"};
  return std::nullopt;
}

void consistent_hash_exchange::add_binding(dest_id d, const std::string& key,
                                           const common::field_table&) {
  if (bindings_[d]++ == 0) ring_.add(d, parse_weight(key).value_or(1));
}

void consistent_hash_exchange::remove_binding(dest_id d, const std::string&,
                                              const common::field_table&) {
  auto it = bindings_.find(d);
  if (it == bindings_.end()) return;
  if (--it->second == 0) {
    bindings_.erase(it);
    ring_.remove(d);
  }
}

void consistent_hash_exchange::route(const message& m, std::vector<dest_id>& out) const {
  std::string key;
  const auto& args = settings().arguments;
  if (auto header = common::table_string(args, "hash-header")) {
    const auto& h = m.properties.headers;
    auto v = h ? common::table_string(*h, *header) : std::nullopt;
    if (!v) return;  // RabbitMQ: a message without the header is not routed
    key = *v;
  } else if (auto prop = common::table_string(args, "hash-property")) {
    const auto& p = m.properties;
    if (*prop == "message_id" && p.message_id)
      key = *p.message_id;
    else if (*prop == "correlation_id" && p.correlation_id)
      key = *p.correlation_id;
    else if (*prop == "timestamp" && p.timestamp)
      key = std::to_string(*p.timestamp);
    else
      return;
  } else {
    key = m.routing_key;
  }
  if (auto d = ring_.pick(key)) out.push_back(*d);
}

}  // namespace warren::broker
