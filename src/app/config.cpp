// Command-line (CLI11) and TOML (toml++) configuration.
#include "app/config.hpp"

#include "alarm/limits.hpp"

#include <toml++/toml.h>
#include <CLI/CLI.hpp>

#include <fmt/format.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

namespace warren::app {

namespace {

struct binding {
  std::string key;
  CLI::Option* option;
  std::function<void(config&, const config&)> copy;           // flag value -> config
  std::function<bool(config&, const toml::node&)> from_toml;  // false: wrong type/range
  std::string expected;  // what a valid value looks like, when the type does not say it
};

template <typename T>
void bind_option(CLI::App& app, std::vector<binding>& out, config& cli, T config::*field,
                 const std::string& key, const std::string& help) {
  std::string flag = "--" + key;
  std::replace(flag.begin(), flag.end(), '_', '-');
  CLI::Option* o;
  if constexpr (std::is_same_v<T, bool>)
    o = app.add_flag(flag, cli.*field, help);
  else
    o = app.add_option(flag, cli.*field, help)->capture_default_str();
  out.push_back(
      binding{key, o, [field](config& dst, const config& src) { dst.*field = src.*field; },
              [field](config& dst, const toml::node& n) {
                if constexpr (std::is_same_v<T, bool>) {
                  auto v = n.value_exact<bool>();
                  if (!v) return false;
                  dst.*field = *v;
                } else if constexpr (std::is_same_v<T, std::string>) {
                  auto v = n.value_exact<std::string>();
                  if (!v) return false;
                  dst.*field = *v;
                } else if constexpr (std::is_floating_point_v<T>) {
                  auto v = n.value<double>();
                  if (!v) return false;
                  dst.*field = T(*v);
                } else {
                  auto v = n.value_exact<int64_t>();
                  if (!v || *v < 0 || uint64_t(*v) > uint64_t(std::numeric_limits<T>::max()))
                    return false;
                  dst.*field = T(*v);
                }
                return true;
              }});
}

// A flag and key checked (and maybe rewritten) by `parse`, which returns the canonical text
// for CLI11 to convert, or nullopt when the value is bad. The TOML value may be a string or a
// number. Used for sizes ("50MB") and watermark fractions.
template <typename T>
void bind_checked_option(CLI::App& app, std::vector<binding>& out, config& cli, T config::*field,
                         const std::string& key, const std::string& help,
                         std::function<std::optional<std::string>(const std::string&)> parse,
                         const std::string& type_name, const std::string& expected) {
  std::string flag = "--" + key;
  std::replace(flag.begin(), flag.end(), '_', '-');
  CLI::Option* o = app.add_option(flag, cli.*field, help)
                       ->type_name(type_name)
                       ->transform(CLI::Validator(
                           [parse, expected](std::string& text) {
                             auto canonical = parse(text);
                             if (!canonical)
                               return fmt::format("'{}': expected {}", text, expected);
                             text = *canonical;
                             return std::string();
                           },
                           "", key));
  out.push_back(binding{key, o,
                        [field](config& dst, const config& src) { dst.*field = src.*field; },
                        [field, parse](config& dst, const toml::node& n) {
                          std::optional<std::string> text;
                          if (auto str = n.value_exact<std::string>())
                            text = *str;
                          else if (auto i = n.value_exact<int64_t>())
                            text = std::to_string(*i);
                          else if (auto d = n.value_exact<double>())
                            text = fmt::format("{}", *d);
                          if (!text) return false;
                          auto canonical = parse(*text);
                          if (!canonical) return false;
                          std::istringstream in(*canonical);
                          in >> dst.*field;
                          return true;
                        },
                        expected});
}

std::optional<std::string> canonical_size(const std::string& text) {
  auto v = alarm::parse_size(text);
  if (!v) return std::nullopt;
  return std::to_string(*v);
}

// "infinity" (no limit, as -1) or a count, 0 included (then no connection is accepted).
std::optional<std::string> canonical_connection_max(const std::string& text) {
  if (text == "infinity") return "-1";
  if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  return std::to_string(std::stoll(text));
}

std::optional<std::string> canonical_fraction(const std::string& text) {
  auto v = alarm::parse_fraction(text);
  if (!v) return std::nullopt;
  return fmt::format("{}", *v);
}

constexpr const char* size_expected =
    "bytes, or a size with a unit such as 50MB, 512MiB, 2GB (kB/MB/GB/TB: powers of 1000; "
    "k/M/G/T or kiB/MiB/GiB/TiB: powers of 1024)";

}  // namespace

std::variant<config, exit_request> parse_config(int argc, char** argv) {
  config cli;
  CLI::App app{"Warren: an AMQP 0-9-1 message broker with a web push gateway", "warren"};
  app.set_version_flag("--version", std::string("warren ") + WARREN_VERSION);
  std::vector<binding> b;
  app.add_option("--config", cli.config_file, "TOML configuration file (flags override it)");
  bind_option(app, b, cli, &config::bind, "bind",
              "Address the listeners bind to; by default every IPv4 and IPv6 address (0.0.0.0 "
              "is every IPv4 address only, :: every IPv6 address only)");
  bind_option(app, b, cli, &config::amqp_port, "amqp_port", "AMQP 0-9-1 port (0: any free port)");
  bind_option(app, b, cli, &config::http_port, "http_port", "Management HTTP port (/healthz)");
  bind_option(app, b, cli, &config::web_port, "web_port",
              "Web gateway port: WebSocket, SSE, long-poll, streaming and its HTTP API");
  bind_option(app, b, cli, &config::prometheus_port, "prometheus_port",
              "Prometheus metrics port: /metrics, /metrics/per-object, /metrics/detailed, "
              "without authentication (0: any free port)");
  bind_option(app, b, cli, &config::amqps_port, "amqps_port",
              "AMQP 0-9-1 over TLS port, with --tls-cert (0: any free port)");
  bind_option(app, b, cli, &config::https_port, "https_port",
              "Management API over TLS (HTTPS) port, with --tls-cert (0: any free port)");
  bind_option(app, b, cli, &config::web_tls_port, "web_tls_port",
              "Web gateway over TLS port (wss://, https:// for SSE and long-poll), with "
              "--tls-cert (0: any free port)");
  bind_option(app, b, cli, &config::tls_cert, "tls_cert",
              "PEM file: the server's certificate, then any intermediates; turns the TLS "
              "listeners on (reloaded on SIGHUP)");
  bind_option(app, b, cli, &config::tls_key, "tls_key",
              "PEM file: the certificate's private key, unencrypted");
  bind_option(app, b, cli, &config::tls_ca, "tls_ca",
              "PEM file: the CA certificates client certificates are verified against");
  bind_checked_option(
      app, b, cli, &config::tls_verify, "tls_verify",
      "none: no client certificate is asked for; peer: one is asked for and, when presented, "
      "must chain to --tls-ca (needed for SASL EXTERNAL)",
      [](const std::string& text) -> std::optional<std::string> {
        if (text == "none" || text == "peer") return text;
        return std::nullopt;
      },
      "none|peer", "none or peer");
  bind_option(app, b, cli, &config::tls_fail_if_no_peer_cert, "tls_fail_if_no_peer_cert",
              "With --tls-verify peer: refuse TLS clients that present no certificate");
  bind_option(app, b, cli, &config::data_dir, "data_dir",
              "Directory for data (created if missing)");
  bind_option(app, b, cli, &config::ctl_socket, "ctl_socket",
              "Unix socket serving the management API to warrenctl without a password (mode "
              "0600: the file's permissions are the access control; empty: none)");
  bind_option(app, b, cli, &config::workers, "workers", "Worker threads (0: one per core)");
  bind_option(app, b, cli, &config::busy_wait_us, "busy_wait_us",
              "Microseconds a worker keeps polling for work before it sleeps (0: it sleeps at "
              "once; at most 100000). Spends CPU to spare wake-ups, which virtual machines "
              "make dear, as Erlang's scheduler busy wait does for RabbitMQ");
  bind_checked_option(
      app, b, cli, &config::queue_placement, "queue_placement",
      "Where a vhost's queues run: home (all on the vhost's home worker) or hash (spread over the "
      "workers by a hash of their names; experimental, docs/architecture.md)",
      [](const std::string& text) -> std::optional<std::string> {
        if (text == "home" || text == "hash") return text;
        return std::nullopt;
      },
      "home|hash", "home or hash");
  bind_option(app, b, cli, &config::log_level, "log_level", "trace, debug, info, warn, error, off");
  bind_option(app, b, cli, &config::ports_file, "ports_file",
              "Write the bound ports as JSON to this file once listening (for tests and tools)");
  bind_option(app, b, cli, &config::heartbeat, "heartbeat", "Heartbeat seconds offered to clients");
  bind_option(app, b, cli, &config::frame_max, "frame_max",
              "Largest frame offered to clients, bytes");
  bind_option(app, b, cli, &config::channel_max, "channel_max", "Most channels per connection");
  bind_checked_option(app, b, cli, &config::max_connections, "max_connections",
                      "AMQP and AMQPS connections the node accepts, counted at connection.open "
                      "(RabbitMQ's max_connections); infinity: no limit (default)",
                      canonical_connection_max, "N|infinity",
                      "a number of connections (0 or more) or infinity");
  bind_option(app, b, cli, &config::handshake_timeout, "handshake_timeout",
              "Seconds a client has to complete the AMQP handshake");
  bind_option(app, b, cli, &config::max_message_size, "max_message_size",
              "Largest message body, bytes");
  bind_option(app, b, cli, &config::loopback_networks, "loopback_networks",
              "Comma-separated CIDRs from which loopback-only users (guest) may log in");
  bind_option(app, b, cli, &config::default_user, "default_user", "User created at first start");
  bind_option(app, b, cli, &config::default_pass, "default_pass", "Password of the default user");
  bind_option(app, b, cli, &config::default_vhost, "default_vhost", "Vhost created at first start");
  bind_option(app, b, cli, &config::vhosts, "vhosts",
              "More vhosts to create, comma-separated; each gets its own home worker");
  bind_checked_option(app, b, cli, &config::vm_memory_high_watermark, "vm_memory_high_watermark",
                      "Memory alarm: resident memory above this fraction of the total (RAM, or "
                      "the cgroup's limit if lower) blocks publishers (default 0.4)",
                      canonical_fraction, "FRACTION", "a fraction from 0 to 1, such as 0.4");
  bind_checked_option(app, b, cli, &config::vm_memory_high_watermark_absolute,
                      "vm_memory_high_watermark_absolute",
                      "Memory alarm at an absolute size instead (e.g. 512MiB); wins over the "
                      "fraction when set",
                      canonical_size, "SIZE", size_expected);
  bind_option(app, b, cli, &config::vm_memory_high_watermark_paging_ratio,
              "vm_memory_high_watermark_paging_ratio",
              "Queues page new arrivals to disk above this fraction of the memory watermark; "
              "above 1: no paging before the alarm");
  b.back().option->check(CLI::Range(0.01, 100.0));
  bind_checked_option(app, b, cli, &config::disk_free_limit, "disk_free_limit",
                      "Disk alarm: free space in the data directory below this size (default "
                      "50MB) blocks publishers",
                      canonical_size, "SIZE", size_expected);
  bind_option(app, b, cli, &config::web_vhost, "web_vhost",
              "Vhost of the web gateway's exchanges (default: the default vhost)");
  bind_option(app, b, cli, &config::jwt_secret, "jwt_secret",
              "Secret of the HS256 tokens browsers present (none: no token is valid)");
  bind_option(app, b, cli, &config::jwt_public_key, "jwt_public_key",
              "PEM file of an RSA public key: RS256 tokens are accepted too");
  bind_option(app, b, cli, &config::inbox_linger, "inbox_linger",
              "Seconds a user's rooms and cached events outlive its last connection");
  bind_option(app, b, cli, &config::inbox_size, "inbox_size",
              "Events an inbox holds, connected or not (the oldest go first)");
  bind_option(app, b, cli, &config::inbox_ttl, "inbox_ttl",
              "Seconds an inbox holds an event (a send may ask for less)");
  bind_option(app, b, cli, &config::room_history, "room_history",
              "Recent messages a room gives a member who joins");
  bind_option(app, b, cli, &config::room_presence_events, "room_presence_events",
              "Send presence events (join, leave) to room members");
  bind_option(app, b, cli, &config::anonymous_rooms, "anonymous_rooms",
              "Rooms connections without a token may join (read-only), comma-separated");
  bind_option(app, b, cli, &config::ws_max_message, "ws_max_message",
              "Largest WebSocket message from a browser, bytes (else close 1009)");
  bind_option(app, b, cli, &config::web_max_connections_per_ip, "web_max_connections_per_ip",
              "Gateway connections per client address (0: no limit)");
  bind_option(app, b, cli, &config::web_publish_rate, "web_publish_rate",
              "Browser operations (join, leave, publish) per second per connection, burst 2x");
  bind_option(app, b, cli, &config::web_max_header, "web_max_header",
              "Largest HTTP request head on the gateway, bytes (else 431)");
  bind_option(app, b, cli, &config::web_max_body, "web_max_body",
              "Largest HTTP request body on the gateway, bytes (else 413)");
  bind_option(app, b, cli, &config::web_heartbeat, "web_heartbeat",
              "Seconds between SSE and stream heartbeats");
  bind_option(app, b, cli, &config::web_dev_tokens, "web_dev_tokens",
              "Serve POST /api/dev-token (tokens for any user, signed with --jwt-secret): "
              "for the demo page on a development machine only");
  bind_option(app, b, cli, &config::node_name, "node_name",
              "This node's name in /api/nodes and in the cluster (default warren@<hostname>); "
              "letters, digits and @ . _ - only");
  bind_option(app, b, cli, &config::cluster_name, "cluster_name",
              "The cluster's name (connection.start's cluster_name, /api/overview, federation's "
              "loop breaking: each linked site needs its own); with --etcd-endpoints, the "
              "cluster to join (default warren); alone, the node's name");
  bind_option(app, b, cli, &config::etcd_endpoints, "etcd_endpoints",
              "Join a cluster coordinated by etcd at these endpoints, comma-separated "
              "(http://host:port,...); none: a single node");
  bind_option(app, b, cli, &config::advertise_address, "advertise_address",
              "With --etcd-endpoints: the host name or IP address the other nodes reach this "
              "node on (default: the address it is bound to; bound to every address, 127.0.0.1, "
              "which serves nodes on this machine only)");
  bind_option(app, b, cli, &config::etcd_lease_ttl, "etcd_lease_ttl",
              "Seconds of the node's lease in etcd: a node that cannot renew it within this time "
              "stops serving clients (fencing), and others see it as not running");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::ostringstream out, err;
    int code = app.exit(e, out, err);
    return exit_request{code, out.str() + err.str()};
  }

  config cfg;
  if (!cli.config_file.empty()) {
    cfg.config_file = cli.config_file;
    toml::table t;
    try {
      t = toml::parse_file(cli.config_file);
    } catch (const toml::parse_error& e) {
      return exit_request{2, fmt::format("{}: {}\n", cli.config_file, e.description())};
    }
    for (auto&& [k, v] : t) {
      std::string_view key =
          k.str();  // structured bindings cannot be captured before C++20 in clang 14
      auto it = std::find_if(b.begin(), b.end(), [key](const binding& x) { return x.key == key; });
      if (it == b.end())
        return exit_request{2, fmt::format("{}: unknown key '{}'\n", cli.config_file, k.str())};
      if (!it->from_toml(cfg, v))
        return exit_request{
            2,
            fmt::format("{}: key '{}' has the wrong type or is out of range{}\n", cli.config_file,
                        k.str(), it->expected.empty() ? "" : " (expected " + it->expected + ")")};
    }
  }
  for (const auto& x : b)
    if (x.option->count() > 0) x.copy(cfg, cli);
  if (cfg.ctl_socket == ctl_socket_in_data_dir)
    cfg.ctl_socket = (std::filesystem::path(cfg.data_dir) / "warren.sock").string();
  auto name_ok = [](const std::string& n) {
    return n.size() <= 255 && n.find_first_not_of(
                                  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789@._-") == std::string::npos;
  };
  if (!name_ok(cfg.node_name))
    return exit_request{2, fmt::format("--node-name '{}': use letters, digits and @ . _ - only "
                                       "(at most 255)\n",
                                       cfg.node_name)};
  if (!name_ok(cfg.cluster_name))
    return exit_request{2, fmt::format("--cluster-name '{}': use letters, digits and @ . _ - "
                                       "only (at most 255)\n",
                                       cfg.cluster_name)};
  if (!cfg.etcd_endpoints.empty() && cfg.cluster_name.empty()) cfg.cluster_name = "warren";
  if (!cfg.advertise_address.empty()) {
    if (cfg.etcd_endpoints.empty())
      return exit_request{2, "--advertise-address: only in a cluster (with --etcd-endpoints)\n"};
    // A host name (letters, digits, dots, hyphens) or an IPv4 or IPv6 address.
    const auto& a = cfg.advertise_address;
    if (a.size() > 253 ||
        a.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:") !=
            std::string::npos)
      return exit_request{2, fmt::format("--advertise-address '{}': a host name or an IP address "
                                         "(letters, digits, . - and : only, at most 253)\n",
                                         a)};
  }
  if (cfg.etcd_lease_ttl < 1 || cfg.etcd_lease_ttl > 3600)
    return exit_request{2, "--etcd-lease-ttl: from 1 to 3600 seconds\n"};
  if (cfg.busy_wait_us > 100000)
    return exit_request{2, "--busy-wait-us: from 0 to 100000 microseconds\n"};
  if (cfg.workers == 0) cfg.workers = std::max(1u, std::thread::hardware_concurrency());
  return cfg;
}

}  // namespace warren::app
