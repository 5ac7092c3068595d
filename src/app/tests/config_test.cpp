// Configuration precedence: defaults < TOML file < flags; bad input is refused with a message.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "app/config.hpp"

namespace warren::app {
namespace {

std::variant<config, exit_request> parse(std::vector<std::string> args) {
  args.insert(args.begin(), "warren");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return parse_config(int(argv.size()), argv.data());
}

std::string write_toml(const std::string& text) {
  // One file per test: CTest runs the tests of this binary in parallel processes.
  std::string path = testing::TempDir() + "/warren-config-test-" +
                     testing::UnitTest::GetInstance()->current_test_info()->name() + ".toml";
  std::ofstream(path) << text;
  return path;
}

TEST(Config, Defaults) {
  auto r = parse({});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  const auto& c = std::get<config>(r);
  EXPECT_EQ(c.amqp_port, 5672);
  EXPECT_EQ(c.http_port, 15672);
  EXPECT_EQ(c.web_port, 8080);
  EXPECT_EQ(c.prometheus_port, 15692);
  EXPECT_EQ(c.data_dir, "./var");
  EXPECT_GE(c.workers, 1u);
  EXPECT_EQ(c.default_user, "guest");
}

TEST(Config, FileThenFlagsWin) {
  std::string path = write_toml(
      "amqp_port = 6000\nhttp_port = 16000\ndata_dir = \"/tmp/w\"\n"
      "workers = 3\nhandshake_timeout = 2.5\nprometheus_port = 16692\n");
  auto r = parse({"--config", path, "--amqp-port", "7000"});
  ASSERT_TRUE(std::holds_alternative<config>(r)) << std::get<exit_request>(r).text;
  const auto& c = std::get<config>(r);
  EXPECT_EQ(c.amqp_port, 7000);  // flag wins
  EXPECT_EQ(c.http_port, 16000);
  EXPECT_EQ(c.data_dir, "/tmp/w");
  EXPECT_EQ(c.workers, 3u);
  EXPECT_DOUBLE_EQ(c.handshake_timeout, 2.5);
  EXPECT_EQ(c.prometheus_port, 16692);
  r = parse({"--config", path, "--prometheus-port", "0"});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  EXPECT_EQ(std::get<config>(r).prometheus_port, 0);
}

TEST(Config, CtlSocketDefaultsToTheDataDirAndEmptyMeansNone) {
  auto r = parse({"--data-dir", "/tmp/d"});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  EXPECT_EQ(std::get<config>(r).ctl_socket, "/tmp/d/warren.sock");
  r = parse({"--config", write_toml("data_dir = \"/tmp/e\"\n")});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  EXPECT_EQ(std::get<config>(r).ctl_socket, "/tmp/e/warren.sock");
  r = parse({"--config", write_toml("ctl_socket = \"/run/w.sock\"\n")});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  EXPECT_EQ(std::get<config>(r).ctl_socket, "/run/w.sock");
  r = parse({"--ctl-socket", ""});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  EXPECT_EQ(std::get<config>(r).ctl_socket, "");
}

TEST(Config, BadFileIsRefused) {
  auto unknown = parse({"--config", write_toml("amqp_prot = 1\n")});
  ASSERT_TRUE(std::holds_alternative<exit_request>(unknown));
  EXPECT_NE(std::get<exit_request>(unknown).text.find("amqp_prot"), std::string::npos);
  auto range = parse({"--config", write_toml("amqp_port = 70000\n")});
  ASSERT_TRUE(std::holds_alternative<exit_request>(range));
  auto type = parse({"--config", write_toml("data_dir = 5\n")});
  ASSERT_TRUE(std::holds_alternative<exit_request>(type));
  auto syntax = parse({"--config", write_toml("amqp_port = \n")});
  ASSERT_TRUE(std::holds_alternative<exit_request>(syntax));
  EXPECT_NE(std::get<exit_request>(syntax).code, 0);
}

TEST(Config, MaxConnectionsIsUnlimitedByDefaultAndTakesInfinityOrACount) {
  auto r = parse({});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  EXPECT_EQ(std::get<config>(r).max_connections, -1);  // RabbitMQ's default: infinity
  r = parse({"--max-connections", "100"});
  ASSERT_TRUE(std::holds_alternative<config>(r)) << std::get<exit_request>(r).text;
  EXPECT_EQ(std::get<config>(r).max_connections, 100);
  r = parse({"--max-connections", "0"});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  EXPECT_EQ(std::get<config>(r).max_connections, 0);
  r = parse({"--max-connections", "infinity"});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  EXPECT_EQ(std::get<config>(r).max_connections, -1);
  r = parse({"--config", write_toml("max_connections = 7\n")});
  ASSERT_TRUE(std::holds_alternative<config>(r)) << std::get<exit_request>(r).text;
  EXPECT_EQ(std::get<config>(r).max_connections, 7);
  r = parse({"--config", write_toml("max_connections = \"infinity\"\n"), "--max-connections", "3"});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  EXPECT_EQ(std::get<config>(r).max_connections, 3);  // the flag wins
  for (const char* bad : {"-1", "ten", "1.5", ""}) {
    auto refused = parse({"--max-connections", bad});
    ASSERT_TRUE(std::holds_alternative<exit_request>(refused)) << bad;
    EXPECT_NE(std::get<exit_request>(refused).text.find("max-connections"), std::string::npos)
        << std::get<exit_request>(refused).text;
  }
  auto refused = parse({"--config", write_toml("max_connections = -5\n")});
  ASSERT_TRUE(std::holds_alternative<exit_request>(refused));
  EXPECT_NE(std::get<exit_request>(refused).text.find("max_connections"), std::string::npos);
}

TEST(Config, AlarmDefaultsAreRabbitMQs) {
  auto r = parse({});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  const auto& c = std::get<config>(r);
  EXPECT_DOUBLE_EQ(c.vm_memory_high_watermark, 0.4);
  EXPECT_EQ(c.vm_memory_high_watermark_absolute, 0u);
  EXPECT_EQ(c.disk_free_limit, 50'000'000u);
}

TEST(Config, AlarmFlagsTakeSizesAndFractions) {
  auto r = parse({"--vm-memory-high-watermark", "0.25", "--vm-memory-high-watermark-absolute",
                  "200MiB", "--disk-free-limit", "1GB"});
  ASSERT_TRUE(std::holds_alternative<config>(r)) << std::get<exit_request>(r).text;
  const auto& c = std::get<config>(r);
  EXPECT_DOUBLE_EQ(c.vm_memory_high_watermark, 0.25);
  EXPECT_EQ(c.vm_memory_high_watermark_absolute, 200u << 20);
  EXPECT_EQ(c.disk_free_limit, 1'000'000'000u);
}

TEST(Config, AlarmKeysInTheFileTakeStringsOrNumbers) {
  std::string path = write_toml(
      "vm_memory_high_watermark = 0.6\nvm_memory_high_watermark_absolute = \"1G\"\n"
      "disk_free_limit = 123456\n");
  auto r = parse({"--config", path});
  ASSERT_TRUE(std::holds_alternative<config>(r)) << std::get<exit_request>(r).text;
  const auto& c = std::get<config>(r);
  EXPECT_DOUBLE_EQ(c.vm_memory_high_watermark, 0.6);
  EXPECT_EQ(c.vm_memory_high_watermark_absolute, 1u << 30);
  EXPECT_EQ(c.disk_free_limit, 123456u);
  auto flag_wins = parse({"--config", path, "--disk-free-limit", "2kB"});
  ASSERT_TRUE(std::holds_alternative<config>(flag_wins));
  EXPECT_EQ(std::get<config>(flag_wins).disk_free_limit, 2000u);
}

TEST(Config, BadAlarmValuesAreRefusedWithTheExpectedForm) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"--vm-memory-high-watermark", "1.5"},
        {"--vm-memory-high-watermark", "40%"},
        {"--vm-memory-high-watermark-absolute", "12XB"},
        {"--disk-free-limit", "-5"},
        {"--disk-free-limit", "1.5GB"}}) {
    auto r = parse(args);
    ASSERT_TRUE(std::holds_alternative<exit_request>(r)) << args[0] << " " << args[1];
    const auto& e = std::get<exit_request>(r);
    EXPECT_NE(e.code, 0);
    EXPECT_NE(e.text.find(args[0]), std::string::npos) << e.text;
    EXPECT_NE(e.text.find("expected"), std::string::npos) << e.text;
  }
  for (const char* toml :
       {"disk_free_limit = \"lots\"\n", "disk_free_limit = -1\n",
        "vm_memory_high_watermark = 2.0\n", "vm_memory_high_watermark_absolute = true\n"}) {
    auto r = parse({"--config", write_toml(toml)});
    ASSERT_TRUE(std::holds_alternative<exit_request>(r)) << toml;
    EXPECT_NE(std::get<exit_request>(r).text.find("expected"), std::string::npos);
  }
}

TEST(Config, TlsDefaultsAreRabbitMQsPortsAndOff) {
  auto r = parse({});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  const auto& c = std::get<config>(r);
  EXPECT_EQ(c.amqps_port, 5671);
  EXPECT_EQ(c.https_port, 15671);
  EXPECT_EQ(c.web_tls_port, 8443);
  EXPECT_TRUE(c.tls_cert.empty());
  EXPECT_EQ(c.tls_verify, "none");
  EXPECT_FALSE(c.tls_fail_if_no_peer_cert);
}

TEST(Config, TlsKeysInTheFileAndFlagsWin) {
  auto path = write_toml(
      "tls_cert = \"/etc/w/cert.pem\"\ntls_key = \"/etc/w/key.pem\"\ntls_ca = \"/etc/w/ca.pem\"\n"
      "tls_verify = \"peer\"\ntls_fail_if_no_peer_cert = true\namqps_port = 0\n"
      "https_port = 1\nweb_tls_port = 2\n");
  auto r = parse({"--config", path, "--tls-key", "/run/key.pem", "--web-tls-port", "9443"});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  const auto& c = std::get<config>(r);
  EXPECT_EQ(c.tls_cert, "/etc/w/cert.pem");
  EXPECT_EQ(c.tls_key, "/run/key.pem");
  EXPECT_EQ(c.tls_ca, "/etc/w/ca.pem");
  EXPECT_EQ(c.tls_verify, "peer");
  EXPECT_TRUE(c.tls_fail_if_no_peer_cert);
  EXPECT_EQ(c.amqps_port, 0);
  EXPECT_EQ(c.https_port, 1);
  EXPECT_EQ(c.web_tls_port, 9443);
}

TEST(Config, TlsVerifyIsNoneOrPeer) {
  auto flag = parse({"--tls-verify", "sometimes"});
  ASSERT_TRUE(std::holds_alternative<exit_request>(flag));
  EXPECT_NE(std::get<exit_request>(flag).text.find("none or peer"), std::string::npos);
  auto file = parse({"--config", write_toml("tls_verify = \"verify_peer\"\n")});
  ASSERT_TRUE(std::holds_alternative<exit_request>(file));
  EXPECT_NE(std::get<exit_request>(file).text.find("none or peer"), std::string::npos);
}

TEST(Config, BusyWaitIsMicrosecondsUpToATenthOfASecond) {
  auto r = parse({});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  EXPECT_EQ(std::get<config>(r).busy_wait_us, config{}.busy_wait_us);
  r = parse({"--busy-wait-us", "0"});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  EXPECT_EQ(std::get<config>(r).busy_wait_us, 0u);
  r = parse({"--config", write_toml("busy_wait_us = 250\n")});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  EXPECT_EQ(std::get<config>(r).busy_wait_us, 250u);
  auto big = parse({"--busy-wait-us", "100001"});
  ASSERT_TRUE(std::holds_alternative<exit_request>(big));
  EXPECT_EQ(std::get<exit_request>(big).code, 2);
  EXPECT_NE(std::get<exit_request>(big).text.find("from 0 to 100000"), std::string::npos);
  auto negative = parse({"--busy-wait-us", "-5"});
  ASSERT_TRUE(std::holds_alternative<exit_request>(negative));
  EXPECT_NE(std::get<exit_request>(negative).code, 0);
}

TEST(Config, HelpListsTheOptionsAndUnknownFlagsFail) {
  auto help = parse({"--help"});
  ASSERT_TRUE(std::holds_alternative<exit_request>(help));
  const auto& h = std::get<exit_request>(help);
  EXPECT_EQ(h.code, 0);
  for (const char* o :
       {"--amqp-port", "--http-port", "--web-port", "--data-dir", "--workers", "--config",
        "--heartbeat", "--loopback-networks", "--vm-memory-high-watermark",
        "--vm-memory-high-watermark-absolute", "--disk-free-limit"})
    EXPECT_NE(h.text.find(o), std::string::npos) << o;
  auto bad = parse({"--no-such-flag"});
  ASSERT_TRUE(std::holds_alternative<exit_request>(bad));
  EXPECT_NE(std::get<exit_request>(bad).code, 0);
}

TEST(Config, ClusterKeysFlagsAndNames) {
  // Without etcd: a single node, no cluster name.
  auto r = parse({});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  EXPECT_EQ(std::get<config>(r).etcd_endpoints, "");
  EXPECT_EQ(std::get<config>(r).cluster_name, "");
  EXPECT_EQ(std::get<config>(r).etcd_lease_ttl, 10u);
  // TOML keys, a flag over the file; joining defaults the cluster's name to "warren".
  std::string path = write_toml(
      "node_name = \"a\"\netcd_endpoints = \"http://127.0.0.1:2379\"\netcd_lease_ttl = 3\n");
  r = parse({"--config", path, "--node-name", "b@host"});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  const auto& c = std::get<config>(r);
  EXPECT_EQ(c.node_name, "b@host");
  EXPECT_EQ(c.etcd_endpoints, "http://127.0.0.1:2379");
  EXPECT_EQ(c.etcd_lease_ttl, 3u);
  EXPECT_EQ(c.cluster_name, "warren");
  // Names are parts of etcd keys: no slash.
  r = parse({"--node-name", "a/b"});
  ASSERT_TRUE(std::holds_alternative<exit_request>(r));
  EXPECT_NE(std::get<exit_request>(r).text.find("--node-name 'a/b'"), std::string::npos);
  r = parse({"--cluster-name", "c 1"});
  ASSERT_TRUE(std::holds_alternative<exit_request>(r));
  r = parse({"--etcd-lease-ttl", "0"});
  ASSERT_TRUE(std::holds_alternative<exit_request>(r));
}

TEST(Config, AdvertiseAddress) {
  const char* etcd = "http://127.0.0.1:2379";
  auto r = parse({"--etcd-endpoints", etcd});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  EXPECT_EQ(std::get<config>(r).advertise_address, "");
  for (const char* a : {"10.0.0.7", "node-1.example.com", "fd00::7"}) {
    r = parse({"--etcd-endpoints", etcd, "--advertise-address", a});
    ASSERT_TRUE(std::holds_alternative<config>(r)) << a;
    EXPECT_EQ(std::get<config>(r).advertise_address, a);
  }
  std::string path = write_toml(
      "etcd_endpoints = \"http://127.0.0.1:2379\"\n"
      "advertise_address = \"10.0.0.8\"\n");
  r = parse({"--config", path});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  EXPECT_EQ(std::get<config>(r).advertise_address, "10.0.0.8");
  // Not a host: refused, naming the flag.
  for (const char* a : {"http://10.0.0.7", "a b", "10.0.0.7/24"}) {
    r = parse({"--etcd-endpoints", etcd, "--advertise-address", a});
    ASSERT_TRUE(std::holds_alternative<exit_request>(r)) << a;
    EXPECT_EQ(std::get<exit_request>(r).code, 2);
    EXPECT_NE(std::get<exit_request>(r).text.find("--advertise-address"), std::string::npos);
  }
  // Only in a cluster.
  r = parse({"--advertise-address", "10.0.0.7"});
  ASSERT_TRUE(std::holds_alternative<exit_request>(r));
  EXPECT_NE(std::get<exit_request>(r).text.find("only in a cluster"), std::string::npos);
}

}  // namespace
}  // namespace warren::app
