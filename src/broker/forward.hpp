// A publish handed from one node of a cluster to another (docs/cluster.md, "Queues across
// nodes"): the node that took the publish routed it and found queues living on another node; it
// sends the message once to that node, to the reserved exchange `amq.warren.forward`, with one
// header naming the original exchange, routing key and the target queues. The receiving node
// enqueues into exactly those queues (no routing there) and strips the header, so consumers see
// the message as published. Plain values: no sockets, no frames.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "broker/message.hpp"

namespace warren::broker {

// Never declared or listed; only a node of the cluster may publish to it (the channel refuses it
// to anybody else as a missing exchange).
inline constexpr std::string_view forward_exchange = "amq.warren.forward";
inline constexpr std::string_view forward_header = "x-warren-forward";

struct forward_target {
  std::string exchange;     // as published
  std::string routing_key;  // as published
  std::vector<std::string> queues;
};

// The forward header's value: a table {e: exchange, k: routing key, q: [queue names]}.
common::field_value forward_value(const forward_target& t);
// Reads it; nullopt if malformed.
std::optional<forward_target> read_forward_value(const common::field_value& v);

// The headers of the forwarded copy of `p`: the forward header first, then p's own. The sending
// node puts the same entry into the publisher's encoded properties without decoding them
// (amqp/protocol/properties_edit.hpp); the receiving node takes it out of them the same way.
common::field_table forward_headers(const message_properties& p, const forward_target& t);
// Takes the forward header out of `p`'s decoded headers (the headers go when nothing else was in
// them: to consumers an empty table and none are the same) and reads it; nullopt if the first
// header is not the forward header or it is malformed.
std::optional<forward_target> take_forward_header(message_properties& p);

}  // namespace warren::broker
