// The shard map's rule and form (shard_map.hpp).
#include "web/shard_map.hpp"
#include "mgmt/definitions_json.hpp"

#include <algorithm>
#include <map>

#include <nlohmann/json.hpp>

namespace warren::web {

slot_list rebalance(const slot_list& current, std::vector<std::string> running) {
  std::sort(running.begin(), running.end());
  running.erase(std::unique(running.begin(), running.end()), running.end());
  slot_list out(shard_slots);
  if (running.empty()) return out;
  std::map<std::string, size_t> held;
  for (const auto& n : running) held[n] = 0;
  for (size_t i = 0; i < shard_slots && i < current.size(); ++i)
    if (auto it = held.find(current[i]); it != held.end()) ++it->second;
  // Shares: the nodes holding most get the extra slots, so a balanced map stays as it is.
  std::vector<std::string> order = running;
  std::stable_sort(order.begin(), order.end(),
                   [&](const std::string& a, const std::string& b) { return held[a] > held[b]; });
  size_t base = shard_slots / running.size(), extra = shard_slots % running.size();
  std::map<std::string, size_t> share;
  for (size_t i = 0; i < order.size(); ++i) share[order[i]] = base + (i < extra ? 1 : 0);
  std::map<std::string, size_t> kept;
  std::vector<size_t> free_slots;
  for (size_t i = 0; i < shard_slots; ++i) {
    const std::string* owner = i < current.size() ? &current[i] : nullptr;
    if (owner && share.count(*owner) && kept[*owner] < share[*owner]) {
      out[i] = *owner;
      ++kept[*owner];
    } else {
      free_slots.push_back(i);
    }
  }
  size_t f = 0;
  for (const auto& n : running)
    for (size_t k = kept[n]; k < share[n] && f < free_slots.size(); ++k) out[free_slots[f++]] = n;
  return out;
}

size_t slots_moved(const slot_list& a, const slot_list& b) {
  size_t n = 0;
  for (size_t i = 0; i < shard_slots; ++i) {
    const std::string empty;
    const std::string& x = i < a.size() ? a[i] : empty;
    const std::string& y = i < b.size() ? b[i] : empty;
    if (x != y) ++n;
  }
  return n;
}

std::string encode_slots(const slot_list& s) {
  return mgmt::dump(nlohmann::json{{"slots", s}});
}

std::optional<slot_list> decode_slots(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("slots") || !j["slots"].is_array() ||
      j["slots"].size() != shard_slots)
    return std::nullopt;
  slot_list out;
  out.reserve(shard_slots);
  for (const auto& v : j["slots"]) {
    if (!v.is_string()) return std::nullopt;
    out.push_back(v.get<std::string>());
  }
  return out;
}

void shard_table::set(slot_list s, int64_t version) {
  auto p = std::make_shared<const slot_list>(std::move(s));
  std::lock_guard lk(mutex_);
  slots_ = std::move(p);
  version_ = version;
}

std::shared_ptr<const slot_list> shard_table::get() const {
  std::lock_guard lk(mutex_);
  return slots_;
}

int64_t shard_table::version() const {
  std::lock_guard lk(mutex_);
  return version_;
}

std::string shard_table::owner(std::string_view name) const {
  auto s = get();
  if (!s || s->size() != shard_slots) return {};
  return (*s)[slot_of(name)];
}

}  // namespace warren::web
