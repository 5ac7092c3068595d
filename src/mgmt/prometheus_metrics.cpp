// Rendering a scrape: RabbitMQ's metric families (names, types and help texts of
// rabbitmq_prometheus) filled from Warren's statistics, and Warren's own warren_gateway_*.
#include "mgmt/prometheus_metrics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>

#include "http/url.hpp"
#include "mgmt/prometheus_text.hpp"

namespace warren::mgmt {

namespace {

using prom::metric_type;
using G = broker::global_counters;

// RabbitMQ's queue filter is at most this long.
constexpr size_t max_queue_filter = 2000;

// The families of RabbitMQ's raw metrics that Warren fills, then the cluster-wide ones
// (rabbitmq_cluster_ prefix), as /metrics/detailed names them.
const std::vector<std::string_view> known_families{"connection_churn_metrics",
                                                   "node_coarse_metrics",
                                                   "node_metrics",
                                                   "auth_attempt_metrics",
                                                   "queue_coarse_metrics",
                                                   "queue_consumer_count",
                                                   "queue_metrics",
                                                   "queue_delivery_metrics",
                                                   "channel_metrics",
                                                   "channel_exchange_metrics",
                                                   "channel_queue_metrics",
                                                   "connection_coarse_metrics",
                                                   "connection_metrics",
                                                   "exchange_metrics",
                                                   "vhost_status",
                                                   "exchange_names",
                                                   "exchange_bindings"};

// What a family renderer sees.
struct ctx {
  prom::text_writer& w;
  const metrics_snapshot& s;
  const metrics_request& r;
  std::string prefix;  // rabbitmq_ or rabbitmq_detailed_
  bool per_object;
  // channel id -> its vhost bookkeeping
  std::unordered_map<uint64_t, const broker::channel_usage*> usage;

  void begin(std::string_view name, metric_type t, std::string_view help) {
    w.begin(prefix + std::string(name), t, help);
  }
  bool keeps_queue(std::string_view vhost, const std::string& queue) const {
    return r.keeps_vhost(vhost) && (!r.queue || r.queue->search(queue));
  }
};

// A family with one unlabelled sample.
void single(ctx& c, std::string_view name, metric_type t, std::string_view help, uint64_t v) {
  c.begin(name, t, help);
  c.w.sample({}, v);
}

// A family of queues: one sample per queue (per object), or the sum of the vhosts' totals.
// `f` reads a queue_view or a vhost_totals alike (the same field names).
template <typename F>
void queue_family(ctx& c, std::string_view name, metric_type t, std::string_view help, F f) {
  c.begin(name, t, help);
  if (!c.per_object) {
    uint64_t sum = 0;
    for (const auto& v : c.s.vhosts)
      if (c.r.keeps_vhost(v.name)) sum += uint64_t(f(v.totals));
    c.w.sample({}, sum);
    return;
  }
  for (const auto& v : c.s.vhosts)
    for (const auto& q : v.queues)
      if (c.keeps_queue(v.name, q.name))
        c.w.sample({{"vhost", v.name}, {"queue", q.name}}, uint64_t(f(q)));
}

// A family of channels (RabbitMQ labels them channel="<its pid>"; Warren by the channel's name,
// "<connection name> (N)"). `f(connection, channel, usage or null)`.
template <typename F>
void channel_family(ctx& c, std::string_view name, metric_type t, std::string_view help, F f) {
  c.begin(name, t, help);
  uint64_t sum = 0;
  for (const auto& k : c.s.connections)
    for (const auto& ch : k.channels) {
      auto it = c.usage.find(ch.id);
      uint64_t v = f(k, ch, it == c.usage.end() ? nullptr : it->second);
      if (c.per_object)
        c.w.sample({{"channel", fmt::format("{} ({})", k.name, ch.number)}}, v);
      else
        sum += v;
    }
  if (!c.per_object) c.w.sample({}, sum);
}

// A family of connections. RabbitMQ names their label `channel` too (it labels any process id
// so); kept, so that queries written for RabbitMQ match.
template <typename F>
void connection_family(ctx& c, std::string_view name, metric_type t, std::string_view help, F f) {
  c.begin(name, t, help);
  uint64_t sum = 0;
  for (const auto& k : c.s.connections) {
    uint64_t v = f(k);
    if (c.per_object)
      c.w.sample({{"channel", k.name}}, v);
    else
      sum += v;
  }
  if (!c.per_object) c.w.sample({}, sum);
}

void churn(ctx& c) {
  const auto& g = c.s.global;
  single(c, "connections_opened_total", metric_type::counter, "Total number of connections opened",
         g[G::connections_opened]);
  single(c, "connections_closed_total", metric_type::counter,
         "Total number of connections closed or terminated", g[G::connections_closed]);
  single(c, "channels_opened_total", metric_type::counter, "Total number of channels opened",
         g[G::channels_opened]);
  single(c, "channels_closed_total", metric_type::counter, "Total number of channels closed",
         g[G::channels_closed]);
  single(c, "queues_declared_total", metric_type::counter, "Total number of queues declared",
         g[G::queues_declared]);
  single(c, "queues_created_total", metric_type::counter, "Total number of queues created",
         g[G::queues_created]);
  single(c, "queues_deleted_total", metric_type::counter, "Total number of queues deleted",
         g[G::queues_deleted]);
}

void node_coarse(ctx& c) {
  const auto& n = c.s.node;
  single(c, "process_open_fds", metric_type::gauge, "Open file descriptors", n.fd_used);
  single(c, "process_open_tcp_sockets", metric_type::gauge, "Open TCP sockets", c.s.open_sockets);
  single(c, "process_resident_memory_bytes", metric_type::gauge, "Memory used in bytes",
         n.mem_used);
  single(c, "disk_space_available_bytes", metric_type::gauge, "Disk space available in bytes",
         n.disk_free);
}

void node(ctx& c) {
  const auto& n = c.s.node;
  single(c, "process_max_fds", metric_type::gauge, "Open file descriptors limit", n.fd_total);
  // Sockets are limited by the file descriptor limit alone (/api/nodes' sockets_total too). The
  // dashboards of RabbitMQ 3.11 to 4.x chart it against the open sockets.
  single(c, "process_max_tcp_sockets", metric_type::gauge, "Open TCP sockets limit", n.fd_total);
  single(c, "resident_memory_limit_bytes", metric_type::gauge, "Memory high watermark in bytes",
         n.mem_limit);
  single(c, "disk_space_available_limit_bytes", metric_type::gauge,
         "Free disk space low watermark in bytes", n.disk_free_limit);
  // RabbitMQ's name for the node's uptime; the RabbitMQ-Overview dashboard's node table reads it.
  c.begin("erlang_uptime_seconds", metric_type::gauge, "Node uptime");
  c.w.sample({}, c.s.uptime_seconds);
}

void auth_attempts(ctx& c) {
  const auto& g = c.s.global;
  uint64_t all = g[G::auth_attempts], failed = std::min(g[G::auth_failed], all);
  c.begin("auth_attempts_total", metric_type::counter, "Total number of authentication attempts");
  c.w.sample({{"protocol", "amqp091"}}, all);
  c.begin("auth_attempts_succeeded_total", metric_type::counter,
          "Total number of successful authentication attempts");
  c.w.sample({{"protocol", "amqp091"}}, all - failed);
  c.begin("auth_attempts_failed_total", metric_type::counter,
          "Total number of failed authentication attempts");
  c.w.sample({{"protocol", "amqp091"}}, failed);
}

void queue_coarse(ctx& c) {
  queue_family(c, "queue_messages_ready", metric_type::gauge,
               "Messages ready to be delivered to consumers",
               [](const auto& q) { return q.ready; });
  queue_family(c, "queue_messages_unacked", metric_type::gauge,
               "Messages delivered to consumers but not yet acknowledged",
               [](const auto& q) { return q.unacked; });
  queue_family(c, "queue_messages", metric_type::gauge,
               "Sum of ready and unacknowledged messages - total queue depth",
               [](const auto& q) { return q.ready + q.unacked; });
}

void queue_consumers(ctx& c) {
  queue_family(c, "queue_consumers", metric_type::gauge, "Consumers on a queue",
               [](const auto& q) { return q.consumers; });
}

void queue_metrics(ctx& c) {
  queue_consumers(c);
  queue_family(c, "queue_messages_bytes", metric_type::gauge,
               "Size in bytes of ready and unacknowledged messages",
               [](const auto& q) { return q.ready_bytes + q.unacked_bytes; });
  queue_family(c, "queue_messages_ready_bytes", metric_type::gauge,
               "Size in bytes of ready messages", [](const auto& q) { return q.ready_bytes; });
  queue_family(c, "queue_messages_unacked_bytes", metric_type::gauge,
               "Size in bytes of all unacknowledged messages",
               [](const auto& q) { return q.unacked_bytes; });
}

void queue_delivery(ctx& c) {
  queue_family(c, "queue_get_ack_total", metric_type::counter,
               "Total number of messages fetched from a queue with basic.get in manual "
               "acknowledgement mode",
               [](const auto& q) { return q.counters.get; });
  queue_family(c, "queue_get_total", metric_type::counter,
               "Total number of messages fetched from a queue with basic.get in automatic "
               "acknowledgement mode",
               [](const auto& q) { return q.counters.get_no_ack; });
  queue_family(c, "queue_messages_delivered_ack_total", metric_type::counter,
               "Total number of messages delivered from a queue to consumers in manual "
               "acknowledgement mode",
               [](const auto& q) { return q.counters.deliver; });
  queue_family(c, "queue_messages_delivered_total", metric_type::counter,
               "Total number of messages delivered from a queue to consumers in automatic "
               "acknowledgement mode",
               [](const auto& q) { return q.counters.deliver_no_ack; });
  queue_family(c, "queue_messages_redelivered_total", metric_type::counter,
               "Total number of messages redelivered from a queue to consumers",
               [](const auto& q) { return q.counters.redeliver; });
  queue_family(c, "queue_messages_acked_total", metric_type::counter,
               "Total number of messages acknowledged by consumers on a queue",
               [](const auto& q) { return q.counters.ack; });
  queue_family(c, "queue_get_empty_total", metric_type::counter,
               "Total number of times basic.get operations fetched no message on a queue",
               [](const auto& q) { return q.counters.get_empty; });
}

using conn = broker::connection_view;
using chan = broker::channel_view;
using usage = broker::channel_usage;

void channels(ctx& c) {
  channel_family(c, "channel_consumers", metric_type::gauge, "Consumers on a channel",
                 [](const conn&, const chan&, const usage* u) { return u ? u->consumers : 0u; });
  channel_family(c, "channel_messages_unacked", metric_type::gauge,
                 "Delivered but not yet acknowledged messages",
                 [](const conn&, const chan&, const usage* u) { return u ? u->unacked : 0u; });
  channel_family(c, "channel_messages_unconfirmed", metric_type::gauge,
                 "Published but not yet confirmed messages",
                 [](const conn&, const chan& ch, const usage*) { return ch.unconfirmed; });
  channel_family(c, "channel_messages_uncommitted", metric_type::gauge,
                 "Messages received in a transaction but not yet committed",
                 [](const conn&, const chan& ch, const usage*) { return ch.uncommitted; });
  channel_family(c, "consumer_prefetch", metric_type::gauge,
                 "Limit of unacknowledged messages for each consumer",
                 [](const conn&, const chan& ch, const usage*) { return uint64_t(ch.prefetch); });
}

void channel_exchange(ctx& c) {
  channel_family(c, "channel_messages_published_total", metric_type::counter,
                 "Total number of messages published into an exchange on a channel",
                 [](const conn&, const chan& ch, const usage*) { return ch.publish; });
  channel_family(c, "channel_messages_confirmed_total", metric_type::counter,
                 "Total number of messages published into an exchange and confirmed on the "
                 "channel",
                 [](const conn&, const chan& ch, const usage*) { return ch.confirmed; });
  channel_family(c, "channel_messages_unroutable_returned_total", metric_type::counter,
                 "Total number of messages published as mandatory into an exchange and returned "
                 "to the publisher as unroutable",
                 [](const conn&, const chan& ch, const usage*) { return ch.returned; });
}

void channel_queue(ctx& c) {
  channel_family(c, "channel_messages_acked_total", metric_type::counter,
                 "Total number of messages acknowledged by consumers",
                 [](const conn&, const chan& ch, const usage*) { return ch.acked; });
}

void connection_coarse(ctx& c) {
  connection_family(c, "connection_incoming_bytes_total", metric_type::counter,
                    "Total number of bytes received on a connection",
                    [](const conn& k) { return k.recv_oct; });
  connection_family(c, "connection_outgoing_bytes_total", metric_type::counter,
                    "Total number of bytes sent on a connection",
                    [](const conn& k) { return k.send_oct; });
}

void connection(ctx& c) {
  connection_family(c, "connection_incoming_packets_total", metric_type::counter,
                    "Total number of packets received on a connection",
                    [](const conn& k) { return k.recv_cnt; });
  connection_family(c, "connection_outgoing_packets_total", metric_type::counter,
                    "Total number of packets sent on a connection",
                    [](const conn& k) { return k.send_cnt; });
  connection_family(c, "connection_pending_packets", metric_type::gauge,
                    "Number of packets waiting to be sent on a connection",
                    [](const conn& k) { return k.send_pend; });
  connection_family(c, "connection_channels", metric_type::gauge, "Channels on a connection",
                    [](const conn& k) { return uint64_t(k.channels.size()); });
}

void exchanges(ctx& c) {
  c.begin("exchange_messages_published_total", metric_type::counter,
          "Total number of messages published into an exchange");
  uint64_t sum = 0;
  for (const auto& v : c.s.vhosts) {
    if (!c.r.keeps_vhost(v.name)) continue;
    for (const auto& x : v.exchanges) {
      if (c.per_object)
        c.w.sample({{"vhost", v.name}, {"exchange", x.name}}, x.counters.publish_in);
      else
        sum += x.counters.publish_in;
    }
  }
  if (!c.per_object) c.w.sample({}, sum);
}

void queue_info(ctx& c) {
  c.begin("queue_info", metric_type::gauge,
          "A metric with a constant '1' value and labels that provide some queue details");
  for (const auto& v : c.s.vhosts)
    for (const auto& q : v.queues)
      if (c.keeps_queue(v.name, q.name))
        c.w.sample({{"vhost", v.name},
                    {"queue", q.name},
                    {"queue_type", "rabbit_classic_queue"},
                    {"membership", "leader"}},
                   uint64_t(1));
}

// Totals of the node (no prefix but rabbitmq_).
void totals(ctx& c) {
  uint64_t channels = 0, consumers = 0, queues = 0;
  for (const auto& k : c.s.connections) channels += k.channels.size();
  for (const auto& v : c.s.vhosts) {
    consumers += v.totals.consumers;
    queues += v.totals.queues;
  }
  c.w.begin("rabbitmq_connections", metric_type::gauge, "Connections currently open");
  c.w.sample({}, uint64_t(c.s.connections.size()));
  c.w.begin("rabbitmq_channels", metric_type::gauge, "Channels currently open");
  c.w.sample({}, channels);
  c.w.begin("rabbitmq_consumers", metric_type::gauge, "Consumers currently connected");
  c.w.sample({}, consumers);
  c.w.begin("rabbitmq_queues", metric_type::gauge, "Queues available");
  c.w.sample({}, queues);
}

// rabbitmq_global_*: broker-wide counters, labelled as RabbitMQ labels them. Warren speaks
// AMQP 0-9-1 only and its queues are classic ones.
void global(ctx& c) {
  const auto& g = c.s.global;
  auto& w = c.w;
  const prom::labels proto{{"protocol", "amqp091"}};
  const prom::labels proto_queue{{"protocol", "amqp091"}, {"queue_type", "rabbit_classic_queue"}};
  auto counter = [&](std::string_view name, std::string_view help, prom::labels ls, uint64_t v) {
    w.begin(fmt::format("rabbitmq_global_{}", name), metric_type::counter, help);
    w.sample(ls, v);
  };
  counter("messages_received_total", "Total number of messages received from publishers", proto,
          g[G::received]);
  counter("messages_received_confirm_total",
          "Total number of messages received from publishers expecting confirmations", proto,
          g[G::received_confirm]);
  counter("messages_routed_total", "Total number of messages routed to queues or streams", proto,
          g[G::routed]);
  counter("messages_unroutable_dropped_total",
          "Total number of messages published as non-mandatory into an exchange and dropped as "
          "unroutable",
          proto, g[G::unroutable_dropped]);
  counter("messages_unroutable_returned_total",
          "Total number of messages published as mandatory into an exchange and returned to the "
          "publisher as unroutable",
          proto, g[G::unroutable_returned]);
  counter("messages_confirmed_total", "Total number of messages confirmed to publishers", proto,
          g[G::confirmed]);
  // Publishers: channels that have published (RabbitMQ counts a channel from its first publish).
  uint64_t publishers = 0, consumers = 0;
  for (const auto& k : c.s.connections)
    for (const auto& ch : k.channels) publishers += ch.publish > 0 ? 1 : 0;
  for (const auto& v : c.s.vhosts) consumers += v.totals.consumers;
  w.begin("rabbitmq_global_publishers", metric_type::gauge, "Current number of publishers");
  w.sample(proto, publishers);
  w.begin("rabbitmq_global_consumers", metric_type::gauge, "Current number of consumers");
  w.sample(proto, consumers);
  uint64_t delivered = g[G::delivered_consume_manual_ack] + g[G::delivered_consume_auto_ack] +
                       g[G::delivered_get_manual_ack] + g[G::delivered_get_auto_ack];
  counter("messages_delivered_total", "Total number of messages delivered to consumers",
          proto_queue, delivered);
  counter("messages_delivered_consume_manual_ack_total",
          "Total number of messages delivered to consumers using basic.consume with manual "
          "acknowledgment",
          proto_queue, g[G::delivered_consume_manual_ack]);
  counter("messages_delivered_consume_auto_ack_total",
          "Total number of messages delivered to consumers using basic.consume with automatic "
          "acknowledgment",
          proto_queue, g[G::delivered_consume_auto_ack]);
  counter("messages_delivered_get_manual_ack_total",
          "Total number of messages delivered to consumers using basic.get with manual "
          "acknowledgment",
          proto_queue, g[G::delivered_get_manual_ack]);
  counter("messages_delivered_get_auto_ack_total",
          "Total number of messages delivered to consumers using basic.get with automatic "
          "acknowledgment",
          proto_queue, g[G::delivered_get_auto_ack]);
  counter("messages_get_empty_total",
          "Total number of times basic.get operations fetched no message", proto_queue,
          g[G::get_empty]);
  counter("messages_redelivered_total", "Total number of messages redelivered to consumers",
          proto_queue, g[G::redelivered]);
  counter("messages_acknowledged_total", "Total number of messages acknowledged by consumers",
          proto_queue, g[G::acknowledged]);
  // A classic queue with a dead-letter exchange dead-letters at most once; Warren counts only
  // messages that had a dead-letter exchange to go to.
  const prom::labels dlx{{"queue_type", "rabbit_classic_queue"},
                         {"dead_letter_strategy", "at_most_once"}};
  counter("messages_dead_lettered_expired_total",
          "Total number of messages dead-lettered due to message TTL exceeded", dlx,
          g[G::dead_lettered_expired]);
  counter("messages_dead_lettered_rejected_total",
          "Total number of messages dead-lettered due to basic.reject or basic.nack", dlx,
          g[G::dead_lettered_rejected]);
  counter("messages_dead_lettered_maxlen_total",
          "Total number of messages dead-lettered due to overflow drop-head or reject-publish-dlx",
          dlx, g[G::dead_lettered_maxlen]);
}

void message_size(ctx& c) {
  const auto& g = c.s.global;
  std::array<uint64_t, message_size_le.size()> cumulative{};
  uint64_t running = 0;
  for (size_t i = 0; i < cumulative.size(); ++i) {
    running += g[G::size_le_100 + i];
    cumulative[i] = running;
  }
  c.w.begin("rabbitmq_message_size_bytes", metric_type::histogram,
            "Size of messages received from publishers");
  const prom::labels proto{{"protocol", "amqp091"}};
  c.w.histogram(std::span<const prom::label>(proto.begin(), proto.size()), message_size_le,
                cumulative, double(g[G::size_sum]), running);
}

void alarms(ctx& c) {
  // Warren raises no file descriptor alarm (RabbitMQ 3.x did): always 0.
  c.w.begin("rabbitmq_alarms_file_descriptor_limit", metric_type::untyped,
            "is 1 if file descriptor limit alarm is in effect");
  c.w.sample({}, uint64_t(0));
  c.w.begin("rabbitmq_alarms_free_disk_space_watermark", metric_type::untyped,
            "is 1 if free disk space watermark alarm is in effect");
  c.w.sample({}, uint64_t(c.s.node.disk_free_alarm ? 1 : 0));
  c.w.begin("rabbitmq_alarms_memory_used_watermark", metric_type::untyped,
            "is 1 if VM memory watermark alarm is in effect");
  c.w.sample({}, uint64_t(c.s.node.mem_alarm ? 1 : 0));
}

// The process, with the names Prometheus's client libraries give these.
void process(ctx& c) {
  c.w.begin("process_start_time_seconds", metric_type::gauge,
            "Start time of the process since unix epoch in seconds.");
  c.w.sample({}, c.s.start_time_seconds);
  c.w.begin("process_cpu_seconds_total", metric_type::counter,
            "Total user and system CPU time spent in seconds.");
  c.w.sample({}, c.s.cpu_seconds);
}

void federation(ctx& c) {
  if (!c.s.federation) return;
  const auto& f = *c.s.federation;
  auto one = [&](std::string_view name, metric_type t, std::string_view help, uint64_t v) {
    c.w.begin(name, t, help);
    c.w.sample({}, v);
  };
  one("warren_federation_messages_forwarded_total", metric_type::counter,
      "Messages federation links received from their upstreams and republished here", f.forwarded);
  one("warren_federation_links_running", metric_type::gauge,
      "Federation links connected and consuming from their upstream", f.links_running);
  one("warren_shovel_messages_total", metric_type::counter,
      "Messages dynamic shovels published to their destination", f.shovelled);
  one("warren_shovels_running", metric_type::gauge, "Dynamic shovels in state running",
      f.shovels_running);
}

void gateway(ctx& c) {
  if (!c.s.gateway) return;
  const web::gateway_stats& g = *c.s.gateway;
  auto& w = c.w;
  w.begin("warren_gateway_connections", metric_type::gauge,
          "Open web gateway connections, by transport (longpoll: polls waiting now)");
  w.sample({{"transport", "websocket"}}, g.websocket);
  w.sample({{"transport", "sse"}}, g.sse);
  w.sample({{"transport", "stream"}}, g.stream);
  w.sample({{"transport", "longpoll"}}, g.longpoll);
  auto one = [&](std::string_view name, metric_type t, std::string_view help, uint64_t v) {
    w.begin(name, t, help);
    w.sample({}, v);
  };
  one("warren_gateway_online_users", metric_type::gauge,
      "Users with at least one open web gateway connection", g.online_users);
  one("warren_gateway_inboxes", metric_type::gauge, "User inboxes the web gateway holds",
      g.inboxes);
  one("warren_gateway_held_events", metric_type::gauge,
      "Events held in all inboxes for replay on reconnect", g.held_events);
  one("warren_gateway_rooms", metric_type::gauge, "Rooms the web gateway holds", g.rooms);
  one("warren_gateway_events_delivered_total", metric_type::counter,
      "Events written to web gateway connections, live or replayed", g.events_delivered);
  one("warren_gateway_replays_total", metric_type::counter,
      "Resumes answered with the events missed", g.replays);
  one("warren_gateway_resets_total", metric_type::counter,
      "Resumes answered with a reset (the position was no longer held)", g.resets);
  one("warren_gateway_slow_readers_cut_total", metric_type::counter,
      "Connections that stopped taking live events, to catch up once their output drained",
      g.slow_readers_cut);
  constexpr size_t n = web::gateway_stats::latency_bounds.size();
  std::array<std::string, n + 1> le_text;
  std::array<std::string_view, n + 1> le;
  std::array<uint64_t, n + 1> cumulative{};
  for (size_t i = 0; i < n; ++i) {
    le_text[i] = prom::format_value(web::gateway_stats::latency_bounds[i]);
    cumulative[i] = g.latency_buckets[i];
  }
  le_text[n] = "+Inf";
  cumulative[n] = g.latency_count;
  for (size_t i = 0; i <= n; ++i) le[i] = le_text[i];
  w.begin("warren_gateway_delivery_latency_seconds", metric_type::histogram,
          "Time from an event reaching the web gateway's hub to its write on a connection");
  w.histogram({}, le, cumulative, g.latency_sum_seconds, g.latency_count);
}

void vhost_status(ctx& c) {
  c.w.begin("rabbitmq_cluster_vhost_status", metric_type::gauge,
            "Whether a given vhost is running");
  for (const auto& v : c.s.vhosts) c.w.sample({{"vhost", v.name}}, uint64_t(1));
}

// RabbitMQ leaves out the default exchange and internal ones here.
template <typename F>
void cluster_exchanges(ctx& c, std::string_view name, std::string_view help, F f) {
  c.w.begin(name, metric_type::gauge, help);
  for (const auto& v : c.s.vhosts)
    for (const auto& x : v.exchanges)
      if (!x.name.empty() && !x.internal)
        c.w.sample({{"vhost", v.name}, {"exchange", x.name}, {"type", x.type}}, f(v, x));
}

// Warren's own: RabbitMQ has no family for the cluster's membership.
void cluster(ctx& c) {
  if (!c.s.cluster) return;
  const auto& k = *c.s.cluster;
  c.w.begin("warren_cluster_nodes", metric_type::gauge,
            "Nodes known to the cluster (every node that ever joined), running or not");
  c.w.sample({}, k.nodes);
  c.w.begin("warren_cluster_nodes_running", metric_type::gauge,
            "Nodes of the cluster holding their lease in etcd, as this node last read it");
  c.w.sample({}, k.running);
  c.w.begin("warren_cluster_node_fenced", metric_type::gauge,
            "1 while this node is fenced (holds no lease in etcd) and refuses clients");
  c.w.sample({}, uint64_t(k.fenced ? 1 : 0));
}

void build_and_identity(ctx& c, std::string_view endpoint) {
  // rabbitmq_version is the RabbitMQ release whose behaviour Warren follows (as /api/overview).
  c.w.begin("rabbitmq_build_info", metric_type::untyped, "RabbitMQ & Erlang/OTP version info");
  c.w.sample({{"rabbitmq_version", "3.13.7"},
              {"prometheus_plugin_version", c.s.version},
              {"prometheus_client_version", "none"},
              {"erlang_version", "none"},
              {"product_name", "Warren"},
              {"product_version", c.s.version}},
             uint64_t(1));
  c.w.begin("rabbitmq_identity_info", metric_type::untyped,
            "RabbitMQ node & cluster identity info");
  c.w.sample({{"rabbitmq_node", c.s.node_name},
              {"rabbitmq_cluster", c.s.cluster_name},
              {"rabbitmq_endpoint", endpoint}},
             uint64_t(1));
}

}  // namespace

const std::vector<std::string_view>& detailed_families() {
  return known_families;
}

bool metrics_request::wants(std::string_view family) const {
  return endpoint != metrics_endpoint::detailed || families.count(family) > 0;
}

bool metrics_request::needs_queues() const {
  return endpoint == metrics_endpoint::per_object ||
         (endpoint == metrics_endpoint::detailed &&
          (wants("queue_coarse_metrics") || wants("queue_consumer_count") ||
           wants("queue_metrics") || wants("queue_delivery_metrics")));
}

bool metrics_request::needs_exchanges() const {
  return wants("exchange_metrics") || wants("exchange_names") || wants("exchange_bindings");
}

bool metrics_request::needs_channels() const {
  return wants("channel_metrics");
}

bool metrics_request::needs_bindings() const {
  return endpoint == metrics_endpoint::detailed && wants("exchange_bindings");
}

bool metrics_request::keeps_vhost(std::string_view vhost) const {
  return !vhosts || vhosts->count(vhost) > 0;
}

std::variant<metrics_request, metrics_refusal> parse_metrics_target(std::string_view target) {
  size_t qmark = target.find('?');
  std::string_view path = target.substr(0, qmark);
  std::string_view query = qmark == std::string_view::npos ? "" : target.substr(qmark + 1);
  metrics_request r;
  if (path == "/metrics" || path == "/metrics/")
    r.endpoint = metrics_endpoint::aggregated;
  else if (path == "/metrics/per-object")
    r.endpoint = metrics_endpoint::per_object;
  else if (path == "/metrics/detailed")
    r.endpoint = metrics_endpoint::detailed;
  else if (path.starts_with("/metrics/"))
    return metrics_refusal{404, "Unknown Registry"};
  else
    return metrics_refusal{404, "Not Found"};
  if (r.endpoint != metrics_endpoint::detailed) return r;

  for (auto& f : http::query_params(query, "family"))
    if (std::find(known_families.begin(), known_families.end(), f) != known_families.end())
      r.families.insert(std::move(f));
  auto vhosts = http::query_params(query, "vhost");
  if (!vhosts.empty()) r.vhosts.emplace(vhosts.begin(), vhosts.end());
  if (auto q = http::query_param(query, "queue"); q && !q->empty()) {
    if (q->size() > max_queue_filter) return metrics_refusal{400, "'queue' regex too long"};
    // Bounded (bounded_regex.hpp): this port asks for no credentials.
    auto re = bounded_regex::make(*q, false, {max_queue_filter, regex_limits{}.max_weight});
    if (auto* why = std::get_if<std::string>(&re))
      return metrics_refusal{400, fmt::format("Invalid 'queue' regex: {}", *why)};
    r.queue = std::move(std::get<bounded_regex>(re));
  }
  return r;
}

std::string render_metrics(const metrics_snapshot& s, const metrics_request& r) {
  prom::text_writer w;
  // In a cluster each node is scraped on its own: every series says which node it is from, so
  // that sums and joins across the nodes' scrapes need no relabelling (docs/compatibility.md).
  if (s.cluster) w.add_common_label("rabbitmq_node", s.node_name);
  bool detailed = r.endpoint == metrics_endpoint::detailed;
  ctx c{w,
        s,
        r,
        detailed ? "rabbitmq_detailed_" : "rabbitmq_",
        r.endpoint != metrics_endpoint::aggregated,
        {}};
  for (const auto& v : s.vhosts)
    for (const auto& u : v.channels) c.usage[u.channel_id] = &u;

  if (r.wants("connection_churn_metrics")) churn(c);
  if (r.wants("node_coarse_metrics")) node_coarse(c);
  if (r.wants("node_metrics")) node(c);
  if (r.wants("auth_attempt_metrics")) auth_attempts(c);
  if (r.wants("queue_coarse_metrics")) queue_coarse(c);
  // queue_consumer_count is a part of queue_metrics: one or the other (as RabbitMQ).
  if (r.wants("queue_metrics"))
    queue_metrics(c);
  else if (r.wants("queue_consumer_count"))
    queue_consumers(c);
  if (r.wants("queue_delivery_metrics")) queue_delivery(c);
  if (r.wants("channel_metrics")) channels(c);
  if (r.wants("channel_exchange_metrics")) channel_exchange(c);
  if (r.wants("channel_queue_metrics")) channel_queue(c);
  if (r.wants("connection_coarse_metrics")) connection_coarse(c);
  if (r.wants("connection_metrics")) connection(c);
  if (r.wants("exchange_metrics")) exchanges(c);

  if (!detailed) {
    totals(c);
    global(c);
    message_size(c);
    alarms(c);
    process(c);
    gateway(c);
    cluster(c);
    federation(c);
  }
  if (r.endpoint == metrics_endpoint::per_object ||
      (detailed && (r.wants("queue_coarse_metrics") || r.wants("queue_consumer_count") ||
                    r.wants("queue_metrics"))))
    queue_info(c);
  if (detailed) {
    if (r.wants("vhost_status")) vhost_status(c);
    if (r.wants("exchange_bindings"))
      cluster_exchanges(c, "rabbitmq_cluster_exchange_bindings",
                        "Number of bindings for an exchange. This value is cluster-wide.",
                        [](const metrics_snapshot::vhost_part& v, const broker::exchange_view& x) {
                          auto it = v.bindings.find(x.name);
                          return it == v.bindings.end() ? uint64_t(0) : it->second;
                        });
    if (r.wants("exchange_names"))
      cluster_exchanges(c, "rabbitmq_cluster_exchange_name",
                        "Enumerates exchanges without any additional info. This value is "
                        "cluster-wide. A cheaper alternative to `exchange_bindings`",
                        [](const auto&, const auto&) { return uint64_t(1); });
  }
  build_and_identity(c, detailed ? "detailed" : c.per_object ? "per-object" : "aggregated");
  return w.take();
}

}  // namespace warren::mgmt
