// Channel frames of the exchange and queue classes, and the permission checks every channel
// operation makes. Reply codes and texts follow RabbitMQ 3.10 (rabbit_channel).
//
// Permissions are checked as rabbit_channel checks them, before the operation:
//
// | method                      | checks (in this order)                                        |
// | --------------------------- | ------------------------------------------------------------- |
// | exchange.declare            | configure on it; if new with an alternate-exchange: read on   |
// |                             | it, write on the alternate                                     |
// | exchange.declare passive    | any of configure, write, read on it                            |
// | exchange.delete             | configure on it                                                |
// | exchange.bind/unbind        | write on the destination, read on the source, topic read on    |
// |                             | the routing key if the source is a topic exchange             |
// | queue.declare               | configure on it (server-named: on the name given); if new     |
// |                             | with a dead-letter exchange: read on it, write on that         |
// | queue.declare passive       | any of configure, write, read on it                            |
// | queue.delete                | configure                                                      |
// | queue.purge                 | read                                                           |
// | queue.bind/unbind           | write on the queue, read on the exchange, topic read          |
// | basic.publish               | write on the exchange ("" as amq.default), topic write on the  |
// |                             | routing key if a topic exchange                                |
// | basic.consume, basic.get    | read on the queue                                              |
//
// Name-only checks run here on the channel's worker; those that need the broker's state (a
// server-named queue's name, whether something is new, an exchange's type) run on the vhost's
// worker (broker::access_checks). The default exchange and amq.* names are refused by the vhost
// before any permission, as in RabbitMQ.
#include <fmt/format.h>

#include "amqp/server/channel.hpp"
#include "amqp/server/channel_internal.hpp"
#include "amqp/server/connection.hpp"
#include "amqp/server/convert.hpp"
#include "broker/forward.hpp"

namespace warren::amqp::server {

using namespace protocol;

bool channel::permitted(auth::perm p, auth::resource r, std::string_view name, uint16_t class_id,
                        uint16_t method_id) {
  auto refusal = auth::check_resource(conn_.access().get(), p, r, name, conn_.vhost().name(),
                                      conn_.user().name);
  if (!refusal) return true;
  fail(broker::error{broker::error_code::access_refused, std::move(*refusal)}, class_id, method_id);
  return false;
}

bool channel::permitted_any(auth::resource r, std::string_view name, uint16_t class_id,
                            uint16_t method_id) {
  auto refusal = auth::check_any_resource(conn_.access().get(), r, name, conn_.vhost().name(),
                                          conn_.user().name);
  if (!refusal) return true;
  fail(broker::error{broker::error_code::access_refused, std::move(*refusal)}, class_id, method_id);
  return false;
}

bool channel::may_publish(const std::string& exchange, bool& topic) {
  // The hot path: one atomic load and a name comparison while nothing changes.
  if (conn_.context().users->generation() == publish_allowed_generation_ &&
      exchange == publish_allowed_) {
    topic = publish_allowed_topic_;
    return true;
  }
  // The exchange between nodes of a cluster (broker/forward.hpp) is theirs only: to anybody
  // else it does not exist.
  if (exchange == broker::forward_exchange && !conn_.user().cluster_node) {
    fail(broker::error{broker::error_code::not_found, fmt::format("no exchange '{}' in vhost '{}'",
                                                                  exchange, conn_.vhost().name())},
         basic_publish::amqp_class_id, basic_publish::amqp_method_id);
    return false;
  }
  if (!permitted(auth::perm::write, auth::resource::exchange, exchange,
                 basic_publish::amqp_class_id, basic_publish::amqp_method_id))
    return false;
  const auto& a = conn_.access();
  publish_allowed_ = exchange;
  publish_allowed_generation_ = conn_.access_generation();
  publish_allowed_topic_ = topic = a && a->topic(exchange);
  return true;
}

bool channel::resolve_queue(std::string& name, uint16_t class_id, uint16_t method_id) {
  if (!name.empty()) return true;
  if (last_queue_.empty()) {
    fail(broker::error{broker::error_code::not_found, "no previously declared queue"}, class_id,
         method_id);
    return false;
  }
  name = last_queue_;
  return true;
}

// ------------------------------------------------------------------------------ exchange class

void channel::on_exchange_declare(exchange_declare& x) {
  // The default exchange is refused by the vhost before any permission; an unknown type too
  // (RabbitMQ checks the type first).
  if (!x.exchange.empty()) {
    if (x.passive) {
      if (!permitted_any(auth::resource::exchange, x.exchange, x.amqp_class_id, x.amqp_method_id))
        return;
    } else if (broker::is_known_exchange_type(x.type) &&
               !permitted(auth::perm::configure, auth::resource::exchange, x.exchange,
                          x.amqp_class_id, x.amqp_method_id)) {
      return;
    }
  }
  std::shared_ptr<const broker::access_checks> alternate_check;
  std::string alternate;
  if (!x.passive)
    if (auto ae = table_string(x.arguments, "alternate-exchange")) {
      alternate = std::string(*ae);
      alternate_check = std::make_shared<const broker::access_checks>(checks_of(conn_));
    }
  broker::exchange_settings s{x.exchange,    x.type,     x.durable,
                              x.auto_delete, x.internal, std::move(x.arguments)};
  bool passive = x.passive, no_wait = x.no_wait;
  call_vhost(
      [s = std::move(s), passive, alternate_check = std::move(alternate_check),
       alternate = std::move(alternate)](broker::vhost& v) -> broker::maybe_error {
        // A new exchange's alternate, after what the vhost refuses by name or type (RabbitMQ's
        // order: the type, the reserved prefix, then the alternate).
        if (alternate_check && !v.has_exchange(s.name) && s.name.rfind("amq.", 0) != 0 &&
            broker::is_known_exchange_type(s.type))
          if (auto e = alternate_check->new_exchange_alternate(s.name, alternate, v)) return e;
        return v.declare_exchange(s, passive);
      },
      [no_wait](channel& ch, const broker::maybe_error& e) {
        if (e)
          return ch.fail(*e, exchange_declare::amqp_class_id, exchange_declare::amqp_method_id);
        if (!no_wait) ch.conn_.send(ch.id_, exchange_declare_ok{});
        ch.conn_.conn().flush_soon();
      });
}

void channel::on_exchange_delete(exchange_delete& x) {
  // "" and amq.* are refused by the vhost first, as by RabbitMQ.
  if (!x.exchange.empty() && x.exchange.rfind("amq.", 0) != 0 &&
      !permitted(auth::perm::configure, auth::resource::exchange, x.exchange, x.amqp_class_id,
                 x.amqp_method_id))
    return;
  bool no_wait = x.no_wait;
  call_vhost(
      [name = x.exchange, if_unused = x.if_unused](broker::vhost& v) {
        return v.delete_exchange(name, if_unused);
      },
      [no_wait](channel& ch, const broker::maybe_error& e) {
        if (e) return ch.fail(*e, exchange_delete::amqp_class_id, exchange_delete::amqp_method_id);
        if (!no_wait) ch.conn_.send(ch.id_, exchange_delete_ok{});
        ch.conn_.conn().flush_soon();
      });
}

void channel::on_exchange_bind(exchange_bind& x, bool bind) {
  bool no_wait = x.no_wait;
  uint16_t mid = bind ? exchange_bind::amqp_method_id : exchange_unbind::amqp_method_id;
  using auth::perm, auth::resource;
  if (!permitted(perm::write, resource::exchange, x.destination, class_exchange, mid)) return;
  // The default exchange at either end is refused by the vhost before the read check.
  if (!x.destination.empty() && !x.source.empty() &&
      !permitted(perm::read, resource::exchange, x.source, class_exchange, mid))
    return;
  auto checks = topic_checks(conn_, x.source);
  call_vhost(
      [dest = x.destination, src = x.source, key = x.routing_key, args = std::move(x.arguments),
       bind, checks = std::move(checks)](broker::vhost& v) -> broker::maybe_error {
        if (checks)
          if (auto e = checks->topic(perm::read, src, key, v)) return e;
        auto d = v.exchange_dest(dest);
        if (auto* e = std::get_if<broker::error>(&d)) return *e;
        if (!v.has_exchange(src))
          return broker::error{broker::error_code::not_found,
                               fmt::format("no exchange '{}' in vhost '{}'", src, v.name())};
        return bind ? v.bind(src, std::get<broker::dest_id>(d), key, args)
                    : v.unbind(src, std::get<broker::dest_id>(d), key, args);
      },
      [no_wait, bind, mid](channel& ch, const broker::maybe_error& e) {
        if (e) return ch.fail(*e, class_exchange, mid);
        if (!no_wait) {
          if (bind)
            ch.conn_.send(ch.id_, exchange_bind_ok{});
          else
            ch.conn_.send(ch.id_, exchange_unbind_ok{});
        }
        ch.conn_.conn().flush_soon();
      });
}

// ------------------------------------------------------------------------------ queue class

void channel::on_queue_declare(queue_declare& x) {
  if (x.passive &&
      !permitted_any(auth::resource::queue, x.queue, x.amqp_class_id, x.amqp_method_id))
    return;
  if (auto info = conn_.vhost().remote_queue_of(x.queue);
      info && info->node_running && !info->exclusive) {
    // Another node's queue: declared (or checked) there (channel_remote.cpp).
    if (!x.passive && !permitted(auth::perm::configure, auth::resource::queue, x.queue,
                                 x.amqp_class_id, x.amqp_method_id))
      return;
    std::string name = x.queue;
    if (forward_queue_method(name, std::move(x))) return;
  }
  // x-queue-leader-locator "balanced": maybe on another node (channel_remote.cpp).
  if (!x.passive && place_balanced(x)) return;
  declare_here(x);
}

void channel::declare_here(queue_declare& x) {
  broker::queue_declare_request r{x.queue,     x.passive,     x.durable,
                                  x.exclusive, x.auto_delete, std::move(x.arguments),
                                  conn_.id()};
  if (!x.passive) {
    // On the vhost's worker, once the name is known (a server-named queue's too).
    std::optional<std::string> dlx;
    if (auto d = table_string(r.arguments, "x-dead-letter-exchange")) dlx = std::string(*d);
    r.authorize = [checks = checks_of(conn_), vhost = &conn_.vhost(), dlx = std::move(dlx)](
                      const std::string& name, bool exists) {
      return checks.declare_queue(name, exists, dlx, *vhost);
    };
  }
  bool no_wait = x.no_wait;
  call_vhost(
      [r = std::move(r)](broker::vhost& v) { return v.declare_queue(r); },
      [no_wait](channel& ch, const std::variant<broker::queue_declare_ok, broker::error>& res) {
        if (auto* e = std::get_if<broker::error>(&res))
          return ch.fail(*e, queue_declare::amqp_class_id, queue_declare::amqp_method_id);
        const auto& ok = std::get<broker::queue_declare_ok>(res);
        ch.last_queue_ = ok.name;
        if (ok.shard != SIZE_MAX && !no_wait) {
          // The queue lives on another shard: its counts are there.
          return ch.call_shard(
              ok.shard, [name = ok.name](broker::vhost& v) { return v.queue_counts(name); },
              [name = ok.name](channel& c,
                               const std::optional<std::pair<uint32_t, uint32_t>>& counts) {
                auto [messages, consumers] = counts.value_or(std::pair<uint32_t, uint32_t>{0, 0});
                c.conn_.send(c.id_, queue_declare_ok{name, messages, consumers});
                c.conn_.conn().flush_soon();
              });
        }
        if (!no_wait)
          ch.conn_.send(ch.id_, queue_declare_ok{ok.name, ok.message_count, ok.consumer_count});
        ch.conn_.conn().flush_soon();
      });
}

bool channel::permitted_binding(const std::string& queue, const std::string& exchange,
                                uint16_t class_id, uint16_t method_id) {
  using auth::perm, auth::resource;
  if (!permitted(perm::write, resource::queue, queue, class_id, method_id)) return false;
  // The default exchange is refused by the vhost before the read check.
  return exchange.empty() ||
         permitted(perm::read, resource::exchange, exchange, class_id, method_id);
}

void channel::on_queue_bind(queue_bind& x) {
  if (!resolve_queue(x.queue, x.amqp_class_id, x.amqp_method_id)) return;
  if (!permitted_binding(x.queue, x.exchange, x.amqp_class_id, x.amqp_method_id)) return;
  if (forward_binding(x)) return;  // another node's queue (channel_remote.cpp)
  bool no_wait = x.no_wait;
  auto checks = topic_checks(conn_, x.exchange);
  call_vhost(
      [q = x.queue, ex = x.exchange, key = x.routing_key, args = std::move(x.arguments),
       conn_id = conn_.id(), checks = std::move(checks)](broker::vhost& v) -> broker::maybe_error {
        if (checks)
          if (auto e = checks->topic(auth::perm::read, ex, key, v)) return e;
        auto d = v.queue_dest(q, conn_id);
        if (auto* e = std::get_if<broker::error>(&d)) return *e;
        return v.bind(ex, std::get<broker::dest_id>(d), key, args);
      },
      [no_wait](channel& ch, const broker::maybe_error& e) {
        if (e) return ch.fail(*e, queue_bind::amqp_class_id, queue_bind::amqp_method_id);
        if (!no_wait) ch.conn_.send(ch.id_, queue_bind_ok{});
        ch.conn_.conn().flush_soon();
      });
}

void channel::on_queue_unbind(queue_unbind& x) {
  if (!resolve_queue(x.queue, x.amqp_class_id, x.amqp_method_id)) return;
  if (!permitted_binding(x.queue, x.exchange, x.amqp_class_id, x.amqp_method_id)) return;
  if (forward_binding(x)) return;  // another node's queue (channel_remote.cpp)
  auto checks = topic_checks(conn_, x.exchange);
  call_vhost(
      [q = x.queue, ex = x.exchange, key = x.routing_key, args = std::move(x.arguments),
       conn_id = conn_.id(), checks = std::move(checks)](broker::vhost& v) -> broker::maybe_error {
        if (checks)
          if (auto e = checks->topic(auth::perm::read, ex, key, v)) return e;
        auto d = v.queue_dest(q, conn_id);
        if (auto* e = std::get_if<broker::error>(&d)) return *e;
        return v.unbind(ex, std::get<broker::dest_id>(d), key, args);
      },
      [](channel& ch, const broker::maybe_error& e) {
        if (e) return ch.fail(*e, queue_unbind::amqp_class_id, queue_unbind::amqp_method_id);
        ch.conn_.send(ch.id_, queue_unbind_ok{});
        ch.conn_.conn().flush_soon();
      });
}

void channel::on_queue_purge(queue_purge& x) {
  if (!resolve_queue(x.queue, x.amqp_class_id, x.amqp_method_id)) return;
  if (!permitted(auth::perm::read, auth::resource::queue, x.queue, x.amqp_class_id,
                 x.amqp_method_id))
    return;
  if (forward_queue_method(x.queue, x)) return;
  bool no_wait = x.no_wait;
  call_queue(
      x.queue,
      [q = x.queue, conn_id = conn_.id()](broker::vhost& v) { return v.purge_queue(q, conn_id); },
      [no_wait](channel& ch, const std::variant<uint32_t, broker::error>& r) {
        if (auto* e = std::get_if<broker::error>(&r))
          return ch.fail(*e, queue_purge::amqp_class_id, queue_purge::amqp_method_id);
        if (!no_wait) ch.conn_.send(ch.id_, queue_purge_ok{std::get<uint32_t>(r)});
        ch.conn_.conn().flush_soon();
      });
}

void channel::on_queue_delete(queue_delete& x) {
  if (!resolve_queue(x.queue, x.amqp_class_id, x.amqp_method_id)) return;
  if (!permitted(auth::perm::configure, auth::resource::queue, x.queue, x.amqp_class_id,
                 x.amqp_method_id))
    return;
  if (forward_queue_method(x.queue, x)) return;
  bool no_wait = x.no_wait;
  call_queue(
      x.queue,
      [q = x.queue, if_unused = x.if_unused, if_empty = x.if_empty, conn_id = conn_.id()](
          broker::vhost& v) { return v.delete_queue(q, if_unused, if_empty, conn_id); },
      [no_wait](channel& ch, const std::variant<uint32_t, broker::error>& r) {
        if (auto* e = std::get_if<broker::error>(&r))
          return ch.fail(*e, queue_delete::amqp_class_id, queue_delete::amqp_method_id);
        if (!no_wait) ch.conn_.send(ch.id_, queue_delete_ok{std::get<uint32_t>(r)});
        ch.conn_.conn().flush_soon();
      });
}

}  // namespace warren::amqp::server
