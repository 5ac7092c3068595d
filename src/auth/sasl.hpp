// SASL mechanisms offered to AMQP clients: PLAIN (RFC 4616), RabbitMQ's AMQPLAIN, and EXTERNAL on
// TLS connections with a verified client certificate.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace warren::auth {

struct credentials {
  std::string username;
  std::string password;
};

// Space-separated list for connection.start's `mechanisms`.
inline constexpr std::string_view offered_mechanisms = "PLAIN AMQPLAIN";
// EXTERNAL, as RabbitMQ's rabbitmq_auth_mechanism_ssl with ssl_cert_login_from = common_name: the
// user is the subject CN of the client certificate the TLS handshake verified, the response is
// ignored. Offered (last, so clients that take the first they know keep PLAIN) only on such
// connections.
inline constexpr std::string_view external_mechanism = "EXTERNAL";
inline constexpr std::string_view offered_mechanisms_with_external = "PLAIN AMQPLAIN EXTERNAL";

bool is_offered_mechanism(std::string_view mechanism);

// PLAIN: [authzid] NUL authcid NUL passwd. An authzid other than empty or the authcid is refused.
std::optional<credentials> parse_plain(std::string_view response);
// AMQPLAIN: a field table without its length prefix holding LOGIN and PASSWORD (long strings).
std::optional<credentials> parse_amqplain(std::string_view response);
// Dispatches on the mechanism name; nullopt for a malformed response or unknown mechanism.
std::optional<credentials> parse_response(std::string_view mechanism, std::string_view response);

}  // namespace warren::auth
