// Management routes: the path split into decoded segments and matched against a table, the
// method checked, the user authenticated for the route's access level, then the resource.
#include "mgmt/routes.hpp"

#include <array>

#include "http/url.hpp"
#include "mgmt/dashboard.hpp"
#include "mgmt/definitions_resource.hpp"
#include "mgmt/resources.hpp"

namespace warren::mgmt {

namespace bhttp = boost::beast::http;

namespace {

// Bodies of requests other than a definitions upload.
constexpr size_t small_body_bytes = 64 * 1024;

using handler = void (*)(const call_ptr&);

struct route {
  std::string_view pattern;  // segments after "/api/", "*" for a variable one
  bhttp::verb verb;
  access level;
  handler fn;
};

// clang-format off
// The table: RabbitMQ 3.13's paths (rabbit_mgmt_dispatcher.erl) that Warren serves.
const route routes[] = {
  {"overview", bhttp::verb::get, access::management, get_overview},
  {"cluster-name", bhttp::verb::get, access::management,
   [](const call_ptr& c) { c->json_reply({{"name", c->api.cluster_name}}); }},
  {"nodes", bhttp::verb::get, access::monitoring, [](const call_ptr& c) { get_nodes(c, false); }},
  {"nodes/*", bhttp::verb::get, access::monitoring, [](const call_ptr& c) { get_nodes(c, true); }},
  {"whoami", bhttp::verb::get, access::management, get_whoami},
  {"extensions", bhttp::verb::get, access::management, [](const call_ptr& c) { c->json_reply(json::array()); }},
  {"connections", bhttp::verb::get, access::management, [](const call_ptr& c) { list_connections(c, false); }},
  {"vhosts/*/connections", bhttp::verb::get, access::management, [](const call_ptr& c) { list_connections(c, true); }},
  {"connections/*", bhttp::verb::get, access::management, get_connection},
  {"connections/*", bhttp::verb::delete_, access::management, close_connection},
  {"connections/*/channels", bhttp::verb::get, access::management, [](const call_ptr& c) { list_channels(c, 2); }},
  {"channels", bhttp::verb::get, access::management, [](const call_ptr& c) { list_channels(c, 0); }},
  {"vhosts/*/channels", bhttp::verb::get, access::management, [](const call_ptr& c) { list_channels(c, 1); }},
  {"channels/*", bhttp::verb::get, access::management, get_channel},
  {"consumers", bhttp::verb::get, access::management, [](const call_ptr& c) { list_consumers(c, false); }},
  {"consumers/*", bhttp::verb::get, access::management, [](const call_ptr& c) { list_consumers(c, true); }},
  {"exchanges", bhttp::verb::get, access::management, [](const call_ptr& c) { list_exchanges(c, false); }},
  {"exchanges/*", bhttp::verb::get, access::management, [](const call_ptr& c) { list_exchanges(c, true); }},
  {"exchanges/*/*", bhttp::verb::get, access::management, get_exchange},
  {"exchanges/*/*", bhttp::verb::put, access::management, put_exchange},
  {"exchanges/*/*", bhttp::verb::delete_, access::management, delete_exchange},
  {"exchanges/*/*/bindings/source", bhttp::verb::get, access::management, [](const call_ptr& c) { exchange_bindings(c, true); }},
  {"exchanges/*/*/bindings/destination", bhttp::verb::get, access::management, [](const call_ptr& c) { exchange_bindings(c, false); }},
  {"exchanges/*/*/publish", bhttp::verb::post, access::management, publish_message},
  {"queues", bhttp::verb::get, access::management, [](const call_ptr& c) { list_queues(c, false); }},
  {"queues/*", bhttp::verb::get, access::management, [](const call_ptr& c) { list_queues(c, true); }},
  {"queues/*/*", bhttp::verb::get, access::management, get_queue},
  {"queues/*/*", bhttp::verb::put, access::management, put_queue},
  {"queues/*/*", bhttp::verb::delete_, access::management, delete_queue},
  {"queues/*/*/contents", bhttp::verb::delete_, access::management, purge_queue},
  {"queues/*/*/get", bhttp::verb::post, access::management, get_messages},
  {"queues/*/*/bindings", bhttp::verb::get, access::management, queue_bindings},
  {"bindings", bhttp::verb::get, access::management, [](const call_ptr& c) { list_bindings(c, false); }},
  {"bindings/*", bhttp::verb::get, access::management, [](const call_ptr& c) { list_bindings(c, true); }},
  {"bindings/*/e/*/q/*", bhttp::verb::get, access::management, [](const call_ptr& c) { bindings_between(c, false); }},
  {"bindings/*/e/*/q/*", bhttp::verb::post, access::management, [](const call_ptr& c) { add_binding(c, false); }},
  {"bindings/*/e/*/e/*", bhttp::verb::get, access::management, [](const call_ptr& c) { bindings_between(c, true); }},
  {"bindings/*/e/*/e/*", bhttp::verb::post, access::management, [](const call_ptr& c) { add_binding(c, true); }},
  {"bindings/*/e/*/q/*/*", bhttp::verb::get, access::management, [](const call_ptr& c) { binding_by_props(c, false, false); }},
  {"bindings/*/e/*/q/*/*", bhttp::verb::delete_, access::management, [](const call_ptr& c) { binding_by_props(c, false, true); }},
  {"bindings/*/e/*/e/*/*", bhttp::verb::get, access::management, [](const call_ptr& c) { binding_by_props(c, true, false); }},
  {"bindings/*/e/*/e/*/*", bhttp::verb::delete_, access::management, [](const call_ptr& c) { binding_by_props(c, true, true); }},
  {"users", bhttp::verb::get, access::administrator, list_users},
  {"users/*", bhttp::verb::get, access::administrator, get_user},
  {"users/*", bhttp::verb::put, access::administrator, put_user},
  {"users/*", bhttp::verb::delete_, access::administrator, delete_user},
  {"users/*/permissions", bhttp::verb::get, access::administrator, [](const call_ptr& c) { list_permissions(c, 2); }},
  {"permissions", bhttp::verb::get, access::administrator, [](const call_ptr& c) { list_permissions(c, 0); }},
  {"vhosts/*/permissions", bhttp::verb::get, access::administrator, [](const call_ptr& c) { list_permissions(c, 1); }},
  {"permissions/*/*", bhttp::verb::get, access::administrator, get_permission},
  {"permissions/*/*", bhttp::verb::put, access::administrator, put_permission},
  {"permissions/*/*", bhttp::verb::delete_, access::administrator, delete_permission},
  {"topic-permissions", bhttp::verb::get, access::administrator, [](const call_ptr& c) { list_topic_permissions(c, 0); }},
  {"vhosts/*/topic-permissions", bhttp::verb::get, access::administrator, [](const call_ptr& c) { list_topic_permissions(c, 1); }},
  {"users/*/topic-permissions", bhttp::verb::get, access::administrator, [](const call_ptr& c) { list_topic_permissions(c, 2); }},
  {"topic-permissions/*/*", bhttp::verb::get, access::administrator, get_topic_permission},
  {"topic-permissions/*/*", bhttp::verb::put, access::administrator, put_topic_permission},
  {"topic-permissions/*/*", bhttp::verb::delete_, access::administrator, [](const call_ptr& c) { delete_topic_permission(c, false); }},
  {"topic-permissions/*/*/*", bhttp::verb::get, access::administrator, get_topic_permission},
  {"topic-permissions/*/*/*", bhttp::verb::delete_, access::administrator, [](const call_ptr& c) { delete_topic_permission(c, true); }},
  {"vhosts", bhttp::verb::get, access::management, list_vhosts},
  {"vhosts/*", bhttp::verb::get, access::management, get_vhost},
  {"vhosts/*", bhttp::verb::put, access::administrator, put_vhost},
  {"vhosts/*", bhttp::verb::delete_, access::administrator, delete_vhost},
  // Runtime parameters and policies (resources_parameters.cpp); vhost limits have their own paths.
  {"parameters", bhttp::verb::get, access::policymaker, [](const call_ptr& c) { list_parameters(c, 0); }},
  {"parameters/*", bhttp::verb::get, access::policymaker, [](const call_ptr& c) { list_parameters(c, 1); }},
  {"parameters/*/*", bhttp::verb::get, access::policymaker, [](const call_ptr& c) { list_parameters(c, 2); }},
  {"parameters/*/*/*", bhttp::verb::get, access::policymaker, get_parameter},
  {"parameters/*/*/*", bhttp::verb::put, access::policymaker, put_parameter},
  {"parameters/*/*/*", bhttp::verb::delete_, access::policymaker, delete_parameter},
  {"global-parameters", bhttp::verb::get, access::management, [](const call_ptr& c) { c->list(json::array()); }},
  {"policies", bhttp::verb::get, access::policymaker, [](const call_ptr& c) { list_policies(c, false); }},
  {"policies/*", bhttp::verb::get, access::policymaker, [](const call_ptr& c) { list_policies(c, true); }},
  {"policies/*/*", bhttp::verb::get, access::policymaker, get_policy},
  {"policies/*/*", bhttp::verb::put, access::policymaker, put_policy},
  {"policies/*/*", bhttp::verb::delete_, access::policymaker, delete_policy},
  {"federation-links", bhttp::verb::get, access::monitoring, [](const call_ptr& c) { list_links(c, false, false); }},
  {"federation-links/*", bhttp::verb::get, access::monitoring, [](const call_ptr& c) { list_links(c, false, true); }},
  {"shovels", bhttp::verb::get, access::monitoring, [](const call_ptr& c) { list_links(c, true, false); }},
  {"shovels/*", bhttp::verb::get, access::monitoring, [](const call_ptr& c) { list_links(c, true, true); }},
  {"operator-policies", bhttp::verb::get, access::management, [](const call_ptr& c) { c->list(json::array()); }},
  {"operator-policies/*", bhttp::verb::get, access::management, [](const call_ptr& c) { c->list(json::array()); }},
  {"vhost-limits", bhttp::verb::get, access::management, [](const call_ptr& c) { list_vhost_limits(c, false); }},
  {"vhost-limits/*", bhttp::verb::get, access::management, [](const call_ptr& c) { list_vhost_limits(c, true); }},
  {"vhost-limits/*/*", bhttp::verb::put, access::administrator, put_vhost_limit},
  {"vhost-limits/*/*", bhttp::verb::delete_, access::administrator, delete_vhost_limit},
  {"user-limits", bhttp::verb::get, access::administrator, [](const call_ptr& c) { list_user_limits(c, false); }},
  {"user-limits/*", bhttp::verb::get, access::administrator, [](const call_ptr& c) { list_user_limits(c, true); }},
  {"user-limits/*/*", bhttp::verb::put, access::administrator, put_user_limit},
  {"user-limits/*/*", bhttp::verb::delete_, access::administrator, delete_user_limit},
  {"feature-flags", bhttp::verb::get, access::management, [](const call_ptr& c) { c->json_reply(json::array()); }},
  // Warren's own.
  {"warren/vm-memory-high-watermark", bhttp::verb::put, access::administrator, put_memory_watermark},
  {"warren/gateway", bhttp::verb::get, access::monitoring, get_gateway},
  {"health/checks/alarms", bhttp::verb::get, access::monitoring,
   [](const call_ptr& c) {
     node_status s = c->api.node ? c->api.node() : node_status{};
     if (s.mem_alarm || s.disk_free_alarm)
       return c->error(bhttp::status::service_unavailable, "failed", "resource alarm(s) in effect");
     c->json_reply({{"status", "ok"}});
   }},
};
// clang-format on

// Splits "/api/a/b%2Fc" into decoded segments after "api": {"a", "b/c"}. False if the path is
// not under /api or a segment does not decode. A '+' stays a '+' (RabbitMQ's paths).
bool api_segments(std::string_view path, std::vector<std::string>& out) {
  constexpr std::string_view prefix = "/api/";
  if (path.rfind(prefix, 0) != 0) return false;
  path.remove_prefix(prefix.size());
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  while (true) {
    size_t slash = path.find('/');
    auto seg = http::percent_decode(path.substr(0, slash));
    if (!seg) return false;
    out.push_back(std::move(*seg));
    if (slash == std::string_view::npos) return true;
    path.remove_prefix(slash + 1);
  }
}

// The pattern's "*" segments, or nullopt if the segments do not fit it.
std::optional<std::vector<std::string>> fit(std::string_view pattern,
                                            const std::vector<std::string>& segs) {
  std::vector<std::string> args;
  size_t i = 0;
  while (true) {
    size_t slash = pattern.find('/');
    std::string_view p = pattern.substr(0, slash);
    if (i >= segs.size()) return std::nullopt;
    if (p == "*")
      args.push_back(segs[i]);
    else if (p != segs[i])
      return std::nullopt;
    ++i;
    if (slash == std::string_view::npos) break;
    pattern.remove_prefix(slash + 1);
  }
  if (i != segs.size()) return std::nullopt;
  return args;
}

bool has_body(const http::request_header& req) {
  auto length = req[bhttp::field::content_length];
  return (!length.empty() && length != "0") || req.count(bhttp::field::transfer_encoding) > 0;
}

bool is_definitions(std::string_view path) {
  return path == "/api/definitions" || path.rfind("/api/definitions/", 0) == 0;
}

// Definitions keep their own handling (large uploads, administrator only).
void definitions_route(const api_context& api, http::request req, const http::request_context& ctx,
                       http::responder done, std::string_view path) {
  std::optional<std::string> vhost;
  std::string_view rest = path.substr(std::string_view("/api/definitions").size());
  if (!rest.empty()) {
    if (rest.front() != '/' || rest.size() == 1 || rest.find('/', 1) != std::string_view::npos)
      return done(json_error(req, bhttp::status::not_found, "Object Not Found", "Not Found"));
    vhost = http::percent_decode(rest.substr(1));
    if (!vhost)
      return done(json_error(req, bhttp::status::not_found, "Object Not Found", "Not Found"));
  }
  if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::post) {
    auto res =
        json_error(req, bhttp::status::method_not_allowed, "method_not_allowed", "use GET, POST");
    res.set(bhttp::field::allow, "GET, POST");
    return done(std::move(res));
  }
  auto who = authenticate(req, ctx, *api.users, access::administrator);
  if (auto* refusal = std::get_if<http::response>(&who)) return done(std::move(*refusal));
  const auto& user = std::get<auth::user_ptr>(who);
  if (req.method() == bhttp::verb::get)
    export_definitions(api, req, std::move(vhost), *ctx.worker, std::move(done));
  else
    import_definitions(api, req, std::move(vhost), user->name, *ctx.worker, std::move(done));
}

}  // namespace

http::router make_router(const api_context& api) {
  http::router r;
  r.on_head = [&api](const http::request_header& req,
                     const http::request_context& ctx) -> std::variant<size_t, http::response> {
    std::string_view target = req.target();
    std::string_view path = target.substr(0, target.find('?'));
    if (!is_definitions(path)) return small_body_bytes;
    // Refuse an unauthenticated upload before reading it (and close: its body is not read).
    // Requests without a body are refused in handle, keeping the connection.
    if (has_body(req)) {
      auto who = authenticate(req, ctx, *api.users, access::administrator);
      if (auto* refusal = std::get_if<http::response>(&who)) return std::move(*refusal);
    }
    return req.method() == bhttp::verb::post ? max_definitions_bytes : small_body_bytes;
  };
  r.handle = [&api](http::request req, const http::request_context& ctx, http::responder done) {
    std::string target(req.target());
    std::string_view path = std::string_view(target).substr(0, target.find('?'));
    if (path == "/healthz") {
      if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::head) {
        auto res = json_error(req, bhttp::status::method_not_allowed, "method_not_allowed",
                              "use GET, HEAD");
        res.set(bhttp::field::allow, "GET, HEAD");
        return done(std::move(res));
      }
      return done(http::text_response(req, bhttp::status::ok, "ok"));
    }
    // The dashboard's files (GET/HEAD, no auth) for any other path outside /api.
    if (path.rfind("/api", 0) != 0)
      if (auto page = serve_dashboard(req)) return done(std::move(*page));
    if (is_definitions(path))
      return definitions_route(api, std::move(req), ctx, std::move(done), path);
    std::vector<std::string> segs;
    if (!api_segments(path, segs))
      return done(json_error(req, bhttp::status::not_found, "Object Not Found", "Not Found"));
    bhttp::verb verb = req.method() == bhttp::verb::head ? bhttp::verb::get : req.method();
    const route* found = nullptr;
    std::vector<std::string> args;
    std::string allow;
    for (const auto& rt : routes) {
      auto a = fit(rt.pattern, segs);
      if (!a) continue;
      if (rt.verb == verb) {
        found = &rt;
        args = std::move(*a);
        break;
      }
      if (!allow.empty()) allow += ", ";
      allow += std::string(bhttp::to_string(rt.verb));
    }
    if (!found) {
      if (allow.empty())
        return done(json_error(req, bhttp::status::not_found, "Object Not Found", "Not Found"));
      auto res =
          json_error(req, bhttp::status::method_not_allowed, "method_not_allowed", "use " + allow);
      res.set(bhttp::field::allow, allow);
      return done(std::move(res));
    }
    auto who = authenticate(req, ctx, *api.users, found->level);
    if (auto* refusal = std::get_if<http::response>(&who)) return done(std::move(*refusal));
    auto q = parse_list_query(target);
    if (auto* e = std::get_if<query_error>(&q))
      return done(json_error(req, bhttp::status::bad_request, e->error, e->reason));
    auto c = std::make_shared<call>(call{api, std::move(req), *ctx.worker, std::move(done),
                                         std::get<auth::user_ptr>(who), std::move(args),
                                         std::move(std::get<list_query>(q))});
    c->local = ctx.local_socket;
    found->fn(c);
  };
  return r;
}

}  // namespace warren::mgmt
