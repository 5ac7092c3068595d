// A published message as the broker sees it: plain values, no frames. Immutable once published
// and shared by every queue it is routed to (one body, however many queues).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/field_table.hpp"

namespace warren::broker {

// The basic class's content properties, as plain values (the AMQP layer converts).
struct message_properties {
  std::optional<std::string> content_type;
  std::optional<std::string> content_encoding;
  std::optional<common::field_table> headers;
  std::optional<uint8_t> delivery_mode;
  std::optional<uint8_t> priority;
  std::optional<std::string> correlation_id;
  std::optional<std::string> reply_to;
  std::optional<std::string> expiration;
  std::optional<std::string> message_id;
  std::optional<uint64_t> timestamp;
  std::optional<std::string> type;
  std::optional<std::string> user_id;
  std::optional<std::string> app_id;
  std::optional<std::string> cluster_id;
};

struct message {
  std::string exchange;
  std::string routing_key;
  message_properties properties;
  std::string body;
  // The AMQP content header's property flags and list exactly as the publisher encoded them,
  // written to consumers as they are (no conversion or encoding per delivery); empty: encoded
  // from `properties` at each delivery. A copy whose `properties` change must clear it.
  std::string amqp_properties;
  // The expiration property, parsed (per-message TTL in ms).
  std::optional<int64_t> ttl_ms;

  bool persistent() const { return properties.delivery_mode == 2; }

  // Where the store keeps it (0: not stored). Set once by the vhost's worker while routing,
  // before any queue holds the message, and only read afterwards: the one exception to
  // "immutable once published" (the publishing channel still reads the other fields).
  mutable uint64_t store_id = 0;
  mutable uint32_t store_segment = 0;
  mutable uint32_t store_offset = 0;  // of its record in the segment file
  mutable uint32_t store_length = 0;  // of the record, framing included
};

// RabbitMQ's rule for the expiration property: a non-negative integer in decimal, in ms.
// Returns false for anything else (the publish is refused with 406).
bool parse_expiration(const std::string& text, int64_t& ms);

using message_ptr = std::shared_ptr<const message>;

}  // namespace warren::broker
