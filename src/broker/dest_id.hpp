// The identity routing structures hand back for a binding's destination (a queue or, for
// exchange-to-exchange bindings, an exchange). The vhost that owns the routing tables maps ids to
// objects, so the tables stay small, copyable and free of pointers into the broker model.
#pragma once

#include <cstdint>

namespace warren::broker {

using dest_id = uint64_t;

}  // namespace warren::broker
