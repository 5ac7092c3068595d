// A user's permissions checked where the broker's state is: on the vhost's home worker, for what
// a name alone does not tell (a server-named queue's name, whether a queue or exchange is new,
// whether an exchange is a topic exchange). The AMQP channel and the management API carry one
// there with the operation; the name-only checks they make on their own worker
// (auth::check_resource). Refusals are access_refused errors with RabbitMQ's texts.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "auth/permissions.hpp"
#include "broker/error.hpp"

namespace warren::broker {

class vhost;

struct access_checks {
  std::shared_ptr<const auth::vhost_access> access;  // null: no permission in the vhost
  std::string user;
  bool unchecked = false;  // the control socket's administrator: nothing is checked

  // Home worker of `v` (reads only the immutable access and `v`).
  maybe_error resource(auth::perm p, auth::resource r, std::string_view name, const vhost& v) const;
  // Only a topic exchange has its routing keys checked; a missing exchange is left to the
  // operation's own error (RabbitMQ looks the exchange up first).
  maybe_error topic(auth::perm p, std::string_view exchange, std::string_view routing_key,
                    const vhost& v) const;
  // queue.declare (not passive) once the name is settled: configure on the queue, and for a new
  // queue with a dead-letter exchange read on the queue and write on that exchange.
  maybe_error declare_queue(std::string_view name, bool exists,
                            std::optional<std::string_view> dead_letter_exchange,
                            const vhost& v) const;
  // exchange.declare (not passive) of a new exchange with an alternate exchange: read on the
  // exchange, write on the alternate. (configure on it is checked by name beforehand.)
  maybe_error new_exchange_alternate(std::string_view name, std::string_view alternate,
                                     const vhost& v) const;
  // Whether topic() could refuse anything on `exchange`: most users have no topic permission,
  // and then nothing need be carried to the vhost.
  bool has_topic_rule(std::string_view exchange) const {
    return !unchecked && access && access->topic(exchange);
  }
};

}  // namespace warren::broker
