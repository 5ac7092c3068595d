// Warren's configuration: embedded defaults, then a TOML file (--config), then command-line
// flags; a flag wins over the file. Every key of the file is also a flag (key amqp_port is
// --amqp-port).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace warren::app {

inline constexpr std::string_view ctl_socket_in_data_dir = "<data_dir>/warren.sock";

struct config {
  std::string bind;  // empty: every IPv4 and IPv6 address (one dual-stack socket per port)
  uint16_t amqp_port = 5672;
  uint16_t http_port = 15672;
  uint16_t web_port = 8080;
  uint16_t prometheus_port = 15692;  // RabbitMQ's; no authentication, as rabbitmq_prometheus
  // TLS listeners (docs/security.md), on only when tls_cert is set: AMQPS (RabbitMQ's 5671),
  // the management API over HTTPS (RabbitMQ's 15671) and the web gateway (wss://, https://).
  uint16_t amqps_port = 5671;
  uint16_t https_port = 15671;
  uint16_t web_tls_port = 8443;
  std::string tls_cert;             // PEM: certificate, then intermediates
  std::string tls_key;              // PEM: its private key
  std::string tls_ca;               // PEM: CAs client certificates must chain to
  std::string tls_verify = "none";  // none | peer (ask for a client certificate, verify it)
  bool tls_fail_if_no_peer_cert = false;
  std::string data_dir = "./var";
  // The management API on a Unix socket, for warrenctl: no password, file mode 0600. The
  // default (the placeholder below) is resolved to <data_dir>/warren.sock; empty: none.
  std::string ctl_socket = std::string(ctl_socket_in_data_dir);
  unsigned workers = 0;  // 0: one per core
  // How long a worker keeps polling after its last piece of work before it sleeps (net::worker::
  // set_busy_wait); 0: it sleeps at once.
  unsigned busy_wait_us = 0;
  // Where a vhost's queues live: "home" (its home worker), or "hash" (spread over the workers by
  // a hash of the vhost's and the queue's names). docs/architecture.md.
  std::string queue_placement = "hash";
  std::string log_level = "info";
  std::string ports_file;
  uint16_t heartbeat = 60;
  uint32_t frame_max = 131072;
  uint16_t channel_max = 2047;
  double handshake_timeout = 10.0;
  uint64_t max_message_size = 128ull * 1024 * 1024;
  // AMQP connections (AMQP and AMQPS together) the node accepts at connection.open, RabbitMQ's
  // max_connections (connection_max); -1: no limit ("infinity", RabbitMQ's default).
  int64_t max_connections = -1;
  std::string loopback_networks = "127.0.0.0/8,::1/128";
  std::string default_user = "guest";
  std::string default_pass = "guest";
  std::string default_vhost = "/";
  std::string vhosts;  // more vhosts to create, comma-separated (the default user may use them)
  // Resource alarms (RabbitMQ's vm_memory_high_watermark.relative / .absolute and
  // disk_free_limit.absolute). The absolute watermark, when set, wins over the fraction.
  double vm_memory_high_watermark = 0.4;           // of min(RAM, cgroup limit)
  uint64_t vm_memory_high_watermark_absolute = 0;  // bytes; 0: not set
  // Queues page new arrivals to disk above this fraction of the watermark (RabbitMQ's
  // vm_memory_high_watermark_paging_ratio); above 1: no paging before the alarm.
  double vm_memory_high_watermark_paging_ratio = 0.5;
  uint64_t disk_free_limit = 50'000'000;  // bytes (RabbitMQ's 50MB)
  // The web gateway (docs/web-api.md).
  std::string web_vhost;  // empty: the default vhost
  std::string jwt_secret;
  std::string jwt_public_key;   // PEM file: RS256 tokens too
  uint32_t inbox_linger = 300;  // seconds
  uint32_t inbox_size = 1000;
  uint32_t inbox_ttl = 7 * 24 * 3600;  // seconds
  uint32_t room_history = 20;
  bool room_presence_events = false;
  std::string anonymous_rooms;  // comma-separated
  uint32_t ws_max_message = 65536;
  uint32_t web_max_connections_per_ip = 1000;
  double web_publish_rate = 20;
  uint32_t web_max_header = 8192;
  uint64_t web_max_body = 1024 * 1024;
  uint32_t web_heartbeat = 15;  // seconds
  bool web_dev_tokens = false;
  // The cluster (docs/cluster.md). Without etcd_endpoints the node is alone, as before.
  std::string node_name;  // empty: warren@<hostname>
  // RabbitMQ's cluster_name: connection.start's server properties, /api/overview, the name
  // federation uses to break loops (x-received-from, x-downstream-name), and with
  // etcd_endpoints the cluster to join. Empty: the node's name alone; "warren" in a cluster.
  std::string cluster_name;
  std::string etcd_endpoints;    // http://host:port[,...]
  uint32_t etcd_lease_ttl = 10;  // seconds; etcd 3.4 grants at least about 2
  // The host name or address the other nodes reach this node's AMQP listener on, published with
  // its lease. Empty: the address the listener is bound to, or 127.0.0.1 when it is bound to
  // every address (nodes on one machine).
  std::string advertise_address;
  std::string config_file;
};

// Parsed configuration, or the exit code and text to print (help, version, or an error).
struct exit_request {
  int code;
  std::string text;
};
std::variant<config, exit_request> parse_config(int argc, char** argv);

}  // namespace warren::app
