// Command-line parsing and scenario presets for warren-perf.
#include "warren-perf/options.hpp"

#include <CLI/CLI.hpp>
#include <boost/asio/ssl/context.hpp>

#include <functional>
#include <map>
#include <vector>

namespace warren::perf {

namespace {

// A scenario sets options the user did not give on the command line. The table is the
// documentation too: --help prints it.
struct scenario {
  std::string name;
  std::string description;
  std::function<void(options&, const std::function<bool(const char*)>& given)> apply;
};

template <typename T>
void preset(options& o, T options::*field, T value, const char* flag,
            const std::function<bool(const char*)>& given) {
  if (!given(flag)) o.*field = value;
}

const std::vector<scenario>& scenarios() {
  using G = const std::function<bool(const char*)>&;
  static const std::vector<scenario> all = {
      {"throughput", "1 producer, 1 consumer, 16 B, prefetch 200, ack every 50, no confirms",
       [](options& o, G g) {
         preset(o, &options::producers, 1, "--producers", g);
         preset(o, &options::consumers, 1, "--consumers", g);
         preset(o, &options::size, size_t(16), "--size", g);
         preset(o, &options::prefetch, uint16_t(200), "--prefetch", g);
         preset(o, &options::multi_ack_every, uint32_t(50), "--multi-ack-every", g);
       }},
      {"fanout100", "1 producer, fanout exchange to 100 queues, 100 consumers, 16 B, prefetch 200",
       [](options& o, G g) {
         preset(o, &options::producers, 1, "--producers", g);
         preset(o, &options::fanout, 100, "--fanout", g);
         preset(o, &options::size, size_t(16), "--size", g);
         preset(o, &options::prefetch, uint16_t(200), "--prefetch", g);
         preset(o, &options::multi_ack_every, uint32_t(50), "--multi-ack-every", g);
       }},
      {"latency20k", "1 producer at 20 000 msg/s, 1 consumer, 16 B, prefetch 200, ack every 50",
       [](options& o, G g) {
         preset(o, &options::producers, 1, "--producers", g);
         preset(o, &options::consumers, 1, "--consumers", g);
         preset(o, &options::rate, 20000.0, "--rate", g);
         preset(o, &options::size, size_t(16), "--size", g);
         preset(o, &options::prefetch, uint16_t(200), "--prefetch", g);
         preset(o, &options::multi_ack_every, uint32_t(50), "--multi-ack-every", g);
       }},
      {"persistent-confirms",
       "1 producer, 1 consumer, 1 KiB persistent to a durable queue, confirm window 100",
       [](options& o, G g) {
         preset(o, &options::producers, 1, "--producers", g);
         preset(o, &options::consumers, 1, "--consumers", g);
         preset(o, &options::size, size_t(1024), "--size", g);
         preset(o, &options::persistent, true, "--persistent", g);
         preset(o, &options::confirm, uint32_t(100), "--confirm", g);
         preset(o, &options::prefetch, uint16_t(200), "--prefetch", g);
         preset(o, &options::multi_ack_every, uint32_t(50), "--multi-ack-every", g);
       }},
  };
  return all;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    int hi = hex_digit(in[i + 1]), lo = hex_digit(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(char(hi * 16 + lo));
    i += 2;
  }
  return true;
}

}  // namespace

bool parse_uri(const std::string& uri, broker_address& out, std::string& error) {
  std::string_view s(uri);
  if (s.starts_with("amqps://")) {
    // The caller makes the TLS context; the port defaults to AMQPS's.
    if (!out.tls)
      out.tls = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_client);
    out.port = 5671;
    s.remove_prefix(8);
  } else if (s.starts_with("amqp://")) {
    s.remove_prefix(7);
  } else {
    error = "only amqp:// and amqps:// URIs are supported";
    return false;
  }
  std::string_view authority = s.substr(0, s.find('/'));
  std::string_view path = authority.size() < s.size() ? s.substr(authority.size() + 1) : "";
  if (auto at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    authority.remove_prefix(at + 1);
    auto colon = userinfo.find(':');
    if (!percent_decode(userinfo.substr(0, colon), out.user) ||
        (colon != std::string_view::npos &&
         !percent_decode(userinfo.substr(colon + 1), out.password))) {
      error = "bad percent-encoding in the user or password";
      return false;
    }
  }
  if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    std::string port(authority.substr(colon + 1));
    authority = authority.substr(0, colon);
    try {
      size_t used = 0;
      int p = std::stoi(port, &used);
      if (used != port.size() || p <= 0 || p > 65535) throw std::out_of_range(port);
      out.port = uint16_t(p);
    } catch (const std::exception&) {
      error = "bad port '" + port + "'";
      return false;
    }
  }
  if (!authority.empty()) out.host = std::string(authority);
  // amqp://host and amqp://host/ both mean the default vhost "/"; use %2F to spell "/" otherwise.
  if (!path.empty() && !percent_decode(path, out.vhost)) {
    error = "bad percent-encoding in the vhost";
    return false;
  }
  return true;
}

std::variant<options, usage_exit> parse_options(int argc, char** argv) {
  options o;
  CLI::App app{
      "warren-perf: AMQP 0-9-1 load generator (like RabbitMQ's PerfTest) for any 0-9-1 broker. "
      "Each producer and consumer is one connection with one channel; a few I/O threads drive "
      "them all.",
      "warren-perf"};
  std::string uri;
  std::string footer = "\nScenarios (--scenario NAME presets options not given explicitly):\n";
  std::vector<std::string> names;
  for (const auto& s : scenarios()) {
    footer += "  " + s.name + std::string(22 - std::min<size_t>(21, s.name.size()), ' ') +
              s.description + "\n";
    names.push_back(s.name);
  }
  app.footer(footer);

  auto& a = o.address;
  app.add_option("--uri", uri,
                 "amqp://user:pass@host:port/vhost, or amqps:// for TLS (overrides the options "
                 "below)");
  bool tls = false;
  std::string tls_ca;
  app.add_flag("--tls", tls, "Connect with TLS (AMQPS); also implied by an amqps:// URI");
  app.add_option("--tls-ca", tls_ca,
                 "PEM file of CAs to verify the broker's certificate and name with (without it: "
                 "no verification)");
  app.add_option("--host", a.host, "Broker host")->capture_default_str();
  app.add_option("--port", a.port, "Broker AMQP port")->capture_default_str();
  app.add_option("--user", a.user, "User")->capture_default_str();
  app.add_option("--password", a.password, "Password")->capture_default_str();
  app.add_option("--vhost", a.vhost, "Virtual host")->capture_default_str();
  app.add_option("--scenario", o.scenario, "Named preset (see below)")->check(CLI::IsMember(names));
  app.add_option("-x,--producers", o.producers, "Producer connections")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  app.add_option("-y,--consumers", o.consumers, "Consumer connections")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  app.add_option("--queues", o.queues,
                 "Queues perf-q-0..N-1 (see --prefix), declared and deleted by the tool")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--fanout", o.fanout,
                 "One fanout exchange bound to N queues, each with its own consumer (0: off)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  app.add_option("-s,--size", o.size, "Message body bytes (the first 8 carry the send time)")
      ->capture_default_str()
      ->check(CLI::Range(size_t(0), size_t(128) << 20));
  app.add_option("-r,--rate", o.rate, "Messages per second per producer (0: unlimited)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e9));
  app.add_option("-q,--prefetch", o.prefetch, "basic.qos prefetch count (0: none)")
      ->capture_default_str();
  app.add_option("--multi-ack-every", o.multi_ack_every,
                 "Ack with multiple=true every N deliveries (1: ack each)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 65535u));
  app.add_flag("-a,--autoack", o.autoack, "Consume with no-ack");
  app.add_option("-c,--confirm", o.confirm, "Publisher-confirm window (0: no confirms)")
      ->capture_default_str()
      ->check(CLI::Range(0u, 1u << 20));
  app.add_flag("--persistent", o.persistent, "delivery-mode 2 and durable queues/exchange");
  app.add_flag("--durable", o.durable, "Durable queues/exchange (implied by --persistent)");
  app.add_flag("--mandatory", o.mandatory, "Publish with mandatory=true (counts basic.return)");
  app.add_option("-z,--duration", o.duration, "Seconds to run")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 86400.0));
  app.add_option("-C,--pmessages", o.pmessages,
                 "Each producer stops after N messages (0: no limit). With no consumers the run "
                 "then ends once every producer has sent, and with confirms had settled, its N")
      ->capture_default_str();
  app.add_flag("--keep-queues", o.keep_queues,
               "Declare the queues without purging them and leave them (with their messages) "
               "at the end: fill a backlog in one run, drain it in another");
  app.add_option("--threads", o.threads, "I/O threads (0: min(cores, connections))")
      ->capture_default_str()
      ->check(CLI::Range(0, 256));
  app.add_option("--prefix", o.prefix,
                 "Name prefix of the queues (<prefix>q-N) and exchange (<prefix>fanout): two runs "
                 "against one broker need different ones")
      ->capture_default_str();
  app.add_option("--idle", o.idle,
                 "Idle connections (handshake and a channel, then silence), open before the "
                 "measured window and closed after it")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  app.add_option("--connect-rate", o.connect_rate,
                 "Idle connections opened per second (0: at once)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e6));
  app.add_option(
         "--churn", o.churn,
         "Churning connections: each opens a connection and channel, closes and reopens the "
         "channel --channel-cycles times, closes the connection, and again, for the run")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000));
  app.add_option("--channel-cycles", o.channel_cycles,
                 "channel.close + channel.open pairs per churn connection")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  app.add_flag("--json", o.json,
               "Print the final summary as one JSON line on stdout (progress goes to stderr)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return usage_exit{app.exit(e)};
  }
  if (!uri.empty()) {
    std::string error;
    if (!parse_uri(uri, o.address, error)) {
      std::fprintf(stderr, "--uri: %s\n", error.c_str());
      return usage_exit{2};
    }
  }
  if (tls || !tls_ca.empty() || o.address.tls) {
    auto ctx = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_client);
    boost::system::error_code ec;
    if (!tls_ca.empty()) {
      ctx->load_verify_file(tls_ca, ec);
      if (ec) {
        std::fprintf(stderr, "--tls-ca %s: %s\n", tls_ca.c_str(), ec.message().c_str());
        return usage_exit{2};
      }
      ctx->set_verify_mode(boost::asio::ssl::verify_peer);
    } else {
      ctx->set_verify_mode(boost::asio::ssl::verify_none);
    }
    o.address.tls = std::move(ctx);
  }
  auto given = [&](const char* flag) { return app.get_option(flag)->count() > 0; };
  for (const auto& s : scenarios())
    if (s.name == o.scenario) s.apply(o, given);
  if (o.fanout > 0) {
    o.queues = o.fanout;
    if (!given("--consumers")) o.consumers = o.fanout;
  }
  if (o.persistent) o.durable = true;
  return o;
}

}  // namespace warren::perf
