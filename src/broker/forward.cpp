// The forward header (forward.hpp).
#include "broker/forward.hpp"

#include <algorithm>

namespace warren::broker {

common::field_table forward_headers(const message_properties& p, const forward_target& t) {
  common::field_table h = p.headers ? *p.headers : common::field_table{};
  common::field_array qs;
  qs.items.reserve(t.queues.size());
  for (const auto& q : t.queues) qs.items.emplace_back(q);
  common::field_table f;
  f.set("e", t.exchange);
  f.set("k", t.routing_key);
  f.set("q", std::move(qs));
  h.set(std::string(forward_header), std::move(f));
  return h;
}

std::optional<forward_target> take_forward_header(message_properties& p) {
  if (!p.headers) return std::nullopt;
  auto& es = p.headers->entries;
  auto it =
      std::find_if(es.begin(), es.end(), [](const auto& e) { return e.key == forward_header; });
  if (it == es.end()) return std::nullopt;
  common::field_value v = std::move(it->value);
  es.erase(it);
  if (es.empty()) p.headers.reset();
  const auto* f = std::get_if<common::field_table>(&v.v);
  if (!f) return std::nullopt;
  const common::field_value* e = f->find("e");
  const common::field_value* k = f->find("k");
  const common::field_value* q = f->find("q");
  if (!e || !k || !q) return std::nullopt;
  const auto* es_ = std::get_if<std::string>(&e->v);
  const auto* ks = std::get_if<std::string>(&k->v);
  const auto* qa = std::get_if<common::field_array>(&q->v);
  if (!es_ || !ks || !qa) return std::nullopt;
  forward_target t{*es_, *ks, {}};
  for (const auto& item : qa->items) {
    const auto* s = std::get_if<std::string>(&item.v);
    if (!s) return std::nullopt;
    t.queues.push_back(*s);
  }
  return t;
}

}  // namespace warren::broker
