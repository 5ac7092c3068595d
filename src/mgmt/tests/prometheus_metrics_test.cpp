// The metrics of a scrape, rendered from a snapshot filled by hand: which families each endpoint
// has, their labels, RabbitMQ's exact names and bucket strings, the gateway's families, and the
// parsing of /metrics targets, and gzip.
#include "mgmt/prometheus_metrics.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "mgmt/prometheus.hpp"

namespace warren::mgmt {
namespace {

using G = broker::global_counters;

metrics_snapshot sample_snapshot() {
  metrics_snapshot s;
  s.node_name = "warren@host";
  s.cluster_name = "warren@host";
  s.version = "0.1.0";
  s.global[G::received] = 10;
  s.global[G::routed] = 9;
  s.global[G::delivered_consume_manual_ack] = 4;
  s.global[G::delivered_consume_auto_ack] = 2;
  s.global[G::delivered_get_manual_ack] = 1;
  s.global[G::delivered_get_auto_ack] = 1;
  s.global[G::auth_attempts] = 5;
  s.global[G::auth_failed] = 2;
  s.global[G::queues_declared] = 3;
  // Sizes: 2 <= 100, 1 <= 1e3, 1 <= 5e7, 1 > 1e8.
  s.global[G::size_le_100] = 2;
  s.global[G::size_le_1e3] = 1;
  s.global[G::size_le_5e7] = 1;
  s.global[G::size_le_inf] = 1;
  s.global[G::size_sum] = 200'000'000;
  s.node.mem_used = 1000;
  s.node.mem_limit = 5000;
  s.node.disk_free = 9000;
  s.node.disk_free_limit = 50;
  s.node.disk_free_alarm = true;
  s.node.fd_used = 12;
  s.node.fd_total = 1024;
  s.uptime_seconds = 42.5;
  s.open_sockets = 3;

  auto& a = s.vhosts.emplace_back();
  a.name = "/";
  a.totals.ready = 5;
  a.totals.unacked = 2;
  a.totals.ready_bytes = 50;
  a.totals.queues = 2;
  a.totals.consumers = 1;
  a.totals.counters.ack = 7;
  auto& q1 = a.queues.emplace_back();
  q1.name = "orders";
  q1.ready = 5;
  q1.unacked = 2;
  q1.consumers = 1;
  q1.counters.ack = 7;
  auto& q2 = a.queues.emplace_back();
  q2.name = "we \"quote\"";
  auto& x = a.exchanges.emplace_back();
  x.name = "amq.direct";
  x.type = "direct";
  x.counters.publish_in = 4;
  auto& d = a.exchanges.emplace_back();
  d.name = "";
  d.type = "direct";
  d.counters.publish_in = 6;
  a.channels.push_back({100, 2, 1, 0});
  a.bindings["amq.direct"] = 3;

  auto& b = s.vhosts.emplace_back();
  b.name = "other";
  b.totals.ready = 1;
  b.totals.queues = 1;
  auto& q3 = b.queues.emplace_back();
  q3.name = "orders";
  q3.ready = 1;

  auto& k = s.connections.emplace_back();
  k.id = 1;
  k.name = "127.0.0.1:5000 -> 127.0.0.1:5672";
  k.recv_oct = 300;
  k.send_oct = 200;
  auto& ch = k.channels.emplace_back();
  ch.id = 100;
  ch.number = 1;
  ch.publish = 10;
  ch.confirmed = 8;
  ch.prefetch = 20;
  return s;
}

struct family_info {
  std::string type;
  std::vector<std::string> samples;  // whole lines
};

// Checks the document's shape as Prometheus reads it (HELP then TYPE once per family, samples
// after their family's TYPE and named by it), and returns the families.
std::map<std::string, family_info> parse(const std::string& text) {
  std::map<std::string, family_info> out;
  std::istringstream in(text);
  std::string line, current, help_of;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      help_of = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_EQ(out.count(help_of), 0u) << "HELP twice: " << help_of;
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream t(line.substr(7));
      std::string name, type;
      t >> name >> type;
      EXPECT_EQ(name, help_of) << "TYPE without its HELP just before: " << line;
      EXPECT_EQ(out.count(name), 0u) << "TYPE twice: " << name;
      if (type == "counter") {
        EXPECT_TRUE(name.ends_with("_total")) << name;
      }
      out[name].type = type;
      current = name;
      continue;
    }
    std::string metric = line.substr(0, line.find_first_of("{ "));
    bool ok = metric == current;
    if (out[current].type == "histogram")
      ok = metric == current + "_bucket" || metric == current + "_sum" ||
           metric == current + "_count";
    EXPECT_TRUE(ok) << "sample outside its family " << current << ": " << line;
    out[current].samples.push_back(line);
  }
  return out;
}

metrics_request request(std::string_view target) {
  auto r = parse_metrics_target(target);
  EXPECT_TRUE(std::holds_alternative<metrics_request>(r)) << target;
  return std::get<metrics_request>(r);
}

bool has_line(const family_info& f, std::string_view line) {
  return std::find(f.samples.begin(), f.samples.end(), line) != f.samples.end();
}

TEST(prometheus_metrics, aggregated_sums_without_object_labels) {
  auto f = parse(render_metrics(sample_snapshot(), request("/metrics")));
  EXPECT_EQ(f["rabbitmq_queue_messages_ready"].samples,
            std::vector<std::string>{"rabbitmq_queue_messages_ready 6"});
  EXPECT_EQ(f["rabbitmq_queue_messages"].samples,
            std::vector<std::string>{"rabbitmq_queue_messages 8"});
  EXPECT_EQ(f["rabbitmq_queue_messages_acked_total"].samples,
            std::vector<std::string>{"rabbitmq_queue_messages_acked_total 7"});
  EXPECT_EQ(f["rabbitmq_queues"].samples, std::vector<std::string>{"rabbitmq_queues 3"});
  EXPECT_EQ(f["rabbitmq_connections"].samples, std::vector<std::string>{"rabbitmq_connections 1"});
  EXPECT_EQ(f["rabbitmq_channels"].samples, std::vector<std::string>{"rabbitmq_channels 1"});
  EXPECT_EQ(f["rabbitmq_exchange_messages_published_total"].samples,
            std::vector<std::string>{"rabbitmq_exchange_messages_published_total 10"});
  EXPECT_EQ(f["rabbitmq_channel_messages_published_total"].samples,
            std::vector<std::string>{"rabbitmq_channel_messages_published_total 10"});
  EXPECT_EQ(f["rabbitmq_connection_incoming_bytes_total"].samples,
            std::vector<std::string>{"rabbitmq_connection_incoming_bytes_total 300"});
  EXPECT_EQ(f["rabbitmq_queues_declared_total"].type, "counter");
  EXPECT_TRUE(has_line(f["rabbitmq_queues_declared_total"], "rabbitmq_queues_declared_total 3"));
  EXPECT_TRUE(has_line(f["rabbitmq_identity_info"],
                       "rabbitmq_identity_info{rabbitmq_node=\"warren@host\",rabbitmq_cluster="
                       "\"warren@host\",rabbitmq_endpoint=\"aggregated\"} 1"));
  EXPECT_EQ(f["rabbitmq_build_info"].samples.size(), 1u);
  EXPECT_NE(f["rabbitmq_build_info"].samples[0].find("product_name=\"Warren\""), std::string::npos);
  // No per-object families here.
  EXPECT_EQ(f.count("rabbitmq_queue_info"), 0u);
  EXPECT_EQ(f.count("rabbitmq_detailed_queue_messages"), 0u);
  for (const auto& [name, info] : f)
    for (const auto& s : info.samples) EXPECT_EQ(s.find("queue=\""), std::string::npos) << s;
}

TEST(prometheus_metrics, global_counters_with_rabbitmq_labels) {
  auto f = parse(render_metrics(sample_snapshot(), request("/metrics")));
  EXPECT_TRUE(has_line(f["rabbitmq_global_messages_received_total"],
                       "rabbitmq_global_messages_received_total{protocol=\"amqp091\"} 10"));
  EXPECT_TRUE(has_line(f["rabbitmq_global_messages_routed_total"],
                       "rabbitmq_global_messages_routed_total{protocol=\"amqp091\"} 9"));
  EXPECT_TRUE(has_line(f["rabbitmq_global_messages_delivered_total"],
                       "rabbitmq_global_messages_delivered_total{protocol=\"amqp091\",queue_type="
                       "\"rabbit_classic_queue\"} 8"));
  EXPECT_TRUE(has_line(f["rabbitmq_global_publishers"],
                       "rabbitmq_global_publishers{protocol=\"amqp091\"} 1"));
  EXPECT_TRUE(has_line(f["rabbitmq_global_consumers"],
                       "rabbitmq_global_consumers{protocol=\"amqp091\"} 1"));
  EXPECT_TRUE(has_line(f["rabbitmq_auth_attempts_succeeded_total"],
                       "rabbitmq_auth_attempts_succeeded_total{protocol=\"amqp091\"} 3"));
  // Every counter the RabbitMQ-Overview dashboard reads is there.
  for (const char* n :
       {"received", "routed", "confirmed", "received_confirm", "unroutable_dropped",
        "unroutable_returned", "delivered_consume_auto_ack", "delivered_consume_manual_ack",
        "redelivered", "acknowledged", "delivered_get_auto_ack", "delivered_get_manual_ack",
        "get_empty", "delivered"})
    EXPECT_EQ(f[fmt::format("rabbitmq_global_messages_{}_total", n)].type, "counter") << n;
  for (const char* n : {"connections_opened", "connections_closed", "channels_opened",
                        "channels_closed", "queues_declared", "queues_created", "queues_deleted"})
    EXPECT_EQ(f[fmt::format("rabbitmq_{}_total", n)].type, "counter") << n;
}

TEST(prometheus_metrics, message_size_histogram_has_rabbitmq_bucket_strings) {
  auto f = parse(render_metrics(sample_snapshot(), request("/metrics")));
  const auto& h = f["rabbitmq_message_size_bytes"];
  EXPECT_EQ(h.type, "histogram");
  EXPECT_EQ(h.samples,
            (std::vector<std::string>{
                "rabbitmq_message_size_bytes_bucket{protocol=\"amqp091\",le=\"100.0\"} 2",
                "rabbitmq_message_size_bytes_bucket{protocol=\"amqp091\",le=\"1000.0\"} 3",
                "rabbitmq_message_size_bytes_bucket{protocol=\"amqp091\",le=\"10000.0\"} 3",
                "rabbitmq_message_size_bytes_bucket{protocol=\"amqp091\",le=\"100000.0\"} 3",
                "rabbitmq_message_size_bytes_bucket{protocol=\"amqp091\",le=\"1e+06\"} 3",
                "rabbitmq_message_size_bytes_bucket{protocol=\"amqp091\",le=\"1e+07\"} 3",
                "rabbitmq_message_size_bytes_bucket{protocol=\"amqp091\",le=\"5e+07\"} 4",
                "rabbitmq_message_size_bytes_bucket{protocol=\"amqp091\",le=\"1e+08\"} 4",
                "rabbitmq_message_size_bytes_bucket{protocol=\"amqp091\",le=\"+Inf\"} 5",
                "rabbitmq_message_size_bytes_sum{protocol=\"amqp091\"} 200000000",
                "rabbitmq_message_size_bytes_count{protocol=\"amqp091\"} 5"}));
}

TEST(prometheus_metrics, node_resources_and_alarms) {
  auto f = parse(render_metrics(sample_snapshot(), request("/metrics")));
  EXPECT_TRUE(has_line(f["rabbitmq_process_resident_memory_bytes"],
                       "rabbitmq_process_resident_memory_bytes 1000"));
  EXPECT_TRUE(has_line(f["rabbitmq_resident_memory_limit_bytes"],
                       "rabbitmq_resident_memory_limit_bytes 5000"));
  EXPECT_TRUE(has_line(f["rabbitmq_disk_space_available_bytes"],
                       "rabbitmq_disk_space_available_bytes 9000"));
  EXPECT_TRUE(has_line(f["rabbitmq_disk_space_available_limit_bytes"],
                       "rabbitmq_disk_space_available_limit_bytes 50"));
  EXPECT_TRUE(has_line(f["rabbitmq_process_open_fds"], "rabbitmq_process_open_fds 12"));
  EXPECT_TRUE(has_line(f["rabbitmq_process_max_fds"], "rabbitmq_process_max_fds 1024"));
  EXPECT_TRUE(
      has_line(f["rabbitmq_process_max_tcp_sockets"], "rabbitmq_process_max_tcp_sockets 1024"));
  EXPECT_TRUE(
      has_line(f["rabbitmq_process_open_tcp_sockets"], "rabbitmq_process_open_tcp_sockets 3"));
  EXPECT_TRUE(has_line(f["rabbitmq_erlang_uptime_seconds"], "rabbitmq_erlang_uptime_seconds 42.5"));
  EXPECT_TRUE(has_line(f["rabbitmq_alarms_free_disk_space_watermark"],
                       "rabbitmq_alarms_free_disk_space_watermark 1"));
  EXPECT_TRUE(has_line(f["rabbitmq_alarms_memory_used_watermark"],
                       "rabbitmq_alarms_memory_used_watermark 0"));
  EXPECT_TRUE(has_line(f["rabbitmq_alarms_file_descriptor_limit"],
                       "rabbitmq_alarms_file_descriptor_limit 0"));
  EXPECT_EQ(f["process_cpu_seconds_total"].type, "counter");
}

TEST(prometheus_metrics, per_object_labels_queues_exchanges_channels_and_connections) {
  auto f = parse(render_metrics(sample_snapshot(), request("/metrics/per-object")));
  EXPECT_EQ(f["rabbitmq_queue_messages_ready"].samples,
            (std::vector<std::string>{
                "rabbitmq_queue_messages_ready{vhost=\"/\",queue=\"orders\"} 5",
                "rabbitmq_queue_messages_ready{vhost=\"/\",queue=\"we \\\"quote\\\"\"} 0",
                "rabbitmq_queue_messages_ready{vhost=\"other\",queue=\"orders\"} 1"}));
  EXPECT_TRUE(has_line(f["rabbitmq_queue_info"],
                       "rabbitmq_queue_info{vhost=\"/\",queue=\"orders\",queue_type=\"rabbit_"
                       "classic_queue\",membership=\"leader\"} 1"));
  EXPECT_TRUE(has_line(f["rabbitmq_exchange_messages_published_total"],
                       "rabbitmq_exchange_messages_published_total{vhost=\"/\",exchange=\"\"} 6"));
  EXPECT_TRUE(
      has_line(f["rabbitmq_channel_consumers"],
               "rabbitmq_channel_consumers{channel=\"127.0.0.1:5000 -> 127.0.0.1:5672 (1)\"} 1"));
  EXPECT_TRUE(has_line(
      f["rabbitmq_channel_messages_unacked"],
      "rabbitmq_channel_messages_unacked{channel=\"127.0.0.1:5000 -> 127.0.0.1:5672 (1)\"} 2"));
  EXPECT_TRUE(
      has_line(f["rabbitmq_consumer_prefetch"],
               "rabbitmq_consumer_prefetch{channel=\"127.0.0.1:5000 -> 127.0.0.1:5672 (1)\"} 20"));
  // RabbitMQ labels connections `channel` too.
  EXPECT_TRUE(has_line(
      f["rabbitmq_connection_outgoing_bytes_total"],
      "rabbitmq_connection_outgoing_bytes_total{channel=\"127.0.0.1:5000 -> 127.0.0.1:5672\"} "
      "200"));
  // The node's totals and global counters are there too, without object labels.
  EXPECT_EQ(f["rabbitmq_queues"].samples, std::vector<std::string>{"rabbitmq_queues 3"});
  EXPECT_EQ(f["rabbitmq_global_messages_received_total"].samples.size(), 1u);
  EXPECT_NE(f["rabbitmq_identity_info"].samples[0].find("rabbitmq_endpoint=\"per-object\""),
            std::string::npos);
}

TEST(prometheus_metrics, detailed_without_families_is_identity_only) {
  auto f = parse(render_metrics(sample_snapshot(), request("/metrics/detailed")));
  std::set<std::string> names;
  for (const auto& [n, info] : f) names.insert(n);
  EXPECT_EQ(names, (std::set<std::string>{"rabbitmq_build_info", "rabbitmq_identity_info"}));
  EXPECT_NE(f["rabbitmq_identity_info"].samples[0].find("rabbitmq_endpoint=\"detailed\""),
            std::string::npos);
}

TEST(prometheus_metrics, detailed_families_with_prefix_and_filters) {
  auto r = request(
      "/metrics/detailed?family=queue_coarse_metrics&family=no_such_family&family=queue_"
      "consumer_count&vhost=other&family=connection_churn_metrics");
  EXPECT_EQ(r.families,
            (std::set<std::string, std::less<>>{"queue_coarse_metrics", "queue_consumer_count",
                                                "connection_churn_metrics"}));
  auto f = parse(render_metrics(sample_snapshot(), r));
  EXPECT_EQ(f["rabbitmq_detailed_queue_messages_ready"].samples,
            std::vector<std::string>{
                "rabbitmq_detailed_queue_messages_ready{vhost=\"other\",queue=\"orders\"} 1"});
  EXPECT_EQ(f["rabbitmq_detailed_queue_consumers"].samples.size(), 1u);
  EXPECT_EQ(f["rabbitmq_detailed_queue_info"].samples.size(), 1u);
  EXPECT_EQ(f["rabbitmq_detailed_connections_opened_total"].type, "counter");
  EXPECT_EQ(f.count("rabbitmq_queue_messages_ready"), 0u);
  EXPECT_EQ(f.count("rabbitmq_global_messages_received_total"), 0u);
  EXPECT_EQ(f.count("rabbitmq_detailed_queue_messages_bytes"), 0u);

  // queue_metrics includes the consumer count: asked for both, it comes once.
  auto both = parse(render_metrics(
      sample_snapshot(),
      request("/metrics/detailed?family=queue_metrics&family=queue_consumer_count&queue=^ord")));
  EXPECT_EQ(both["rabbitmq_detailed_queue_consumers"].samples.size(), 2u);
  EXPECT_EQ(both["rabbitmq_detailed_queue_messages_bytes"].samples.size(), 2u);

  // A vhost that does not exist keeps nothing.
  auto none = parse(render_metrics(
      sample_snapshot(), request("/metrics/detailed?family=queue_coarse_metrics&vhost=nope")));
  EXPECT_TRUE(none["rabbitmq_detailed_queue_messages"].samples.empty());
}

TEST(prometheus_metrics, detailed_cluster_families) {
  auto f = parse(render_metrics(
      sample_snapshot(),
      request("/metrics/detailed?family=vhost_status&family=exchange_bindings&family=exchange_"
              "names")));
  EXPECT_EQ(f["rabbitmq_cluster_vhost_status"].samples,
            (std::vector<std::string>{"rabbitmq_cluster_vhost_status{vhost=\"/\"} 1",
                                      "rabbitmq_cluster_vhost_status{vhost=\"other\"} 1"}));
  // The default exchange is left out.
  EXPECT_EQ(f["rabbitmq_cluster_exchange_bindings"].samples,
            std::vector<std::string>{"rabbitmq_cluster_exchange_bindings{vhost=\"/\",exchange="
                                     "\"amq.direct\",type=\"direct\"} 3"});
  EXPECT_EQ(f["rabbitmq_cluster_exchange_name"].samples.size(), 1u);
}

TEST(prometheus_metrics, a_cluster_node_labels_every_series_with_its_name) {
  auto s = sample_snapshot();
  auto single = render_metrics(s, request("/metrics/per-object"));
  EXPECT_EQ(single.find("rabbitmq_node=\"warren@host\",rabbitmq_cluster"),
            single.find("rabbitmq_node="))
      << "only rabbitmq_identity_info names the node of a node outside a cluster";
  s.node_name = "warren@n2";
  s.cluster = metrics_snapshot::cluster_part{3, 3, false};
  for (auto target :
       {"/metrics", "/metrics/per-object", "/metrics/detailed?family=queue_metrics"}) {
    auto f = parse(render_metrics(s, request(target)));
    size_t samples = 0;
    for (const auto& [name, info] : f)
      for (const auto& line : info.samples) {
        ++samples;
        auto at = line.find("rabbitmq_node=\"warren@n2\"");
        EXPECT_NE(at, std::string::npos) << target << ": " << line;
        EXPECT_EQ(line.find("rabbitmq_node=", at + 1), std::string::npos) << "twice: " << line;
      }
    EXPECT_GT(samples, 10u) << target;
  }
}

TEST(prometheus_metrics, every_detailed_family_renders) {
  std::string target = "/metrics/detailed?";
  for (auto fam : detailed_families()) target += fmt::format("family={}&", fam);
  auto r = request(target);
  EXPECT_EQ(r.families.size(), detailed_families().size());
  auto f = parse(render_metrics(sample_snapshot(), r));
  EXPECT_GT(f.size(), 40u);
  for (const auto& [name, info] : f)
    EXPECT_TRUE(name.starts_with("rabbitmq_detailed_") || name.starts_with("rabbitmq_cluster_") ||
                name == "rabbitmq_build_info" || name == "rabbitmq_identity_info")
        << name;
}

TEST(prometheus_metrics, targets_that_are_refused) {
  auto unknown = parse_metrics_target("/metrics/memory-breakdown");
  ASSERT_TRUE(std::holds_alternative<metrics_refusal>(unknown));
  EXPECT_EQ(std::get<metrics_refusal>(unknown).status, 404);
  auto elsewhere = parse_metrics_target("/api/overview");
  ASSERT_TRUE(std::holds_alternative<metrics_refusal>(elsewhere));
  EXPECT_EQ(std::get<metrics_refusal>(elsewhere).status, 404);
  auto bad_regex = parse_metrics_target("/metrics/detailed?family=queue_metrics&queue=(");
  ASSERT_TRUE(std::holds_alternative<metrics_refusal>(bad_regex));
  EXPECT_EQ(std::get<metrics_refusal>(bad_regex).status, 400);
  auto long_regex = parse_metrics_target("/metrics/detailed?queue=" + std::string(2001, 'a'));
  ASSERT_TRUE(std::holds_alternative<metrics_refusal>(long_regex));
  EXPECT_EQ(std::get<metrics_refusal>(long_regex).status, 400);
  // This port asks for no credentials: a pattern needing back-references (backtracking) is
  // refused, and one that backtracking would take hours over ("(a|aa)*b" against the sample's
  // names) is answered at once (bounded_regex.hpp; docs/security.md, "Fuzzing").
  auto backref = parse_metrics_target("/metrics/detailed?queue=(o)%5C1");
  ASSERT_TRUE(std::holds_alternative<metrics_refusal>(backref));
  EXPECT_EQ(std::get<metrics_refusal>(backref).status, 400);
  auto slow = request("/metrics/detailed?family=queue_coarse_metrics&queue=(.*.*)*x");
  auto f = parse(render_metrics(sample_snapshot(), slow));
  EXPECT_TRUE(f["rabbitmq_detailed_queue_messages"].samples.empty());
  // Filters outside /detailed are ignored, as RabbitMQ ignores them.
  auto plain = request("/metrics?family=queue_metrics&vhost=x");
  EXPECT_EQ(plain.endpoint, metrics_endpoint::aggregated);
  EXPECT_TRUE(plain.wants("channel_metrics"));
  EXPECT_TRUE(plain.keeps_vhost("/"));
}

TEST(prometheus_metrics, gateway_families_when_the_node_has_a_gateway) {
  auto s = sample_snapshot();
  auto without = parse(render_metrics(s, request("/metrics")));
  for (const auto& [name, info] : without) EXPECT_FALSE(name.starts_with("warren_")) << name;

  web::gateway_stats g;
  g.websocket = 3;
  g.sse = 2;
  g.stream = 1;
  g.longpoll = 4;
  g.online_users = 5;
  g.inboxes = 6;
  g.held_events = 70;
  g.rooms = 8;
  g.events_delivered = 900;
  g.replays = 10;
  g.resets = 11;
  g.slow_readers_cut = 12;
  for (size_t i = 0; i < g.latency_buckets.size(); ++i) g.latency_buckets[i] = 10 + i;
  g.latency_count = 30;
  g.latency_sum_seconds = 0.25;
  s.gateway = g;
  for (auto target : {"/metrics", "/metrics/per-object"}) {
    auto f = parse(render_metrics(s, request(target)));
    EXPECT_EQ(f["warren_gateway_connections"].samples,
              (std::vector<std::string>{"warren_gateway_connections{transport=\"websocket\"} 3",
                                        "warren_gateway_connections{transport=\"sse\"} 2",
                                        "warren_gateway_connections{transport=\"stream\"} 1",
                                        "warren_gateway_connections{transport=\"longpoll\"} 4"}));
    EXPECT_TRUE(has_line(f["warren_gateway_online_users"], "warren_gateway_online_users 5"));
    EXPECT_TRUE(has_line(f["warren_gateway_inboxes"], "warren_gateway_inboxes 6"));
    EXPECT_TRUE(has_line(f["warren_gateway_held_events"], "warren_gateway_held_events 70"));
    EXPECT_TRUE(has_line(f["warren_gateway_rooms"], "warren_gateway_rooms 8"));
    EXPECT_TRUE(has_line(f["warren_gateway_events_delivered_total"],
                         "warren_gateway_events_delivered_total 900"));
    EXPECT_TRUE(has_line(f["warren_gateway_replays_total"], "warren_gateway_replays_total 10"));
    EXPECT_TRUE(has_line(f["warren_gateway_resets_total"], "warren_gateway_resets_total 11"));
    EXPECT_TRUE(has_line(f["warren_gateway_slow_readers_cut_total"],
                         "warren_gateway_slow_readers_cut_total 12"));
    const auto& h = f["warren_gateway_delivery_latency_seconds"];
    EXPECT_EQ(h.type, "histogram");
    ASSERT_EQ(h.samples.size(), web::gateway_stats::latency_bounds.size() + 3);
    EXPECT_EQ(h.samples.front(),
              "warren_gateway_delivery_latency_seconds_bucket{le=\"0.0005\"} 10");
    EXPECT_EQ(h.samples[10], "warren_gateway_delivery_latency_seconds_bucket{le=\"1\"} 20");
    EXPECT_EQ(h.samples[11], "warren_gateway_delivery_latency_seconds_bucket{le=\"2.5\"} 21");
    EXPECT_EQ(h.samples[12], "warren_gateway_delivery_latency_seconds_bucket{le=\"+Inf\"} 30");
    EXPECT_EQ(h.samples[13], "warren_gateway_delivery_latency_seconds_sum 0.25");
    EXPECT_EQ(h.samples[14], "warren_gateway_delivery_latency_seconds_count 30");
  }
  // Not in /detailed, which has RabbitMQ's core families only.
  auto d = parse(render_metrics(s, request("/metrics/detailed?family=node_metrics")));
  EXPECT_EQ(d.count("warren_gateway_rooms"), 0u);
}

TEST(prometheus_metrics, gzip_when_the_scraper_takes_it) {
  EXPECT_TRUE(accepts_gzip("gzip"));
  EXPECT_TRUE(accepts_gzip("identity, gzip;q=0.5"));
  EXPECT_TRUE(accepts_gzip("br, *"));
  EXPECT_TRUE(accepts_gzip("gzip;q=1.0"));
  EXPECT_FALSE(accepts_gzip(""));
  EXPECT_FALSE(accepts_gzip("identity"));
  EXPECT_FALSE(accepts_gzip("gzip;q=0"));
  EXPECT_FALSE(accepts_gzip("gzip; q=0.000"));
  EXPECT_FALSE(accepts_gzip("xgzip"));

  std::string text = render_metrics(sample_snapshot(), request("/metrics/per-object"));
  auto packed = gzip(text);
  ASSERT_TRUE(packed);
  EXPECT_LT(packed->size(), text.size() / 3);
  ASSERT_GE(packed->size(), 2u);
  EXPECT_EQ(uint8_t((*packed)[0]), 0x1f);  // gzip's magic
  EXPECT_EQ(uint8_t((*packed)[1]), 0x8b);
  // Read back with zlib.
  z_stream z{};
  ASSERT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
  std::string back(text.size() + 16, '\0');
  z.next_in = reinterpret_cast<Bytef*>(packed->data());
  z.avail_in = uInt(packed->size());
  z.next_out = reinterpret_cast<Bytef*>(back.data());
  z.avail_out = uInt(back.size());
  EXPECT_EQ(inflate(&z, Z_FINISH), Z_STREAM_END);
  back.resize(z.total_out);
  inflateEnd(&z);
  EXPECT_EQ(back, text);
}

}  // namespace
}  // namespace warren::mgmt
