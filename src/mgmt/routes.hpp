// The management HTTP router: maps method + path to a resource, after authentication.
//
// | path                        | methods   | who                  | resource                 |
// | --------------------------- | --------- | -------------------- | ------------------------ |
// | /healthz                    | GET, HEAD | anyone               | "ok"                     |
// | /api/definitions            | GET, POST | administrator        | definitions_resource.hpp |
// | /api/definitions/{vhost}    | GET, POST | administrator        | definitions_resource.hpp |
// | other /api/...              | -         | -                    | 404 (JSON)               |
//
// {vhost} is percent-encoded ("/" is %2F). Authentication failures are answered from the
// request's head when it carries a body, so an unauthenticated upload is never read.
#pragma once

#include "http/http_handler.hpp"
#include "mgmt/api.hpp"

namespace warren::mgmt {

// `api` must outlive the router and every request in flight.
http::router make_router(const api_context& api);

}  // namespace warren::mgmt
