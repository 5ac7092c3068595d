// x-federation-upstream: RabbitMQ's federation helper exchange
// (rabbit_federation_upstream_exchange), and its loop-breaking rule.
#include "broker/exchange.hpp"

namespace warren::broker {

namespace {

std::string_view string_of(const common::field_table& t, std::string_view key) {
  const common::field_value* v = t.find(key);
  const std::string* s = v ? std::get_if<std::string>(&v->v) : nullptr;
  return s ? std::string_view(*s) : std::string_view();
}

}  // namespace

maybe_error check_federation_upstream_arguments(const common::field_table& args) {
  const common::field_value* v = args.find("x-max-hops");
  if (!v) return error{error_code::precondition_failed, "Argument x-max-hops missing"};
  if (!common::integer_value(*v))
    return error{error_code::precondition_failed, "Argument x-max-hops must be of type long"};
  return std::nullopt;
}

bool federation_should_forward(const std::optional<common::field_table>& headers, int64_t max_hops,
                               std::string_view cluster, std::string_view vhost) {
  if (!headers) return true;
  const common::field_value* v = headers->find("x-received-from");
  const auto* arr = v ? std::get_if<common::field_array>(&v->v) : nullptr;
  if (!arr) return true;
  if (int64_t(arr->items.size()) >= max_hops) return false;
  for (const auto& item : arr->items)
    if (const auto* t = std::get_if<common::field_table>(&item.v))
      if (!cluster.empty() && string_of(*t, "cluster-name") == cluster &&
          string_of(*t, "vhost") == vhost)
        return false;
  return true;
}

federation_upstream_exchange::federation_upstream_exchange(exchange_settings s, dest_id id)
    : exchange(std::move(s), id) {
  max_hops_ = common::table_int(settings().arguments, "x-max-hops").value_or(1);
  downstream_name_ = std::string(string_of(settings().arguments, "x-downstream-name"));
  downstream_vhost_ = std::string(string_of(settings().arguments, "x-downstream-vhost"));
}

void federation_upstream_exchange::route(const message& m, std::vector<dest_id>& out) const {
  if (federation_should_forward(m.properties.headers, max_hops_, downstream_name_,
                                downstream_vhost_))
    fanout_.route(m, out);
}

}  // namespace warren::broker
