// A channel's queue methods on a queue that lives on another node of the cluster (docs/cluster.md,
// "Queues across nodes"): queue.declare (passive or not), queue.purge and queue.delete are run by
// that node, over a connection between the nodes (server_context::remote_queue_call), and its
// answer or error is relayed to the client as its own. The channel's permissions were checked
// here first; the other node checks the queue's own rules (exclusivity, equivalence, if-unused).
#include <fmt/format.h>

#include "amqp/server/channel.hpp"
#include "amqp/server/connection.hpp"
#include "net/worker.hpp"

namespace warren::amqp::server {

using namespace protocol;

template <typename M>
bool channel::forward_queue_method(const std::string& queue, M m) {
  const auto& call = conn_.context().remote_queue_call;
  if (!call || queue.empty()) return false;
  auto info = conn_.vhost().remote_queue_of(queue);
  // A queue whose node is down gets RabbitMQ's 404 from the vhost.
  if (!info || !info->node_running) return false;
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

template bool channel::forward_queue_method(const std::string&, queue_declare);
template bool channel::forward_queue_method(const std::string&, queue_purge);
template bool channel::forward_queue_method(const std::string&, queue_delete);

}  // namespace warren::amqp::server
