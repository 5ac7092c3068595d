// warrenctl's HTTP/1.1 client (Beast, synchronous, one connection per request): to the local
// broker's control socket (a Unix socket, no credentials) or to --url with basic auth.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace warren::ctl {

struct endpoint {
  std::string socket_path;  // set: the Unix socket; else host and port
  std::string host;
  std::string port;
  std::string path_prefix;  // from --url http://host:port/prefix
  std::string username;     // basic auth over TCP only
  std::string password;
  std::string describe() const;  // for messages: the socket's path or the URL
};

// Parses http://host[:port][/prefix]; nullopt if it is not such a URL (https is not supported).
std::optional<endpoint> parse_url(const std::string& url);

struct reply {
  int status = 0;
  std::string body;
};

// The broker could not be reached. `not_running`: nobody listens (connection refused, no
// socket file); otherwise e.g. permission denied on the socket file or a name that does not
// resolve.
struct unreachable : std::runtime_error {
  unreachable(const std::string& what, bool not_running, bool permission)
      : std::runtime_error(what), not_running(not_running), permission(permission) {}
  bool not_running;
  bool permission;
};

// Sends one request and reads the answer. Throws `unreachable` when it cannot connect, and
// std::runtime_error for a broken exchange.
reply send_request(const endpoint& to, const std::string& method, const std::string& target,
                   const std::string& body = {},
                   const std::vector<std::pair<std::string, std::string>>& headers = {});

}  // namespace warren::ctl
