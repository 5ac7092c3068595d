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
  std::string path = testing::TempDir() + "/warren-config-test.toml";
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
  EXPECT_EQ(c.data_dir, "./var");
  EXPECT_GE(c.workers, 1u);
  EXPECT_EQ(c.default_user, "guest");
}

TEST(Config, FileThenFlagsWin) {
  std::string path = write_toml(
      "amqp_port = 6000\nhttp_port = 16000\ndata_dir = \"/tmp/w\"\n"
      "workers = 3\nhandshake_timeout = 2.5\n");
  auto r = parse({"--config", path, "--amqp-port", "7000"});
  ASSERT_TRUE(std::holds_alternative<config>(r)) << std::get<exit_request>(r).text;
  const auto& c = std::get<config>(r);
  EXPECT_EQ(c.amqp_port, 7000);  // flag wins
  EXPECT_EQ(c.http_port, 16000);
  EXPECT_EQ(c.data_dir, "/tmp/w");
  EXPECT_EQ(c.workers, 3u);
  EXPECT_DOUBLE_EQ(c.handshake_timeout, 2.5);
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

TEST(Config, HelpListsTheOptionsAndUnknownFlagsFail) {
  auto help = parse({"--help"});
  ASSERT_TRUE(std::holds_alternative<exit_request>(help));
  const auto& h = std::get<exit_request>(help);
  EXPECT_EQ(h.code, 0);
  for (const char* o : {"--amqp-port", "--http-port", "--web-port", "--data-dir", "--workers",
                        "--config", "--heartbeat", "--loopback-networks"})
    EXPECT_NE(h.text.find(o), std::string::npos) << o;
  auto bad = parse({"--no-such-flag"});
  ASSERT_TRUE(std::holds_alternative<exit_request>(bad));
  EXPECT_NE(std::get<exit_request>(bad).code, 0);
}

}  // namespace
}  // namespace warren::app
