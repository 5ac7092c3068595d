// The management HTTP router: maps method + path to a resource handler.
#pragma once

#include "http/http_handler.hpp"

namespace warren::mgmt {

// GET /healthz -> 200 "ok". Everything else -> 404 (the API arrives resource by resource).
http::router make_router();

}  // namespace warren::mgmt
