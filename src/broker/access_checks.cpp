// Permission checks against the vhost's state (see access_checks.hpp).
#include "broker/access_checks.hpp"

#include "broker/vhost.hpp"

namespace warren::broker {

maybe_error access_checks::resource(auth::perm p, auth::resource r, std::string_view name,
                                    const vhost& v) const {
  if (unchecked) return std::nullopt;
  if (auto t = auth::check_resource(access.get(), p, r, name, v.name(), user))
    return error{error_code::access_refused, std::move(*t)};
  return std::nullopt;
}

maybe_error access_checks::topic(auth::perm p, std::string_view exchange,
                                 std::string_view routing_key, const vhost& v) const {
  if (!has_topic_rule(exchange)) return std::nullopt;
  const broker::exchange* x = v.inspect_exchange(exchange);
  if (!x || x->settings().type != "topic") return std::nullopt;
  if (auto t = auth::check_topic(access.get(), p, exchange, routing_key, v.name(), user))
    return error{error_code::access_refused, std::move(*t)};
  return std::nullopt;
}

maybe_error access_checks::declare_queue(std::string_view name, bool exists,
                                         std::optional<std::string_view> dead_letter_exchange,
                                         const vhost& v) const {
  using auth::perm, auth::resource;
  if (auto e = this->resource(perm::configure, resource::queue, name, v)) return e;
  if (exists || !dead_letter_exchange) return std::nullopt;
  if (auto e = this->resource(perm::read, resource::queue, name, v)) return e;
  return this->resource(perm::write, resource::exchange, *dead_letter_exchange, v);
}

maybe_error access_checks::new_exchange_alternate(std::string_view name, std::string_view alternate,
                                                  const vhost& v) const {
  using auth::perm, auth::resource;
  if (auto e = this->resource(perm::read, resource::exchange, name, v)) return e;
  return this->resource(perm::write, resource::exchange, alternate, v);
}

}  // namespace warren::broker
