// The forward header (forward.hpp).
#include "broker/forward.hpp"

#include <algorithm>

namespace warren::broker {

common::field_value forward_value(const forward_target& t) {
  common::field_array qs;
  qs.items.reserve(t.queues.size());
  for (const auto& q : t.queues) qs.items.emplace_back(q);
  common::field_table f;
  f.entries.reserve(3);
  f.set("e", t.exchange);
  f.set("k", t.routing_key);
  f.set("q", std::move(qs));
  return f;
}

std::optional<forward_target> read_forward_value(const common::field_value& v) {
  const auto* f = std::get_if<common::field_table>(&v.v);
  if (!f) return std::nullopt;
  const common::field_value* e = f->find("e");
  const common::field_value* k = f->find("k");
  const common::field_value* q = f->find("q");
  if (!e || !k || !q) return std::nullopt;
  const auto* es = std::get_if<std::string>(&e->v);
  const auto* ks = std::get_if<std::string>(&k->v);
  const auto* qa = std::get_if<common::field_array>(&q->v);
  if (!es || !ks || !qa) return std::nullopt;
  forward_target t{*es, *ks, {}};
  t.queues.reserve(qa->items.size());
  for (const auto& item : qa->items) {
    const auto* s = std::get_if<std::string>(&item.v);
    if (!s) return std::nullopt;
    t.queues.push_back(*s);
  }
  return t;
}

common::field_table forward_headers(const message_properties& p, const forward_target& t) {
  common::field_table h;
  h.entries.push_back({std::string(forward_header), forward_value(t)});
  if (p.headers)
    h.entries.insert(h.entries.end(), p.headers->entries.begin(), p.headers->entries.end());
  return h;
}

std::optional<forward_target> take_forward_header(message_properties& p) {
  if (!p.headers || p.headers->entries.empty() || p.headers->entries.front().key != forward_header)
    return std::nullopt;
  auto& es = p.headers->entries;
  common::field_value v = std::move(es.front().value);
  es.erase(es.begin());
  if (es.empty()) p.headers.reset();
  return read_forward_value(v);
}

}  // namespace warren::broker
