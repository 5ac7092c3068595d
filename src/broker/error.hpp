// Errors the broker reports to whoever asked (an AMQP channel, later the HTTP API): a code and
// a text. The codes are AMQP's reply codes, which RabbitMQ's HTTP API reuses too; whether an
// error closes a channel or a connection is the protocol layer's business.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace warren::broker {

enum class error_code : uint16_t {
  access_refused = 403,
  not_found = 404,
  resource_locked = 405,
  precondition_failed = 406,
  command_invalid = 503,
  not_allowed = 530,
  not_implemented = 540,
};

struct error {
  error_code code;
  std::string text;  // explanation without the "NAME - " prefix
};

using maybe_error = std::optional<error>;

}  // namespace warren::broker
