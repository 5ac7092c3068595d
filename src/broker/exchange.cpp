// Exchange types: direct, fanout, topic and headers.
#include "broker/exchange.hpp"

#include <algorithm>

namespace warren::broker {

bool is_known_exchange_type(std::string_view type) {
  return type == "direct" || type == "fanout" || type == "topic" || type == "headers";
}

std::unique_ptr<exchange> make_exchange(exchange_settings s, dest_id id) {
  if (s.type == "direct") return std::make_unique<direct_exchange>(std::move(s), id);
  if (s.type == "fanout") return std::make_unique<fanout_exchange>(std::move(s), id);
  if (s.type == "topic") return std::make_unique<topic_exchange>(std::move(s), id);
  if (s.type == "headers") return std::make_unique<headers_exchange>(std::move(s), id);
  return nullptr;
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

}  // namespace warren::broker
