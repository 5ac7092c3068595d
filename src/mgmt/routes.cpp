// Management routes.
#include "mgmt/routes.hpp"

namespace warren::mgmt {

namespace bhttp = boost::beast::http;

namespace {
http::response answer(const http::request& req) {
  if (req.target() == "/healthz") {
    if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::head)
      return http::text_response(req, bhttp::status::method_not_allowed, "use GET\n");
    return http::text_response(req, bhttp::status::ok, "ok");
  }
  return http::text_response(req, bhttp::status::not_found, "not found\n");
}
}  // namespace

http::router make_router() {
  http::router r;
  r.handle = [](http::request req, const http::request_context&, http::responder done) {
    done(answer(req));
  };
  return r;
}

}  // namespace warren::mgmt
