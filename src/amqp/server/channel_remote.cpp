// A channel's queue methods on a queue that lives on another node of the cluster (docs/cluster.md,
// "Queues across nodes"): queue.declare (passive or not), queue.purge and queue.delete are run by
// that node, over a connection between the nodes (server_context::remote_queue_call), and its
// answer or error is relayed to the client as its own. The channel's permissions were checked
// here first; the other node checks the queue's own rules (exclusivity, equivalence, if-unused).
#include <fmt/format.h>

#include "amqp/server/channel.hpp"
#include "amqp/server/channel_internal.hpp"
#include "amqp/server/connection.hpp"
#include "net/worker.hpp"

namespace warren::amqp::server {

using namespace protocol;

template <typename M>
bool channel::forward_queue_method(const std::string& queue, M m) {
  const auto& call = conn_.context().remote_queue_call;
  if (!call || queue.empty()) return false;
  auto info = conn_.vhost().remote_queue_of(queue);
  // A queue whose node is down gets RabbitMQ's 404 from the vhost, an exclusive one its 405.
  if (!info || !info->node_running || info->exclusive) return false;
  bool no_wait = m.no_wait;
  m.no_wait = false;  // the other node answers: its errors come back
  call(conn_.conn().owner(), conn_.vhost().name(), info->node, method(std::move(m)),
       [link = link_, queue, node = info->node, no_wait,
        vhost = conn_.vhost().name()](server_context::remote_result r) {
         channel* ch = link->ch;
         if (!ch || ch->state_ != state::open) return;
         if (auto* e = std::get_if<broker::error>(&r))
           return ch->fail(*e, M::amqp_class_id, M::amqp_method_id);
         if (auto* why = std::get_if<std::string>(&r))
           return ch->fail(broker::error{broker::error_code::not_found,
                                         fmt::format("home node '{}' of durable queue '{}' in "
                                                     "vhost '{}' is down or inaccessible",
                                                     node, queue, vhost)},
                           M::amqp_class_id, M::amqp_method_id);
         if constexpr (std::is_same_v<M, queue_declare>) ch->last_queue_ = queue;
         if (!no_wait)
           std::visit([&](const auto& ok) { ch->conn_.send(ch->id_, ok); }, std::get<method>(r));
         ch->conn_.conn().flush_soon();
       });
  return true;
}

// queue.bind and queue.unbind of another node's queue, in three steps: this node checks what it
// can (the exchange exists here, the user's topic permissions); the queue's node binds (its
// errors: the queue gone or exclusive, the exchange missing there) and writes the binding to etcd
// for every node; then this node applies it to its own routing at once rather than when etcd's
// echo comes, so that a publish here right after bind-ok is routed by it (the binding to another
// node's queue is not written to etcd by this node: the tap ignores remote destinations).
template <typename M>
bool channel::forward_binding(M& x) {
  constexpr bool bind = std::is_same_v<M, queue_bind>;
  const auto& call = conn_.context().remote_queue_call;
  if (!call || x.queue.empty()) return false;
  auto info = conn_.vhost().remote_queue_of(x.queue);
  if (!info || !info->node_running || info->exclusive) return false;
  auto checks = topic_checks(conn_, x.exchange);
  M m = x;
  call_vhost(
      [ex = x.exchange, key = x.routing_key,
       checks = std::move(checks)](broker::vhost& v) -> broker::maybe_error {
        if (checks)
          if (auto e = checks->topic(auth::perm::read, ex, key, v)) return e;
        if (ex.empty())
          return broker::error{broker::error_code::access_refused,
                               "operation not permitted on the default exchange"};
        if (!v.inspect_exchange(ex))
          return broker::error{broker::error_code::not_found,
                               fmt::format("no exchange '{}' in vhost '{}'", ex, v.name())};
        return std::nullopt;
      },
      [m = std::move(m), node = info->node](channel& ch, const broker::maybe_error& e) mutable {
        if (e) return ch.fail(*e, M::amqp_class_id, M::amqp_method_id);
        bool no_wait = false;
        if constexpr (bind) {
          no_wait = m.no_wait;
          m.no_wait = false;  // the other node answers: its errors come back
        }
        M again = m;
        ch.conn_.context().remote_queue_call(
            ch.conn_.conn().owner(), ch.conn_.vhost().name(), node, method(std::move(m)),
            [link = ch.link_, again = std::move(again), node, no_wait,
             vhost = ch.conn_.vhost().name()](server_context::remote_result r) {
              channel* c = link->ch;
              if (!c || c->state_ != state::open) return;
              if (auto* err = std::get_if<broker::error>(&r))
                return c->fail(*err, M::amqp_class_id, M::amqp_method_id);
              if (std::get_if<std::string>(&r))
                return c->fail(c->node_down(node, again.queue), M::amqp_class_id,
                               M::amqp_method_id);
              c->call_vhost(
                  [again](broker::vhost& v) {
                    auto id = v.remote_queue_id(again.queue);
                    if (!id) return true;  // the queue went meanwhile: etcd says the rest
                    if constexpr (bind)
                      v.bind(again.exchange, *id, again.routing_key, again.arguments);
                    else
                      v.unbind(again.exchange, *id, again.routing_key, again.arguments);
                    return true;
                  },
                  [no_wait](channel& ch, bool) {
                    if constexpr (bind) {
                      if (!no_wait) ch.conn_.send(ch.id_, queue_bind_ok{});
                    } else {
                      (void)no_wait;  // queue.unbind has no no-wait
                      ch.conn_.send(ch.id_, queue_unbind_ok{});
                    }
                    ch.conn_.conn().flush_soon();
                  });
            });
      });
  return true;
}

bool channel::place_balanced(queue_declare& x) {
  const auto& ctx = conn_.context();
  if (!ctx.balanced_node || !ctx.remote_queue_call || !ctx.remote_queue_declared) return false;
  auto locator = common::table_string(x.arguments, "x-queue-leader-locator");
  // Exclusive and server-named queues stay with their connection, as "client-local"; a declare
  // another node sends for its client is declared here, where it chose.
  if (!locator || *locator != "balanced" || x.exclusive || x.queue.empty() ||
      auth::is_cluster_node_name(conn_.user().name))
    return false;
  // The declare's own checks (arguments, the configure permission) answer first, as here.
  queue_declare m = x;
  call_vhost(
      [name = x.queue](broker::vhost& v) -> std::optional<size_t> {
        if (v.inspect_queue(name)) return std::nullopt;  // redeclared here
        return v.queue_count();
      },
      [m = std::move(m)](channel& ch, const std::optional<size_t>& here) mutable {
        if (ch.state_ != state::open) return;
        std::string node;
        if (here) node = ch.conn_.context().balanced_node(ch.conn_.vhost().name(), *here);
        if (node.empty()) return ch.declare_here(m);
        broker::queue_policy p;
        if (auto e = broker::parse_queue_arguments(m.arguments, p))
          return ch.fail(*e, queue_declare::amqp_class_id, queue_declare::amqp_method_id);
        if (!ch.permitted(auth::perm::configure, auth::resource::queue, m.queue,
                          queue_declare::amqp_class_id, queue_declare::amqp_method_id))
          return;
        bool no_wait = m.no_wait;
        m.no_wait = false;
        queue_declare sent = m;
        ch.conn_.context().remote_queue_call(
            ch.conn_.conn().owner(), ch.conn_.vhost().name(), node, method(std::move(sent)),
            [link = ch.link_, m = std::move(m), node, no_wait](server_context::remote_result r) {
              channel* c = link->ch;
              if (!c || c->state_ != state::open) return;
              if (auto* err = std::get_if<broker::error>(&r))
                return c->fail(*err, queue_declare::amqp_class_id, queue_declare::amqp_method_id);
              if (std::get_if<std::string>(&r)) {  // chosen, then gone: declared here after all
                queue_declare here = m;
                here.no_wait = no_wait;
                return c->declare_here(here);
              }
              auto ok = std::get<queue_declare_ok>(std::get<method>(r));
              c->conn_.context().remote_queue_declared(c->conn_.vhost().name(), m.queue, node,
                                                       m.durable, m.auto_delete, m.arguments);
              c->call_vhost(
                  [name = m.queue, node](broker::vhost& v) {
                    v.add_remote_queue(name, node);
                    return true;
                  },
                  [ok, no_wait](channel& ch, bool) {
                    ch.last_queue_ = ok.queue;
                    if (!no_wait) ch.conn_.send(ch.id_, ok);
                    ch.conn_.conn().flush_soon();
                  });
            });
      });
  return true;
}

template bool channel::forward_binding(queue_bind&);
template bool channel::forward_binding(queue_unbind&);
template bool channel::forward_queue_method(const std::string&, queue_declare);
template bool channel::forward_queue_method(const std::string&, queue_purge);
template bool channel::forward_queue_method(const std::string&, queue_delete);

}  // namespace warren::amqp::server
