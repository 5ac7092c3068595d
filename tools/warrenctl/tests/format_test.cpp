// Golden output of every warrenctl listing and of status: canned management-API JSON (RabbitMQ's
// shapes) in, rabbitmqctl's exact text out, with -q, -s, --no-table-headers and --formatter json.
#include <gtest/gtest.h>

#include "warrenctl/format.hpp"

namespace warren::ctl {
namespace {

std::string listing(const std::string& command, const json& api,
                    const std::vector<std::string>& names = {}, output_options o = {},
                    const std::string& vhost = "/") {
  const listing_spec* spec = find_listing(command);
  EXPECT_NE(spec, nullptr) << command;
  if (!spec) return {};
  return format_listing(*spec, vhost, columns_for(*spec, names), api, o);
}

const json queues = json::parse(R"j([
  {"name": "q1", "vhost": "/", "messages": 3, "messages_ready": 2, "messages_unacknowledged": 1,
   "consumers": 1, "durable": true, "auto_delete": false, "arguments": {}, "state": "running"},
  {"name": "orders", "vhost": "/", "messages": 0, "messages_ready": 0,
   "messages_unacknowledged": 0, "consumers": 0, "durable": false, "auto_delete": true,
   "arguments": {"x-max-length": 10, "x-queue-type": "classic"}, "state": "running"}
])j");

TEST(Format, ListQueuesDefault) {
  EXPECT_EQ(listing("list_queues", queues),
            "Timeout: 60.0 seconds ...\n"
            "Listing queues for vhost / ...\n"
            "name\tmessages\n"
            "q1\t3\n"
            "orders\t0\n");
}

TEST(Format, ListQueuesColumnsBooleansAndArguments) {
  EXPECT_EQ(listing("list_queues", queues,
                    {"name", "durable", "auto_delete", "arguments", "consumers", "policy"}),
            "Timeout: 60.0 seconds ...\n"
            "Listing queues for vhost / ...\n"
            "name\tdurable\tauto_delete\targuments\tconsumers\tpolicy\n"
            "q1\ttrue\tfalse\t[]\t1\t\n"
            "orders\tfalse\ttrue\t[{\"x-max-length\",10}, {\"x-queue-type\",\"classic\"}]\t0\t\n");
}

TEST(Format, QuietDropsTheBanner) {
  output_options o;
  o.quiet = true;
  EXPECT_EQ(listing("list_queues", queues, {}, o), "name\tmessages\nq1\t3\norders\t0\n");
}

TEST(Format, SilentDropsBannerAndHeader) {
  output_options o;
  o.silent = true;
  EXPECT_EQ(listing("list_queues", queues, {}, o), "q1\t3\norders\t0\n");
}

TEST(Format, NoTableHeadersKeepsTheBanner) {
  output_options o;
  o.no_table_headers = true;
  EXPECT_EQ(listing("list_queues", queues, {}, o),
            "Timeout: 60.0 seconds ...\nListing queues for vhost / ...\nq1\t3\norders\t0\n");
}

TEST(Format, JsonFormatter) {
  output_options o;
  o.json = true;
  EXPECT_EQ(listing("list_queues", queues, {"name", "messages", "durable", "arguments"}, o),
            "[\n"
            "{\"name\":\"q1\",\"messages\":3,\"durable\":true,\"arguments\":{}},\n"
            "{\"name\":\"orders\",\"messages\":0,\"durable\":false,\"arguments\":"
            "{\"x-max-length\":10,\"x-queue-type\":\"classic\"}}\n"
            "]\n");
  EXPECT_EQ(listing("list_vhosts", json::array(), {}, o), "[\n]\n");
}

TEST(Format, ListQueuesOtherVhost) {
  EXPECT_EQ(listing("list_queues", json::array(), {}, {}, "prod"),
            "Timeout: 60.0 seconds ...\nListing queues for vhost prod ...\nname\tmessages\n");
}

TEST(Format, ListExchanges) {
  json api = json::parse(R"j([
    {"name": "", "vhost": "/", "type": "direct", "durable": true},
    {"name": "amq.fanout", "vhost": "/", "type": "fanout", "durable": true},
    {"name": "logs", "vhost": "/", "type": "topic", "durable": false}
  ])j");
  EXPECT_EQ(listing("list_exchanges", api),
            "Listing exchanges for vhost / ...\n"
            "name\ttype\n"
            "\tdirect\n"
            "amq.fanout\tfanout\n"
            "logs\ttopic\n");
}

TEST(Format, ListBindingsMapsRabbitmqctlNamesToApiFields) {
  json api = json::parse(R"j([
    {"source": "", "vhost": "/", "destination": "q1", "destination_type": "queue",
     "routing_key": "q1", "arguments": {}, "properties_key": "q1"},
    {"source": "logs", "vhost": "/", "destination": "audit", "destination_type": "exchange",
     "routing_key": "#", "arguments": {"x-match": "all"}, "properties_key": "%23~abc"}
  ])j");
  EXPECT_EQ(listing("list_bindings", api),
            "Listing bindings for vhost /...\n"
            "source_name\tsource_kind\tdestination_name\tdestination_kind\trouting_key\targuments\n"
            "\texchange\tq1\tqueue\tq1\t[]\n"
            "logs\texchange\taudit\texchange\t#\t[{\"x-match\",\"all\"}]\n");
  output_options o;
  o.json = true;
  EXPECT_EQ(listing("list_bindings", api, {"source_name", "source_kind", "routing_key"}, o),
            "[\n"
            "{\"source_name\":\"\",\"source_kind\":\"exchange\",\"routing_key\":\"q1\"},\n"
            "{\"source_name\":\"logs\",\"source_kind\":\"exchange\",\"routing_key\":\"#\"}\n"
            "]\n");
}

TEST(Format, ListConnections) {
  json api = json::parse(R"j([
    {"name": "127.0.0.1:50000 -> 127.0.0.1:5672", "user": "guest", "peer_host": "127.0.0.1",
     "peer_port": 50000, "state": "running", "channels": 1, "vhost": "/"},
    {"name": "10.0.0.2:41000 -> 10.0.0.1:5672", "user": "app", "peer_host": "10.0.0.2",
     "peer_port": 41000, "state": "blocked", "channels": 0, "vhost": "/"}
  ])j");
  EXPECT_EQ(listing("list_connections", api),
            "Listing connections ...\n"
            "user\tpeer_host\tpeer_port\tstate\n"
            "guest\t127.0.0.1\t50000\trunning\n"
            "app\t10.0.0.2\t41000\tblocked\n");
  EXPECT_EQ(listing("list_connections", api, {"name", "channels"}),
            "Listing connections ...\n"
            "name\tchannels\n"
            "127.0.0.1:50000 -> 127.0.0.1:5672\t1\n"
            "10.0.0.2:41000 -> 10.0.0.1:5672\t0\n");
}

TEST(Format, ListChannelsNameStandsForPid) {
  json api = json::parse(R"j([
    {"name": "127.0.0.1:50000 -> 127.0.0.1:5672 (1)", "user": "guest", "consumer_count": 2,
     "messages_unacknowledged": 5, "number": 1, "vhost": "/"}
  ])j");
  EXPECT_EQ(listing("list_channels", api),
            "Listing channels ...\n"
            "name\tuser\tconsumer_count\tmessages_unacknowledged\n"
            "127.0.0.1:50000 -> 127.0.0.1:5672 (1)\tguest\t2\t5\n");
  EXPECT_EQ(listing("list_channels", api, {"pid", "number"}),
            "Listing channels ...\n"
            "pid\tnumber\n"
            "127.0.0.1:50000 -> 127.0.0.1:5672 (1)\t1\n");
}

TEST(Format, ListConsumers) {
  json api = json::parse(R"j([
    {"queue": {"name": "q1", "vhost": "/"}, "consumer_tag": "ctag1", "ack_required": true,
     "prefetch_count": 10, "active": true, "activity_status": "up", "exclusive": false,
     "arguments": {},
     "channel_details": {"name": "127.0.0.1:50000 -> 127.0.0.1:5672 (1)", "number": 1,
                         "connection_name": "127.0.0.1:50000 -> 127.0.0.1:5672",
                         "peer_host": "127.0.0.1", "peer_port": 50000, "user": "guest"
}
},
    {"queue": {"name": "q2", "vhost": "/"}, "consumer_tag": "amq.ctag-x", "ack_required": false,
     "prefetch_count": 0, "active": false, "activity_status": "waiting", "exclusive": true,
     "arguments": {"x-priority": 5},
     "channel_details": {"name": "127.0.0.1:50001 -> 127.0.0.1:5672 (2)"}}
  ])j");
  EXPECT_EQ(listing("list_consumers", api),
            "Listing consumers in vhost / ...\n"
            "queue_name\tchannel_pid\tconsumer_tag\tack_required\tprefetch_count\tactive\t"
            "arguments\n"
            "q1\t127.0.0.1:50000 -> 127.0.0.1:5672 (1)\tctag1\ttrue\t10\ttrue\t[]\n"
            "q2\t127.0.0.1:50001 -> 127.0.0.1:5672 (2)\tamq.ctag-x\tfalse\t0\tfalse\t"
            "[{\"x-priority\",5}]\n");
}

TEST(Format, ListUsersTagsAsAList) {
  // RabbitMQ 3.13 sends tags as a list; older versions as a comma-separated string.
  json api = json::parse(R"j([
    {"name": "guest", "password_hash": "x", "hashing_algorithm": "rabbit_password_hashing_sha256",
     "tags": ["administrator"], "limits": {}},
    {"name": "app", "password_hash": "y", "tags": []},
    {"name": "ops", "password_hash": "z", "tags": ["monitoring", "management"]}
  ])j");
  EXPECT_EQ(listing("list_users", api),
            "Listing users ...\n"
            "user\ttags\n"
            "guest\t[administrator]\n"
            "app\t[]\n"
            "ops\t[monitoring, management]\n");
}

TEST(Format, ListVhosts) {
  json api = json::parse(R"j([{"name": "/", "messages": 3}, {"name": "prod 1"}])j");
  EXPECT_EQ(listing("list_vhosts", api), "Listing vhosts ...\nname\n/\nprod 1\n");
  output_options o;
  o.silent = true;
  EXPECT_EQ(listing("list_vhosts", api, {}, o), "/\nprod 1\n");
}

TEST(Format, ListPermissionsOfOneVhost) {
  json api = json::parse(R"j([
    {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
    {"user": "app", "vhost": "prod", "configure": "", "write": "^app\\.", "read": ".*"},
    {"user": "app", "vhost": "/", "configure": "", "write": "", "read": "^logs$"}
  ])j");
  EXPECT_EQ(listing("list_permissions", api),
            "Listing permissions for vhost \"/\" ...\n"
            "user\tconfigure\twrite\tread\n"
            "guest\t.*\t.*\t.*\n"
            "app\t\t\t^logs$\n");
  EXPECT_EQ(listing("list_permissions", api, {}, {}, "prod"),
            "Listing permissions for vhost \"prod\" ...\n"
            "user\tconfigure\twrite\tread\n"
            "app\t\t^app\\.\t.*\n");
}

const json overview = json::parse(R"j({
  "node": "warren@host1", "rabbitmq_version": "3.13.7", "product_name": "Warren",
  "product_version": "0.1.0",
  "listeners": [
    {"node": "warren@host1", "protocol": "amqp", "ip_address": "0.0.0.0", "port": 5672},
    {"node": "warren@host1", "protocol": "http", "ip_address": "0.0.0.0", "port": 15672}
  ]
})j");
const json node = json::parse(R"j({
  "name": "warren@host1", "uptime": 3723000, "mem_used": 123456789, "mem_limit": 6700000000,
  "mem_alarm": false, "disk_free_alarm": true, "disk_free": 40000000,
  "disk_free_limit": 50000000, "fd_used": 37, "fd_total": 1048576
})j");

TEST(Format, Status) {
  EXPECT_EQ(format_status(overview, node, {}),
            "Status of node warren@host1 ...\n"
            "Runtime\n"
            "\n"
            "RabbitMQ version: 3.13.7\n"
            "Product: Warren 0.1.0\n"
            "Uptime (seconds): 3723\n"
            "\n"
            "Alarms\n"
            "\n"
            "Free disk space alarm on node warren@host1\n"
            "\n"
            "Memory\n"
            "\n"
            "Total memory used: 0.1235 gb\n"
            "Memory high watermark: computed to: 6.7000 gb\n"
            "\n"
            "File Descriptors\n"
            "\n"
            "Total: 37, limit: 1048576\n"
            "\n"
            "Free Disk Space\n"
            "\n"
            "Low free disk space watermark: 0.0500 gb\n"
            "Free disk space: 0.0400 gb\n"
            "\n"
            "Listeners\n"
            "\n"
            "Interface: 0.0.0.0, port: 5672, protocol: amqp, purpose: AMQP 0-9-1\n"
            "Interface: 0.0.0.0, port: 15672, protocol: http, purpose: HTTP API\n");
}

TEST(Format, StatusNamesThePrometheusListenerAsRabbitmqctlDoes) {
  json with = overview;
  with["listeners"].push_back({{"node", "warren@host1"},
                               {"protocol", "prometheus"},
                               {"ip_address", "::"},
                               {"port", 15692}});
  EXPECT_NE(format_status(with, node, {})
                .find("Interface: ::, port: 15692, protocol: prometheus, purpose: Prometheus "
                      "exporter API over HTTP\n"),
            std::string::npos);
}

TEST(Format, StatusQuietAndJson) {
  json calm = node;
  calm["disk_free_alarm"] = false;
  output_options q;
  q.quiet = true;
  std::string text = format_status(overview, calm, q);
  EXPECT_EQ(text.substr(0, 9), "Runtime\n\n");
  EXPECT_NE(text.find("Alarms\n\n(none)\n"), std::string::npos);
  output_options o;
  o.json = true;
  EXPECT_EQ(format_status(overview, node, o),
            "{\"alarms\":[\"Free disk space alarm on node warren@host1\"],\"disk_free\":40000000,"
            "\"disk_free_limit\":50000000,\"fd_total\":1048576,\"fd_used\":37,\"listeners\":["
            "{\"ip_address\":\"0.0.0.0\",\"node\":\"warren@host1\",\"port\":5672,\"protocol\":"
            "\"amqp\"},{\"ip_address\":\"0.0.0.0\",\"node\":\"warren@host1\",\"port\":15672,"
            "\"protocol\":\"http\"}],\"mem_limit\":6700000000,\"mem_used\":123456789,\"node\":"
            "\"warren@host1\",\"rabbitmq_version\":\"3.13.7\",\"uptime\":3723}\n");
}

TEST(Format, CommandLines) {
  EXPECT_EQ(format_lines({"Adding user \"bob\" ..."}, {}), "Adding user \"bob\" ...\n");
  output_options q;
  q.quiet = true;
  EXPECT_EQ(format_lines({"Adding user \"bob\" ..."}, q), "");
}

TEST(Format, Limits) {
  const json one =
      json::parse(R"([{"vhost": "/", "value": {"max-queues": 5, "max-connections": 2}}])");
  EXPECT_EQ(format_limits("Listing limits for vhost \"/\" ...", "", one, {}),
            "Listing limits for vhost \"/\" ...\n{\"max-connections\":2,\"max-queues\":5}\n");
  EXPECT_EQ(format_limits("Listing limits for vhost \"/\" ...", "", json::array(), {}),
            "Listing limits for vhost \"/\" ...\n");
  const json all = json::parse(R"([{"user": "a", "value": {"max-channels": 1}},
                                   {"user": "b", "value": {"max-connections": 0}}])");
  EXPECT_EQ(format_limits("Listing limits for all users ...", "user", all, {}),
            "Listing limits for all users ...\nuser\tlimits\na\t{\"max-channels\":1}\n"
            "b\t{\"max-connections\":0}\n");
  output_options silent;
  silent.silent = true;
  EXPECT_EQ(format_limits("x", "user", all, silent),
            "a\t{\"max-channels\":1}\nb\t{\"max-connections\":0}\n");
  output_options as_json;
  as_json.json = true;
  EXPECT_EQ(
      format_limits("x", "user", all, as_json),
      R"([{"limits":"{\"max-channels\":1}","user":"a"},{"limits":"{\"max-connections\":0}","user":"b"}])"
      "\n");
}

TEST(Format, CellText) {
  EXPECT_EQ(cell_text(json()), "");
  EXPECT_EQ(cell_text(json(true)), "true");
  EXPECT_EQ(cell_text(json(12)), "12");
  EXPECT_EQ(cell_text(json(0.5)), "0.5");
  EXPECT_EQ(cell_text(json::array({"a", "b"})), "[a, b]");
  EXPECT_EQ(cell_text(json::object()), "[]");
  EXPECT_EQ(cell_text(json{{"k", true}}), "[{\"k\",true}]");
}

TEST(Format, PathSegmentEncodesEveryReservedByte) {
  EXPECT_EQ(path_segment("/"), "%2F");
  EXPECT_EQ(path_segment("a b/c?d#e%f+g"), "a%20b%2Fc%3Fd%23e%25f%2Bg");
  EXPECT_EQ(path_segment("127.0.0.1:5000 -> 127.0.0.1:5672"),
            "127.0.0.1%3A5000%20-%3E%20127.0.0.1%3A5672");
  EXPECT_EQ(path_segment("Az09-._~"), "Az09-._~");
  EXPECT_EQ(path_segment("\xC3\xA9"), "%C3%A9");
}

TEST(Format, ErrorReason) {
  EXPECT_EQ(error_reason(404, R"j({"error":"Object Not Found","reason":"Not Found"})j"),
            "Not Found");
  EXPECT_EQ(error_reason(400, R"j({"error":"bad_request"})j"), "bad_request");
  EXPECT_EQ(error_reason(502, "Bad Gateway\r\n"), "Bad Gateway");
  EXPECT_EQ(error_reason(500, ""), "HTTP status 500");
}

TEST(Format, ClusterStatus) {
  json overview = {{"node", "a"}, {"cluster_name", "c1"}};
  json nodes = json::parse(R"js([
    {"name": "a", "running": false, "warren_cluster_state": "fenced",
     "warren_fenced_reason": "lease 1 not renewed within 2 s (etcd unreachable)",
     "applications": [{"version": "0.1.0"}],
     "listeners": [{"protocol": "amqp", "ip_address": "127.0.0.1", "port": 5672}]},
    {"name": "b", "running": true, "mem_alarm": true, "applications": [{"version": "0.1.0"}]}])js");
  EXPECT_EQ(format_cluster_status(overview, nodes, {}),
            "Cluster status of node a ...\n"
            "Basics\n\nCluster name: c1\n"
            "\nDisk Nodes\n\na\nb\n"
            "\nRunning Nodes\n\nb\n"
            "\nVersions\n\na: Warren 0.1.0\nb: Warren 0.1.0\n"
            "\nAlarms\n\nMemory alarm on node b\n"
            "\nNetwork Partitions\n\n(none)\n"
            "\nFenced Nodes\n\na: lease 1 not renewed within 2 s (etcd unreachable)\n"
            "\nListeners\n\nNode: a, interface: 127.0.0.1, port: 5672, protocol: amqp\n");
  output_options j;
  j.json = true;
  json got = json::parse(format_cluster_status(overview, nodes, j));
  EXPECT_EQ(got["running_nodes"], json::array({"b"}));
  EXPECT_EQ(got["disk_nodes"], json::array({"a", "b"}));
  EXPECT_EQ(got["cluster_name"], "c1");
}

}  // namespace
}  // namespace warren::ctl
