// Management routes: matching, method checks, authentication, then the resource.
#include "mgmt/routes.hpp"

#include "http/url.hpp"

#include "mgmt/dashboard.hpp"
#include "mgmt/definitions_resource.hpp"

namespace warren::mgmt {

namespace bhttp = boost::beast::http;

namespace {

// Bodies of requests other than a definitions upload.
constexpr size_t small_body_bytes = 64 * 1024;

struct route {
  enum class kind {
    healthz,
    definitions,
    vhosts,
    vhost,
    not_found,
    bad_method
  } what = kind::not_found;
  std::optional<std::string> vhost;  // /api/definitions/{vhost}, decoded
  const char* allow = "";
};

route match(const http::request_header& req) {
  std::string_view target = req.target();
  std::string_view path = target.substr(0, target.find('?'));
  route r;
  auto verb = req.method();
  if (path == "/healthz") {
    r.what = route::kind::healthz;
    if (verb != bhttp::verb::get && verb != bhttp::verb::head) {
      r.what = route::kind::bad_method;
      r.allow = "GET, HEAD";
    }
    return r;
  }
  if (path == "/api/vhosts") {
    r.what = route::kind::vhosts;
    if (verb != bhttp::verb::get) {
      r.what = route::kind::bad_method;
      r.allow = "GET";
    }
    return r;
  }
  constexpr std::string_view vh = "/api/vhosts/";
  if (path.rfind(vh, 0) == 0 && path.size() > vh.size() &&
      path.find('/', vh.size()) == std::string_view::npos) {
    r.vhost = http::percent_decode(path.substr(vh.size()));
    if (!r.vhost) return r;
    r.what = route::kind::vhost;
    if (verb != bhttp::verb::get && verb != bhttp::verb::put) {
      r.what = route::kind::bad_method;
      r.allow = "GET, PUT";  // vhosts are never deleted (pointers to them live on every worker)
    }
    return r;
  }
  constexpr std::string_view defs = "/api/definitions";
  if (path.rfind(defs, 0) != 0) return r;
  std::string_view rest = path.substr(defs.size());
  if (!rest.empty()) {
    if (rest.front() != '/' || rest.size() == 1 || rest.find('/', 1) != std::string_view::npos)
      return r;
    r.vhost = http::percent_decode(rest.substr(1));
    if (!r.vhost) return r;
  }
  r.what = route::kind::definitions;
  if (verb != bhttp::verb::get && verb != bhttp::verb::post) {
    r.what = route::kind::bad_method;
    r.allow = "GET, POST";
  }
  return r;
}

bool has_body(const http::request_header& req) {
  auto length = req[bhttp::field::content_length];
  return (!length.empty() && length != "0") || req.count(bhttp::field::transfer_encoding) > 0;
}

}  // namespace

http::router make_router(const api_context& api) {
  http::router r;
  r.on_head = [&api](const http::request_header& req,
                     const http::request_context& ctx) -> std::variant<size_t, http::response> {
    route m = match(req);
    if (m.what != route::kind::definitions) return small_body_bytes;
    // Refuse an unauthenticated upload before reading it (and close: its body is not read).
    // Requests without a body are refused in handle, keeping the connection.
    if (has_body(req)) {
      auto who = authenticate(req, ctx.peer, *api.users, true);
      if (auto* refusal = std::get_if<http::response>(&who)) return std::move(*refusal);
    }
    return req.method() == bhttp::verb::post ? max_definitions_bytes : small_body_bytes;
  };
  r.handle = [&api](http::request req, const http::request_context& ctx, http::responder done) {
    // The dashboard's files (GET/HEAD, no auth) for any path outside /api and /healthz.
    std::string_view path = req.target().substr(0, req.target().find('?'));
    if (path.rfind("/api", 0) != 0 && path != "/healthz")
      if (auto page = serve_dashboard(req)) return done(std::move(*page));
    route m = match(req);
    switch (m.what) {
      case route::kind::healthz:
        return done(http::text_response(req, bhttp::status::ok, "ok"));
      case route::kind::bad_method: {
        auto res = json_error(req, bhttp::status::method_not_allowed, "method_not_allowed",
                              std::string("use ") + m.allow);
        res.set(bhttp::field::allow, m.allow);
        return done(std::move(res));
      }
      case route::kind::not_found:
        // RabbitMQ's words for an unknown path.
        return done(json_error(req, bhttp::status::not_found, "Object Not Found", "Not Found"));
      case route::kind::definitions:
      case route::kind::vhosts:
      case route::kind::vhost:
        break;
    }
    auto who = authenticate(req, ctx.peer, *api.users, true);
    if (auto* refusal = std::get_if<http::response>(&who)) return done(std::move(*refusal));
    const auto& user = std::get<auth::user_ptr>(who);
    if (m.what == route::kind::vhosts) {
      json list = json::array();
      for (const auto& n : api.vhosts->names()) list.push_back({{"name", n}});
      return done(json_response(req, bhttp::status::ok, list));
    }
    if (m.what == route::kind::vhost) {
      bool exists = api.vhosts->find(*m.vhost) != nullptr;
      if (req.method() == bhttp::verb::get) {
        if (!exists)
          return done(json_error(req, bhttp::status::not_found, "Object Not Found", "Not Found"));
        return done(json_response(req, bhttp::status::ok, json{{"name", *m.vhost}}));
      }
      if (exists) {
        http::response res{bhttp::status::no_content, req.version()};
        res.set(bhttp::field::server, "Warren");
        return done(std::move(res));
      }
      std::string why = api.create_vhost ? api.create_vhost(*m.vhost, user->name)
                                         : "this broker cannot create vhosts";
      if (!why.empty())
        return done(json_error(req, bhttp::status::bad_request, "bad_request", why));
      http::response res{bhttp::status::created, req.version()};
      res.set(bhttp::field::server, "Warren");
      return done(std::move(res));
    }
    if (req.method() == bhttp::verb::get)
      export_definitions(api, req, std::move(m.vhost), *ctx.worker, std::move(done));
    else
      import_definitions(api, req, std::move(m.vhost), user->name, *ctx.worker, std::move(done));
  };
  return r;
}

}  // namespace warren::mgmt
