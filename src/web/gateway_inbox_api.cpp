// The inbox API (docs/web-api.md, "Inboxes"): a backend reads a user's held events and unread
// count, sets the read position or erases the inbox; a browser reads and sets its own.
#include <boost/beast/core/string.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "http/url.hpp"
#include "web/gateway.hpp"
#include "web/gateway_handler.hpp"

namespace warren::web {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;

namespace {

constexpr size_t default_limit = 100;
constexpr size_t max_limit = 1000;

json page_json(const std::string& user, const inbox_page& p) {
  std::string events = "[";
  for (const auto& e : p.events) {
    if (events.size() > 1) events += ',';
    append_event_json(events, e);
  }
  events += ']';
  json j = {{"user", user},           {"first_seq", p.first_seq}, {"last_seq", p.last_seq},
            {"read_seq", p.read_seq}, {"unread", p.unread},       {"more", p.more}};
  j["events"] = json::parse(events);
  return j;
}

// ?since=N&limit=M; an error text if either is malformed.
std::optional<std::string> page_params(std::string_view target, uint64_t& since, size_t& limit) {
  since = 0;
  limit = default_limit;
  size_t q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view query = target.substr(q + 1);
  if (auto s = http::query_param(query, "since")) {
    auto v = parse_u64(*s);
    if (!v) return "since must be a non-negative integer";
    since = *v;
  }
  if (auto l = http::query_param(query, "limit")) {
    auto v = parse_u64(*l);
    if (!v || *v == 0 || *v > max_limit)
      return fmt::format("limit must be an integer from 1 to {}", max_limit);
    limit = size_t(*v);
  }
  return std::nullopt;
}

// {"seq": N}
std::optional<uint64_t> read_seq_of(const std::string& body) {
  auto b = json::parse(body, nullptr, false);
  if (!b.is_object() || !b.contains("seq") || !b["seq"].is_number_unsigned()) return std::nullopt;
  return b["seq"].get<uint64_t>();
}

}  // namespace

void gateway_handler::inbox_api(request& req, const std::vector<std::string>& parts) {
  // Authenticated as a backend already (backend()).
  const std::string& user = parts[1];
  if (!valid_name(user)) {
    respond_error(400, "bad_request", "invalid user id");
    return;
  }
  gateway* g = &g_;
  auto method = req.method();
  if (parts.size() == 2) {
    if (method == bhttp::verb::get) {
      uint64_t since;
      size_t limit;
      if (auto err = page_params({req.target().data(), req.target().size()}, since, limit)) {
        respond_error(400, "bad_request", *err);
        return;
      }
      on_hub([g, user, since, limit]() -> std::pair<int, std::string> {
        return {200, page_json(user, g->the_hub().read_inbox(user, since, limit)).dump()};
      });
      return;
    }
    if (method == bhttp::verb::delete_) {
      on_hub_synced([g, user]() -> hub_answer { return {204, {}, g->the_hub().erase(user)}; });
      return;
    }
    respond_error(405, "method_not_allowed", "use GET or DELETE", "Allow: GET, DELETE\r\n");
    return;
  }
  if (parts.size() == 3 && parts[2] == "read") {
    if (method != bhttp::verb::put) {
      respond_error(405, "method_not_allowed", "use PUT", "Allow: PUT\r\n");
      return;
    }
    auto seq = read_seq_of(req.body());
    if (!seq) {
      respond_error(400, "bad_request", "expected {\"seq\": N}");
      return;
    }
    on_hub([g, user, s = *seq]() -> std::pair<int, std::string> {
      auto unread = g->the_hub().set_read(user, s);
      if (!unread) return {404, error_json("not_found", "no inbox for '" + user + "'")};
      auto p = g->the_hub().read_inbox(user, 0, 1);
      return {200, json{{"read_seq", p.read_seq}, {"unread", *unread}}.dump()};
    });
    return;
  }
  respond_error(404, "not_found", "no such resource");
}

void gateway_handler::browser_inbox_op(request& req, const std::vector<std::string>& parts) {
  if (!authenticate_browser(req, {})) return;
  if (rights_->anonymous) {
    respond_error(403, "forbidden", "anonymous connections have no inbox");
    return;
  }
  gateway* g = &g_;
  std::string user = session_->user;
  if (parts.size() == 1 || (parts.size() == 2 && parts[1].empty())) {
    if (req.method() != bhttp::verb::get) {
      respond_error(405, "method_not_allowed", "use GET", "Allow: GET\r\n");
      return;
    }
    uint64_t since;
    size_t limit;
    if (auto err = page_params({req.target().data(), req.target().size()}, since, limit)) {
      respond_error(400, "bad_request", *err);
      return;
    }
    on_hub([g, user, since, limit]() -> std::pair<int, std::string> {
      return {200, page_json(user, g->the_hub().read_inbox(user, since, limit)).dump()};
    });
    return;
  }
  if (parts[1] != "read") {
    respond_error(404, "not_found", "no such resource");
    return;
  }
  if (req.method() != bhttp::verb::put) {
    respond_error(405, "method_not_allowed", "use PUT", "Allow: PUT\r\n");
    return;
  }
  auto seq = read_seq_of(req.body());
  if (!seq) {
    respond_error(400, "bad_request", "expected {\"seq\": N}");
    return;
  }
  on_hub([g, user, s = *seq]() -> std::pair<int, std::string> {
    auto unread = g->the_hub().set_read(user, s);
    if (!unread) return {404, error_json("not_found", "nothing held for '" + user + "'")};
    auto p = g->the_hub().read_inbox(user, 0, 1);
    return {200, json{{"read_seq", p.read_seq}, {"unread", *unread}}.dump()};
  });
}

}  // namespace warren::web
