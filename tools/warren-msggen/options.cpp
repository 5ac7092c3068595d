// Flags and their checks.
#include "warren-msggen/options.hpp"

#include <CLI/CLI.hpp>

namespace warren::msggen {

std::variant<options, usage_exit> parse_options(int argc, char** argv) {
  options o;
  CLI::App app{
      "warren-msggen: messages to random users (user-0..N-1) or to a room, at a set rate, over "
      "the gateway's HTTP API (POST /api/send, /api/rooms/R/publish; or nchan's /pub/<channel>) "
      "or AMQP (exchanges warren.users, warren.rooms). Each message's data carries its send time "
      "in microseconds, {\"t\": ...}, which warren-flood turns into delivery latency.",
      "warren-msggen"};
  app.add_option("--host", o.host, "server address")->capture_default_str();
  app.add_option("-p,--port", o.port, "HTTP port (Warren: the web port)");
  app.add_option("--amqp-port", o.amqp_port, "AMQP port, for --via amqp");
  app.add_option("--via", o.via, "http or amqp")
      ->check(CLI::IsMember({"http", "amqp"}))
      ->capture_default_str();
  app.add_option("--api", o.api, "HTTP requests for warren (/api/send) or nchan (/pub/<id>)")
      ->check(CLI::IsMember({"warren", "nchan"}))
      ->capture_default_str();
  app.add_option("-n,--users", o.users, "user ids to pick from")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--first-user", o.first_user, "number of the first user")->capture_default_str();
  app.add_option("--user-prefix", o.user_prefix, "user ids are <prefix><n>")->capture_default_str();
  app.add_option("--room", o.room, "publish to this room instead of users");
  app.add_option("-r,--rate", o.rate, "messages per second in all (0: as fast as the windows allow)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("-z,--duration", o.duration, "seconds")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("-C,--messages", o.messages, "stop after this many (0: no limit)")
      ->capture_default_str();
  app.add_option("--drain-timeout", o.drain_timeout,
                 "seconds to wait for the answers to the last requests before closing")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("-c,--connections", o.connections, "connections")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--pipeline", o.pipeline, "HTTP requests in flight per connection")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("-u,--user", o.user, "broker user (HTTP basic auth, AMQP login)")
      ->capture_default_str();
  app.add_option("--password", o.password, "its password")->capture_default_str();
  app.add_option("--vhost", o.vhost, "AMQP virtual host")->capture_default_str();
  app.add_option("--pad", o.pad, "bytes of padding added to each message's data")
      ->capture_default_str();
  app.add_option("--seed", o.seed, "random seed for the user picks")->capture_default_str();
  app.add_flag("--json", o.json, "ticks and the summary as JSON lines on stdout");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return usage_exit{app.exit(e)};
  }
  if (o.via == "http" && o.port == 0) {
    std::fprintf(stderr, "warren-msggen: --via http needs --port\n");
    return usage_exit{2};
  }
  if (o.via == "amqp" && o.amqp_port == 0) {
    std::fprintf(stderr, "warren-msggen: --via amqp needs --amqp-port\n");
    return usage_exit{2};
  }
  if (o.via == "amqp" && o.api == "nchan") {
    std::fprintf(stderr, "warren-msggen: nchan has no AMQP\n");
    return usage_exit{2};
  }
  return o;
}

}  // namespace warren::msggen
