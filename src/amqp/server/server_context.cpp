// The server-properties table sent in connection.start.
#include "amqp/server/server_context.hpp"

namespace warren::amqp::server {

protocol::field_table make_server_properties(const server_settings& s) {
  protocol::field_table caps;
  for (const char* c :
       {"publisher_confirms", "exchange_exchange_bindings", "basic.nack", "consumer_cancel_notify",
        "connection.blocked", "authentication_failure_close", "per_consumer_qos",
        // x-priority on basic.consume; RabbitMQ's queue federation requires it of an upstream.
        "consumer_priorities"})
    caps.set(c, true);
  protocol::field_table t;
  t.set("capabilities", caps);
  t.set("cluster_name", s.cluster_name);
  t.set("copyright", std::string("Copyright (c) the Warren authors"));
  t.set("information", std::string("Warren: an AMQP 0-9-1 broker with a web push gateway"));
  t.set("platform", std::string("Linux, C++20"));
  t.set("product", std::string("Warren"));
  t.set("version", std::string(WARREN_VERSION));
  return t;
}

}  // namespace warren::amqp::server
