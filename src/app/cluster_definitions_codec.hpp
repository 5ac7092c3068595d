// The cluster's exchanges, bindings and queue records as etcd keys and values (docs/cluster.md,
// "Keys in etcd"). Pure conversion, no etcd and no broker. Under /warren/<cluster>/definitions/:
//
// | key (each part percent-encoded)                                  | value (JSON) | |
// ---------------------------------------------------------------- | ---------------------------- |
// | <vhost>/exchanges/<name>                                         | name, type, durable, | | |
// auto_delete, internal,       | | | arguments                    | | <vhost>/queues/<name> | name,
// durable, auto_delete,  | |                                                                  |
// arguments, node (its home)   | |
// <vhost>/bindings/<source>/<queue|exchange>/<destination>/<routing key>/<arguments as JSON> |
// source, destination, destination_type, routing_key, arguments |
//
// Percent-encoding keeps letters, digits and "-._~" and writes every other byte as %XX, so that a
// "/" in a name (the vhost "/") never splits a key and every part decodes back to its bytes. A
// binding's key holds all of what makes it distinct (RabbitMQ's binding identity), so putting it
// twice is putting the same thing. Arguments go through the management API's JSON form
// (mgmt/definitions_json.hpp), so what a node reads back compares equal to what it would write.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "mgmt/definitions_json.hpp"

namespace warren::app {

struct queue_record {
  mgmt::queue_def def;
  std::string node;  // the node the queue lives on
  // Exclusive to a connection of its node: other nodes refuse its use (405, as RabbitMQ) and
  // route to it; not listed or exported there. Written as "exclusive" only when true.
  bool exclusive = false;
  bool operator==(const queue_record&) const = default;
};

using definition = std::variant<mgmt::exchange_def, queue_record, mgmt::binding_def>;

std::string percent_encode(std::string_view s);
// nullopt for a malformed escape.
std::optional<std::string> percent_decode(std::string_view s);

// The key of `d`, relative to the definitions prefix ("<vhost>/exchanges/<name>", ...).
std::string definition_key(const definition& d);
// The relative prefix of a vhost's definitions ("<vhost>/").
std::string vhost_key_prefix(std::string_view vhost);
// The key's vhost, or nullopt when the key is not a definition's.
std::optional<std::string> key_vhost(std::string_view key);
// The value `d` is kept as: canonical (equal definitions give equal text).
std::string definition_value(const definition& d);
// The definition a key and its value stand for; nullopt when either is malformed or they do not
// agree (the value's names are not the key's).
std::optional<definition> parse_definition(std::string_view key, std::string_view value);

}  // namespace warren::app
