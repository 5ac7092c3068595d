// Edits of an encoded basic property list (a content header's property flags and list, as a
// publisher sent it) that leave every other byte as it was. A node of a cluster puts its forward
// header into a message this way, and the receiving node takes it out, without decoding and
// re-encoding the publisher's properties (docs/cluster.md, "Queues across nodes"): consumers get
// the publisher's bytes, and neither node pays for the whole property list.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "amqp/protocol/field_table.hpp"

namespace warren::amqp::protocol {

// Puts `key` = `value` first in the headers table of `props`, making the table when there is
// none. False (and `props` unchanged) when `props` does not start as a basic property list does,
// or `key` is longer than a short string.
bool prepend_header(std::string& props, std::string_view key, const field_value& value);

// When the headers table of `props` starts with `key`, takes that entry out (and the table with
// it when it was the only entry: its flag is cleared) and returns its value; else nullopt and
// `props` is unchanged.
std::optional<field_value> take_first_header(std::string& props, std::string_view key);

}  // namespace warren::amqp::protocol
