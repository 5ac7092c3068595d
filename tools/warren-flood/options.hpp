// warren-flood's command line (CLI11).
#pragma once

#include <cstdint>
#include <string>
#include <variant>

namespace warren::flood {

struct options {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string transport = "ws";  // ws | sse
  // Request path and query; {user}, {i} and {token} are replaced per connection. Empty: the
  // gateway's /ws?token={token} or /sse?token={token}.
  std::string path;
  uint64_t users = 1000;
  uint64_t first_user = 0;  // connection i is user <prefix><first_user + i>
  std::string user_prefix = "user-";
  std::string jwt_secret;
  double token_ttl = 0;  // seconds; 0: the run's duration plus an hour
  double connect_rate = 1000;  // new connections per second
  uint32_t max_pending = 256;  // connections between connect() and the handshake's end, at most
  double handshake_timeout = 10;
  std::string source_base = "127.1.0.1";
  uint32_t per_source = 500;
  double duration = 60;  // the whole run, connecting included
  std::string room;      // WebSocket: join it once open
  bool json = false;     // ticks, snapshots and the summary as JSON lines on stdout
};

struct usage_exit {
  int code;
};

std::variant<options, usage_exit> parse_options(int argc, char** argv);

}  // namespace warren::flood
