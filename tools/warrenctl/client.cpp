// Beast's synchronous HTTP/1.1 client over a Unix or TCP socket.
#include "warrenctl/client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <fmt/format.h>

#include "auth/password.hpp"

namespace warren::ctl {

namespace bhttp = boost::beast::http;
namespace asio = boost::asio;

std::string endpoint::describe() const {
  if (!socket_path.empty()) return socket_path;
  return fmt::format("http://{}:{}{}", host, port, path_prefix);
}

std::optional<endpoint> parse_url(const std::string& url) {
  constexpr std::string_view scheme = "http://";
  if (url.rfind(scheme, 0) != 0) return std::nullopt;
  std::string rest = url.substr(scheme.size());
  endpoint e;
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) e.path_prefix = rest.substr(slash);
  while (!e.path_prefix.empty() && e.path_prefix.back() == '/') e.path_prefix.pop_back();
  if (authority.empty()) return std::nullopt;
  if (authority.front() == '[') {  // [::1]:15672
    size_t close = authority.find(']');
    if (close == std::string::npos) return std::nullopt;
    e.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return std::nullopt;
      e.port = authority.substr(close + 2);
    }
  } else {
    size_t colon = authority.rfind(':');
    e.host = authority.substr(0, colon);
    if (colon != std::string::npos) e.port = authority.substr(colon + 1);
  }
  if (e.port.empty()) e.port = "15672";
  if (e.host.empty() || e.port.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  return e;
}

namespace {

template <typename Stream>
reply round_trip(Stream& s, const bhttp::request<bhttp::string_body>& req) {
  bhttp::write(s, req);
  boost::beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(1024ull * 1024 * 1024);  // definitions of a large broker
  bhttp::read(s, buffer, parser);
  auto res = parser.release();
  return reply{int(res.result_int()), std::move(res.body())};
}

[[noreturn]] void throw_unreachable(const endpoint& to, const boost::system::error_code& ec) {
  bool refused = ec == asio::error::connection_refused || ec == asio::error::not_found ||
                 ec == boost::system::errc::no_such_file_or_directory;
  bool permission = ec == boost::system::errc::permission_denied;
  throw unreachable(fmt::format("{} ({})", to.describe(), ec.message()), refused, permission);
}

}  // namespace

reply send_request(const endpoint& to, const std::string& method, const std::string& target,
                   const std::string& body,
                   const std::vector<std::pair<std::string, std::string>>& headers) {
  bhttp::request<bhttp::string_body> req;
  req.method_string(method);
  req.target(to.path_prefix + target);
  req.version(11);
  req.set(bhttp::field::host, to.socket_path.empty() ? to.host : "localhost");
  req.set(bhttp::field::user_agent, "warrenctl");
  req.set(bhttp::field::connection, "close");
  if (to.socket_path.empty())
    req.set(bhttp::field::authorization,
            "Basic " + auth::base64_encode(to.username + ":" + to.password));
  for (const auto& [k, v] : headers) req.set(k, v);
  if (!body.empty() || method == "PUT" || method == "POST") {
    req.set(bhttp::field::content_type, "application/json");
    req.body() = body;
  }
  req.prepare_payload();

  asio::io_context io;
  boost::system::error_code ec;
  if (!to.socket_path.empty()) {
    asio::local::stream_protocol::socket s(io);
    s.connect(asio::local::stream_protocol::endpoint(to.socket_path), ec);
    if (ec) throw_unreachable(to, ec);
    return round_trip(s, req);
  }
  asio::ip::tcp::resolver resolver(io);
  auto addresses = resolver.resolve(to.host, to.port, ec);
  if (ec) throw unreachable(fmt::format("{} ({})", to.describe(), ec.message()), false, false);
  asio::ip::tcp::socket s(io);
  asio::connect(s, addresses, ec);
  if (ec) throw_unreachable(to, ec);
  return round_trip(s, req);
}

}  // namespace warren::ctl
