// JSON responses and basic authentication for the management API.
#include "mgmt/api.hpp"

#include <spdlog/spdlog.h>

#include <cctype>

#include "auth/password.hpp"

namespace warren::mgmt {

namespace bhttp = boost::beast::http;

http::response json_response(const http::request_header& req, bhttp::status status,
                             const json& body) {
  return http::text_response(req, status, dump(body), "application/json");
}

http::response json_error(const http::request_header& req, bhttp::status status,
                          std::string_view error, std::string_view reason) {
  return json_response(req, status, json{{"error", error}, {"reason", reason}});
}

namespace {

http::response unauthenticated(const http::request_header& req, std::string_view reason) {
  auto res = json_error(req, bhttp::status::unauthorized, "not_authorized", reason);
  res.set(bhttp::field::www_authenticate, "Basic realm=\"RabbitMQ Management\"");
  return res;
}

// "Basic <base64(user:password)>", the scheme case-insensitive.
std::optional<auth::credentials> basic_credentials(std::string_view header) {
  constexpr std::string_view scheme = "basic ";
  if (header.size() < scheme.size()) return std::nullopt;
  for (size_t i = 0; i < scheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(header[i])) != scheme[i]) return std::nullopt;
  std::string_view b64 = header.substr(scheme.size());
  while (!b64.empty() && b64.front() == ' ') b64.remove_prefix(1);
  while (!b64.empty() && b64.back() == ' ') b64.remove_suffix(1);
  std::string decoded;
  if (!auth::base64_decode(b64, decoded)) return std::nullopt;
  size_t colon = decoded.find(':');
  if (colon == std::string::npos) return std::nullopt;
  return auth::credentials{decoded.substr(0, colon), decoded.substr(colon + 1)};
}

}  // namespace

std::variant<auth::user_ptr, http::response> authenticate(const http::request_header& req,
                                                          const boost::asio::ip::address& peer,
                                                          const auth::user_store& users,
                                                          bool admin_only) {
  auto header = req[bhttp::field::authorization];
  if (header.empty()) return unauthenticated(req, "Authorization required");
  auto creds = basic_credentials(header);
  if (!creds) return unauthenticated(req, "Malformed Authorization header");
  auth::user_ptr who;
  switch (users.login(*creds, peer, &who)) {
    case auth::login_result::ok:
      break;
    case auth::login_result::invalid_credentials:
      spdlog::warn("HTTP access denied: user '{}' - invalid credentials", creds->username);
      return unauthenticated(req, "Login failed");
    case auth::login_result::loopback_only:
      spdlog::warn("HTTP access denied: user '{}' can only log in via localhost", creds->username);
      // 401 as RabbitMQ answers (rabbitmqadmin turns a 403 into a traceback).
      return json_error(req, bhttp::status::unauthorized, "not_authorised",
                        "User can only log in via localhost");
  }
  if (admin_only && !auth::user_store::has_tag(*who, "administrator")) {
    spdlog::warn("HTTP access denied: user '{}' - Not administrator user", who->name);
    return json_error(req, bhttp::status::unauthorized, "not_authorised", "Not administrator user");
  }
  return who;
}

bool has_access(const auth::user& u, access level) {
  auto tag = [&](std::string_view t) { return auth::user_store::has_tag(u, t); };
  switch (level) {
    case access::management:
      return tag("management") || tag("policymaker") || tag("monitoring") || tag("administrator");
    case access::monitoring:
      return tag("monitoring") || tag("administrator");
    case access::policymaker:
      return tag("policymaker") || tag("administrator");
    case access::administrator:
      return tag("administrator");
  }
  return false;
}

bool sees_all_vhosts(const auth::user& u) {
  return has_access(u, access::monitoring);
}

std::variant<auth::user_ptr, http::response> authenticate(const http::request_header& req,
                                                          const boost::asio::ip::address& peer,
                                                          const auth::user_store& users,
                                                          access level) {
  auto who = authenticate(req, peer, users, false);
  if (auto* u = std::get_if<auth::user_ptr>(&who); u && !has_access(**u, level)) {
    static constexpr std::string_view why[] = {"Not management user", "Not monitor user",
                                               "Not policymaker user", "Not administrator user"};
    spdlog::warn("HTTP access denied: user '{}' - {}", (*u)->name, why[size_t(level)]);
    return json_error(req, bhttp::status::unauthorized, "not_authorised", why[size_t(level)]);
  }
  return who;
}

std::variant<auth::user_ptr, http::response> authenticate(const http::request_header& req,
                                                          const http::request_context& ctx,
                                                          const auth::user_store& users,
                                                          bool admin_only) {
  if (ctx.local_socket) {
    // Built once; administrators see and manage every vhost whatever their permissions map says.
    static const auth::user_ptr local_admin = std::make_shared<const auth::user>(
        auth::user{std::string(local_admin_name), {}, {"administrator"}, {}});
    return local_admin;
  }
  return authenticate(req, ctx.peer, users, admin_only);
}

std::variant<auth::user_ptr, http::response> authenticate(const http::request_header& req,
                                                          const http::request_context& ctx,
                                                          const auth::user_store& users,
                                                          access level) {
  if (ctx.local_socket) return authenticate(req, ctx, users, true);
  return authenticate(req, ctx.peer, users, level);
}

}  // namespace warren::mgmt
