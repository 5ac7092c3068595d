// GET and POST /api/definitions[/{vhost}]: export and import in RabbitMQ's format. Each vhost is
// asked on its home worker (a message there and one back, never a blocking wait); the parts are
// gathered on the worker of the HTTP connection, which answers when the last one is in.
#pragma once

#include <optional>
#include <string>

#include "http/http_handler.hpp"
#include "mgmt/api.hpp"

namespace warren::mgmt {

// Largest definitions document accepted (RabbitMQ's default management.http.max_body_size).
inline constexpr size_t max_definitions_bytes = 20'000'000;

// `here` is the connection's worker; `api` must outlive every pending request. `vhost` is the
// decoded {vhost} of the path, if any.
void export_definitions(const api_context& api, const http::request_header& req,
                        std::optional<std::string> vhost, net::worker& here, http::responder done);
void import_definitions(const api_context& api, const http::request& req,
                        std::optional<std::string> vhost, const std::string& acting_user,
                        net::worker& here, http::responder done);

}  // namespace warren::mgmt
