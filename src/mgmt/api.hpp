// What the management API's resources share: the broker they manage, JSON responses in
// RabbitMQ's shape ({"error": ..., "reason": ...}), and HTTP basic authentication against the
// user store.
#pragma once

#include <functional>

#include <boost/asio/ip/address.hpp>

#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "auth/user_store.hpp"
#include "broker/vhost.hpp"
#include "http/http_handler.hpp"
#include "mgmt/definitions_json.hpp"
#include "net/worker.hpp"

namespace warren::mgmt {

class users_file;

// Built by main before the listeners start; read-only afterwards (the user store it points to
// is itself safe for concurrent use).
struct api_context {
  auth::user_store* users = nullptr;
  broker::vhost_registry* vhosts = nullptr;
  net::worker_pool* pool = nullptr;
  users_file* user_file = nullptr;  // null: imported users last until the process exits
  std::string version;              // Warren's
  // Creates a vhost (durably; the acting user gets full permissions on it). Any thread. Returns
  // an error sentence, empty on success or if it exists. Unset: vhosts cannot be created.
  std::function<std::string(const std::string& name, const std::string& acting_user)> create_vhost;
};

http::response json_response(const http::request_header& req, boost::beast::http::status status,
                             const json& body);
// RabbitMQ's error body: {"error": "bad_request", "reason": "..."}.
http::response json_error(const http::request_header& req, boost::beast::http::status status,
                          std::string_view error, std::string_view reason);

// Checks the request's basic-auth credentials, RabbitMQ's loopback rule and, with
// `admin_only`, the administrator tag. The user, or the response refusing the request:
//   no or malformed Authorization, unknown user, wrong password  401 + WWW-Authenticate
//   loopback-only user from elsewhere, not an administrator      403 (RabbitMQ: 401)
std::variant<auth::user_ptr, http::response> authenticate(const http::request_header& req,
                                                          const boost::asio::ip::address& peer,
                                                          const auth::user_store& users,
                                                          bool admin_only);

// The name of the administrator a request on the control socket acts as. It is not in the user
// store: nobody can log in as it with a password, over AMQP or HTTP.
inline constexpr std::string_view local_admin_name = "warrenctl";

// As above for a management request; one that came over the control socket
// (request_context::local_socket) is the administrator local_admin_name, without credentials:
// the socket file's mode (0600) restricts it to the broker's own system user. Routes call this
// one.
std::variant<auth::user_ptr, http::response> authenticate(const http::request_header& req,
                                                          const http::request_context& ctx,
                                                          const auth::user_store& users,
                                                          bool admin_only);

}  // namespace warren::mgmt
