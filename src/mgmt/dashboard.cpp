// Serves the embedded dashboard files. They change only with the binary, so each carries an ETag
// (a hash of its bytes) and browsers revalidate (no-cache): a reload costs a 304, and a new build
// is seen at once without versioned file names.
#include "mgmt/dashboard.hpp"

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>

namespace warren::mgmt {

namespace bhttp = boost::beast::http;

namespace {

// Whether an If-None-Match header value ("a", "b" or *) names the ETag.
bool etag_matches(std::string_view header, std::string_view etag) {
  if (header == "*") return true;
  while (!header.empty()) {
    size_t comma = header.find(',');
    std::string_view item = header.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.rfind("W/", 0) == 0) item.remove_prefix(2);
    if (item == etag) return true;
    if (comma == std::string_view::npos) break;
    header.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

std::optional<http::response> serve_dashboard(const http::request_header& req) {
  auto verb = req.method();
  if (verb != bhttp::verb::get && verb != bhttp::verb::head) return std::nullopt;
  std::string_view target = req.target();
  std::string_view path = target.substr(0, target.find('?'));
  if (path == "/" || path == "/dashboard" || path == "/dashboard/") path = "/dashboard/index.html";
  const asset* a = find_dashboard_asset(path);
  if (!a) return std::nullopt;

  bool not_modified = etag_matches(req[bhttp::field::if_none_match], a->etag);
  http::response res{not_modified ? bhttp::status::not_modified : bhttp::status::ok,
                     req.version()};
  res.set(bhttp::field::server, "Warren");
  res.set(bhttp::field::etag, a->etag);
  res.set(bhttp::field::cache_control, "no-cache");
  res.set("X-Content-Type-Options", "nosniff");
  if (not_modified) return res;
  res.set(bhttp::field::content_type, a->content_type);
  if (verb == bhttp::verb::head) {
    res.content_length(a->body.size());  // the length of the GET's body, none sent
  } else {
    res.body().assign(a->body);
    res.prepare_payload();
  }
  return res;
}

}  // namespace warren::mgmt
