// Flags, their checks, and defaults that depend on other flags.
#include "warren-flood/options.hpp"

#include <CLI/CLI.hpp>

namespace warren::flood {

std::variant<options, usage_exit> parse_options(int argc, char** argv) {
  options o;
  CLI::App app{
      "warren-flood: many browser users on a web push gateway (WebSocket or SSE), each with its "
      "own connection, token and source address; counts connections and events, and times the "
      "events that carry a send time (warren-msggen's \"t\")",
      "warren-flood"};
  app.add_option("--host", o.host, "server address")->capture_default_str();
  app.add_option("-p,--port", o.port, "server port (Warren: the web port)")->required();
  app.add_option("-t,--transport", o.transport, "ws or sse")
      ->check(CLI::IsMember({"ws", "sse"}))
      ->capture_default_str();
  app.add_option("--path", o.path,
                 "request path, {user} {i} {token} replaced (default: /ws?token={token} or "
                 "/sse?token={token}; nchan: /sub/{user})");
  app.add_option("-n,--users", o.users, "connections, one user each")->capture_default_str();
  app.add_option("--first-user", o.first_user, "number of the first user")->capture_default_str();
  app.add_option("--user-prefix", o.user_prefix, "user ids are <prefix><n>")->capture_default_str();
  app.add_option("--jwt-secret", o.jwt_secret, "HS256 secret for the users' tokens");
  app.add_option("--token-ttl", o.token_ttl, "token lifetime in seconds (0: duration + 1 h)");
  app.add_option("-r,--connect-rate", o.connect_rate, "new connections per second")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--max-pending", o.max_pending, "handshakes in progress at once, at most")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--handshake-timeout", o.handshake_timeout, "seconds")->capture_default_str();
  app.add_option("--source-base", o.source_base, "first source address (in 127.0.0.0/8)")
      ->capture_default_str();
  app.add_option("--per-source", o.per_source, "connections per source address")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("-z,--duration", o.duration, "seconds, then every connection is closed")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--room", o.room, "join this room once connected (WebSocket)");
  app.add_flag("--json", o.json, "ticks, snapshots and the summary as JSON lines on stdout");
  app.footer(
      "Prints a line a second; SIGUSR1 prints a snapshot of the counts and latencies since the "
      "previous snapshot; SIGINT/SIGTERM or the end of --duration closes everything and prints "
      "the summary.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return usage_exit{app.exit(e)};
  }
  if (o.path.empty()) o.path = o.transport == "ws" ? "/ws?token={token}" : "/sse?token={token}";
  if (o.path.find("{token}") != std::string::npos && o.jwt_secret.empty()) {
    std::fprintf(stderr, "warren-flood: the path asks for a {token}: give --jwt-secret\n");
    return usage_exit{2};
  }
  if (!o.room.empty() && o.transport != "ws") {
    std::fprintf(stderr, "warren-flood: --room needs the WebSocket transport\n");
    return usage_exit{2};
  }
  if (o.token_ttl <= 0) o.token_ttl = o.duration + 3600;
  return o;
}

}  // namespace warren::flood
