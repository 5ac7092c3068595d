// AMQP URIs as RabbitMQ's Erlang client reads them (amqp_uri): amqp[s]://user:pass@host:port/vhost
// with percent-encoded parts; defaults guest/guest, 5672 (5671 for amqps) and vhost "/" when the
// path is absent. Query parameters (heartbeat, connection_timeout, TLS options) are read where
// Warren's client has the setting, otherwise ignored. Pure: no sockets.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace warren::amqp::client {

struct uri {
  bool tls = false;
  std::string host = "localhost";
  uint16_t port = 5672;
  std::string user = "guest";
  std::string password = "guest";
  std::string vhost = "/";
  uint16_t heartbeat = 10;  // seconds; ?heartbeat=N
  // The TCP connection and the AMQP handshake must be done within it (a black-holed address
  // must not keep a link starting for ever). Not read from the URI yet.
  std::chrono::milliseconds connection_timeout{15000};
  bool verify_peer = true;  // amqps: ?verify=verify_none turns it off

  // The URI without its credentials (RabbitMQ's amqp_uri:remove_credentials): what status pages
  // and the x-received-from header show.
  std::string safe;
};

// The parsed URI, or RabbitMQ's reason (e.g. "{unexpected_uri_scheme,\"http\"}").
std::variant<uri, std::string> parse_uri(std::string_view text);

}  // namespace warren::amqp::client
