// A message as a publish would make it, for the broker's unit tests.
#pragma once

#include <memory>
#include <string>

#include "broker/message.hpp"

namespace warren::broker::testing {

inline message_ptr msg(std::string exchange, std::string key, std::string body) {
  auto m = std::make_shared<message>();
  m->exchange = std::move(exchange);
  m->routing_key = std::move(key);
  m->body = std::move(body);
  return m;
}

}  // namespace warren::broker::testing
