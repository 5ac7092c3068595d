// Definitions between the broker and their JSON (definitions_json.hpp): what a vhost has, put
// into definitions on its home worker; definitions declared into a vhost through its ordinary
// methods on its home worker (so durable ones are journalled like any AMQP declare); users and
// permissions merged into the user store. The HTTP resource that drives these across workers
// is in definitions_resource.hpp.
#pragma once

#include <optional>
#include <string>
#include <variant>

#include "auth/user_store.hpp"
#include "broker/vhost.hpp"
#include "mgmt/definitions_json.hpp"

namespace warren::mgmt {

// Home worker of `v`. Appends its durable exchanges (not the default or amq.* ones), durable
// queues and the bindings between them, in the vhost's order, to `d`.
void collect(const broker::vhost& v, definitions& d);

// Any thread, before anything is applied: what can be refused without looking at a vhost
// (unknown exchange types, bad queue or exchange arguments). The reason for a 400, or nullopt.
std::optional<std::string> precheck(const definitions& d);

// Home worker of `v`. Declares the exchanges, then the queues, then the bindings of `d` that
// belong to `v`. Exchanges and queues that exist already are left as they are (RabbitMQ does
// not compare them either); so are, in a cluster, queues of other nodes and bindings to them
// (those are their nodes'). Stops at the first error and returns it as RabbitMQ words it
// ("not_found: no queue 'q' in vhost '/'"); what was declared before it stays.
std::optional<std::string> apply(broker::vhost& v, const definitions& d);

// apply in slices, so that a large import does not hold the vhost's worker for long: declares
// at most `budget` items from position `next` (which it advances) and says whether it is done.
// Call again with the same `next` until it is; every call on the home worker of `v`.
struct apply_done {};
struct apply_more {};
std::variant<apply_done, apply_more, std::string> apply_some(broker::vhost& v, const definitions& d,
                                                             size_t& next, size_t budget);

// Any thread. Adds or replaces the users of `d` (a replaced user keeps its permissions and
// topic permissions) and sets the permissions and topic permissions of `d`, all under one writer
// lock. Refuses, changing nothing, a permission for a user that is neither in the store nor in
// `d`. (RabbitMQ 4.3 sets topic permissions after the exchanges and refuses one on an exchange
// that does not exist; Warren does not look, as RabbitMQ before 4.3 did not.)
std::optional<std::string> apply_users(auth::user_store& store, const definitions& d);

// "not_found", "precondition_failed", ...: RabbitMQ's names for the AMQP reply codes.
std::string_view error_name(broker::error_code c);

}  // namespace warren::mgmt
