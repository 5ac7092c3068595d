// The WebSocket code's name for the UTF-8 validator, which lives in common/ since names elsewhere
// (AMQP queues and exchanges) are checked with it too.
#pragma once

#include "common/utf8.hpp"

namespace warren::web {

using common::is_valid_utf8;
using common::utf8_validator;

}  // namespace warren::web
