// warren-msggen's command line (CLI11).
#pragma once

#include <cstdint>
#include <string>
#include <variant>

namespace warren::msggen {

struct options {
  std::string host = "127.0.0.1";
  uint16_t port = 0;       // HTTP (Warren: the web port; nchan: nginx's port)
  uint16_t amqp_port = 0;  // --via amqp
  std::string via = "http";  // http | amqp
  std::string api = "warren";  // warren | nchan: what the HTTP requests look like
  uint64_t users = 1000;
  uint64_t first_user = 0;
  std::string user_prefix = "user-";
  std::string room;  // non-empty: publish to this room instead of users
  double rate = 1000;  // messages per second in all; 0: as fast as the windows allow
  double duration = 10;
  uint64_t messages = 0;  // stop after this many; 0: no limit
  double drain_timeout = 5;  // seconds to wait for the last answers
  int connections = 2;
  int pipeline = 16;  // HTTP requests in flight per connection
  std::string user = "guest";
  std::string password = "guest";
  std::string vhost = "/";
  size_t pad = 0;  // bytes of padding in each message's data
  uint64_t seed = 1;
  bool json = false;
};

struct usage_exit {
  int code;
};

std::variant<options, usage_exit> parse_options(int argc, char** argv);

}  // namespace warren::msggen
