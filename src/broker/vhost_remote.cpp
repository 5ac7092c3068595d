// Queues of other nodes of a cluster, as the authority routes to them (vhost.hpp, "queues on
// other nodes"), and publishes other nodes forward here (broker/forward.hpp). The transport is
// app/node_links; the vhost only hands each node its part of a publish, once per node.
#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "broker/forward.hpp"
#include "broker/vhost.hpp"

namespace warren::broker {

void vhost::add_remote_queue(const std::string& name, const std::string& node) {
  if (find_queue(name)) return;  // a conflict (docs/cluster.md): this node's stays local
  if (auto it = remote_names_.find(name); it != remote_names_.end()) {
    remote_ids_[it->second].node = node;
    return;
  }
  dest_id id = next_id_++;
  // Not through change_routing: the cluster's tap must not record another node's queue as this
  // node's.
  routing_.apply(queue_added{name, id});
  remote_ids_[id] = remote_entry{node, name};
  remote_names_.emplace(name, id);
  in_cluster_.store(true, std::memory_order_relaxed);
}

void vhost::remove_remote_queue(std::string_view name) {
  auto it = remote_names_.find(name);
  if (it == remote_names_.end()) return;
  dest_id id = it->second;
  // A local queue of that name took the name meanwhile (declared here once the record went):
  // its entry stays; bindings to the old id route nowhere.
  if (routing_.queue_id(name) == id) routing_.apply(queue_removed{std::string(name), id});
  remote_ids_.erase(id);
  remote_names_.erase(it);
}

std::optional<dest_id> vhost::remote_queue_id(std::string_view name) const {
  auto it = remote_names_.find(name);
  if (it == remote_names_.end()) return std::nullopt;
  return it->second;
}

void vhost::send_remote(const message& m, std::vector<dest_id>& ids) {
  // One send per node, with the names of its queues.
  std::map<std::string_view, std::vector<std::string>> by_node;
  for (dest_id d : ids) {
    const remote_entry& e = remote_ids_.at(d);
    by_node[e.node].push_back(e.name);
  }
  for (auto& [node, names] : by_node) {
    if (answer_ && remote_) ++*remote_;
    if (remote_sender_) {
      remote_sender_(std::string(node), m, std::move(names), answer_);
    } else if (answer_) {
      (*answer_)(0, true);  // no link: not stored
    }
  }
}

void vhost::send_to_node(const std::string& node, const message& m) {
  if (answer_ && remote_) ++*remote_;
  if (remote_sender_)
    remote_sender_(node, m, {}, answer_);
  else if (answer_)
    (*answer_)(0, true);  // no link: not stored
}

std::variant<publish_outcome, error> vhost::publish_forwarded(message_ptr m, forward_target t,
                                                              uint64_t publisher,
                                                              uint64_t* sync_ticket,
                                                              const shard_answer* answer,
                                                              uint32_t* remote) {
  // The channel made the message and handed it over: nobody else holds it yet, so it is given
  // its original exchange and routing key in place rather than by copying the body.
  std::shared_ptr<message> own =
      m.use_count() == 1 ? std::const_pointer_cast<message>(m) : std::make_shared<message>(*m);
  m.reset();
  own->exchange = std::move(t.exchange);
  own->routing_key = std::move(t.routing_key);
  if (t.queues.empty()) {
    // For the web gateway's hub here (send_to_node): its sink only; the sending node routed the
    // message to the queues bound to that exchange already.
    auto* x = dynamic_cast<sink_exchange*>(find_exchange(own->exchange));
    if (sync_ticket) *sync_ticket = 0;
    if (!x) return publish_outcome::rejected;
    external_ticket_ = 0;
    // What the sink hands on to other nodes (a room's or a feed's members there) counts in this
    // publish's answer, as on the node that took the publish.
    answer_ = answer;
    remote_ = remote;
    bool taken = x->deliver_external(*own);
    answer_ = nullptr;
    remote_ = nullptr;
    if (sync_ticket) *sync_ticket = external_ticket_;
    return taken ? publish_outcome::routed : publish_outcome::unroutable;
  }
  std::vector<dest_id> targets;
  for (const auto& name : t.queues)
    if (auto id = routing_.queue_id(name); id && !remote_ids_.count(*id)) targets.push_back(*id);
  if (sync_ticket) *sync_ticket = 0;
  // None of them is here any more (deleted meanwhile): the sender must not confirm it.
  if (targets.empty()) return publish_outcome::rejected;
  std::sort(targets.begin(), targets.end());
  targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
  count(global_counters::routed);
  bool rejected = false;
  external_ticket_ = 0;
  answer_ = answer;
  remote_ = remote;
  uint64_t ticket = enqueue_all(std::move(own), targets, now_ms(), rejected, publisher);
  answer_ = nullptr;
  remote_ = nullptr;
  if (sync_ticket) *sync_ticket = std::max(ticket, external_ticket_);
  return rejected ? publish_outcome::rejected : publish_outcome::routed;
}

}  // namespace warren::broker
