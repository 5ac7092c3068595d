// rmq-perf: a load generator on rabbitmq-c (librabbitmq), the C client many brokers' users run,
// so that Warren is measured with a client that is not its own (warren-perf shares Warren's AMQP
// codec and could flatter it). Each producer and each consumer is one thread with one blocking
// connection, as an application using librabbitmq would be.
//
// A message's first 8 bytes carry the monotonic time it was published (same machine), so a
// consumer measures end-to-end latency. Counts are taken after --warmup seconds, for --duration
// seconds; one JSON line goes to stdout.
//
//   rmq-perf --port 5672 --size 16 --prefetch 200 --ack-every 50 --duration 15
//   rmq-perf --port 5672 --size 1024 --persistent --confirm 100
//   rmq-perf --port 5672 --rate 250000 --ack-every 50          # latency at an offered rate
//   rmq-perf --port 5672 --producers 8 --consumers 8 --queues 8
//   rmq-perf --port A --producer-port B --consumer-port C --broker-pid PA --broker-pid PB ...
#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace {

struct options {
  std::string host = "127.0.0.1";
  int port = 5672;
  // 0: --port. Producers and consumers may talk to other nodes of a cluster than the one the
  // queues are declared on (bench/cluster_perf.py).
  int producer_port = 0;
  int consumer_port = 0;
  std::string user = "guest";
  std::string password = "guest";
  std::string vhost = "/";
  std::string queue_prefix = "rmq-perf";
  // Empty: the default exchange. Else a direct exchange of this name, declared, each queue bound
  // to it with its own name as the key, and published to.
  std::string exchange;
  int producers = 1;
  int consumers = 1;
  int queues = 1;
  size_t size = 16;
  int prefetch = 200;
  int ack_every = 50;  // 0: autoack
  bool persistent = false;
  int confirm = 0;  // outstanding confirms per producer; 0: no confirms
  double rate = 0;  // messages per second over all producers; 0: as fast as possible
  double duration = 15;
  double warmup = 2;
  // CPU time of these processes (all their threads) is read over the window; the first is "the
  // broker" of the summary fields, each gets its own figures (a cluster's nodes).
  std::vector<int> broker_pids;
};

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

void check_rpc(amqp_connection_state_t c, const char* what) {
  amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
  if (r.reply_type == AMQP_RESPONSE_NORMAL) return;
  std::string detail;
  if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
    detail = amqp_error_string2(r.library_error);
  else if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD || r.reply.id == AMQP_CHANNEL_CLOSE_METHOD)
    detail = "closed by the broker";
  throw std::runtime_error(std::string(what) + ": " + detail);
}

// One connection with channel 1 open.
struct connection {
  amqp_connection_state_t c = amqp_new_connection();

  connection(const options& o, int port) {
    amqp_socket_t* s = amqp_tcp_socket_new(c);
    if (!s || amqp_socket_open(s, o.host.c_str(), port) != AMQP_STATUS_OK)
      throw std::runtime_error("cannot connect to " + o.host + ":" + std::to_string(port));
    amqp_rpc_reply_t r = amqp_login(c, o.vhost.c_str(), 0, 131072, 0, AMQP_SASL_METHOD_PLAIN,
                                    o.user.c_str(), o.password.c_str());
    if (r.reply_type != AMQP_RESPONSE_NORMAL) throw std::runtime_error("login refused");
    amqp_channel_open(c, 1);
    check_rpc(c, "channel.open");
  }
  ~connection() {
    amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
  }
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
};

std::string queue_name(const options& o, int i) {
  return o.queue_prefix + "-" + std::to_string(i);
}

struct shared_state {
  std::atomic<bool> stop{false};
  int64_t measure_from = 0;  // ns; set before the threads start
  int64_t measure_to = 0;
  std::atomic<uint64_t> published{0};  // inside the window
  std::atomic<uint64_t> consumed{0};
  std::mutex latency_mutex;
  std::vector<uint32_t> latencies_us;  // consumed inside the window
  std::mutex error_mutex;
  std::string error;

  void fail(const std::string& e) {
    std::lock_guard lock(error_mutex);
    if (error.empty()) error = e;
    stop = true;
  }
};

bool in_window(const shared_state& s, int64_t t) {
  return t >= s.measure_from && t < s.measure_to;
}

// Waits for basic.ack frames until at most `keep` confirms are outstanding.
void wait_confirms(amqp_connection_state_t c, uint64_t& acked, uint64_t sent, uint64_t keep,
                   const shared_state& s) {
  while (sent - acked > keep && !s.stop) {
    amqp_frame_t f;
    timeval tv{1, 0};
    int rc = amqp_simple_wait_frame_noblock(c, &f, &tv);
    if (rc == AMQP_STATUS_TIMEOUT) continue;
    if (rc != AMQP_STATUS_OK) throw std::runtime_error("waiting for confirms: connection lost");
    if (f.frame_type != AMQP_FRAME_METHOD) continue;
    if (f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
      auto* a = static_cast<amqp_basic_ack_t*>(f.payload.method.decoded);
      acked = std::max<uint64_t>(acked, a->delivery_tag);
    } else if (f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
      throw std::runtime_error("a publish was nacked");
    } else if (f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
               f.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD) {
      throw std::runtime_error("closed by the broker while publishing");
    }
  }
}

void producer(const options& o, int index, shared_state& s) {
  try {
    connection conn(o, o.producer_port ? o.producer_port : o.port);
    amqp_connection_state_t c = conn.c;
    if (o.confirm > 0) {
      amqp_confirm_select(c, 1);
      check_rpc(c, "confirm.select");
    }
    std::string q = queue_name(o, index % o.queues);
    std::vector<char> body(std::max<size_t>(o.size, 8), 'x');
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.delivery_mode = o.persistent ? 2 : 1;
    // With --rate, each producer sends its share in batches of 1 ms.
    double per_ns = o.rate > 0 ? o.rate / o.producers / 1e9 : 0;
    int64_t start = now_ns();
    uint64_t sent = 0, acked = 0;
    while (!s.stop) {
      if (per_ns > 0) {
        int64_t due = int64_t(double(now_ns() - start) * per_ns);
        if (int64_t(sent) >= due) {
          std::this_thread::sleep_for(std::chrono::microseconds(200));
          continue;
        }
      }
      int64_t t = now_ns();
      std::memcpy(body.data(), &t, sizeof t);
      amqp_bytes_t b{body.size(), body.data()};
      if (amqp_basic_publish(c, 1, amqp_cstring_bytes(o.exchange.c_str()),
                             amqp_cstring_bytes(q.c_str()), 0, 0, &props, b) != AMQP_STATUS_OK)
        throw std::runtime_error("publish failed: connection lost");
      ++sent;
      if (in_window(s, t)) s.published.fetch_add(1, std::memory_order_relaxed);
      if (o.confirm > 0 && sent - acked >= uint64_t(o.confirm))
        wait_confirms(c, acked, sent, uint64_t(o.confirm) - 1, s);
    }
  } catch (const std::exception& e) {
    s.fail(std::string("producer: ") + e.what());
  }
}

void consumer(const options& o, int index, shared_state& s) {
  try {
    connection conn(o, o.consumer_port ? o.consumer_port : o.port);
    amqp_connection_state_t c = conn.c;
    bool autoack = o.ack_every == 0;
    if (!autoack) {
      amqp_basic_qos(c, 1, 0, uint16_t(o.prefetch), 0);
      check_rpc(c, "basic.qos");
    }
    std::string q = queue_name(o, index % o.queues);
    amqp_basic_consume(c, 1, amqp_cstring_bytes(q.c_str()), amqp_empty_bytes, 0, autoack, 0,
                       amqp_empty_table);
    check_rpc(c, "basic.consume");
    std::vector<uint32_t> lat;
    lat.reserve(1 << 20);
    uint64_t unacked = 0, last_tag = 0;
    while (!s.stop) {
      amqp_maybe_release_buffers(c);
      amqp_envelope_t env;
      timeval tv{0, 200'000};
      amqp_rpc_reply_t r = amqp_consume_message(c, &env, &tv, 0);
      if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT)
        continue;
      if (r.reply_type != AMQP_RESPONSE_NORMAL) throw std::runtime_error("consume failed");
      int64_t now = now_ns();
      if (env.message.body.len >= 8) {
        int64_t sent_at;
        std::memcpy(&sent_at, env.message.body.bytes, sizeof sent_at);
        if (in_window(s, now)) {
          s.consumed.fetch_add(1, std::memory_order_relaxed);
          lat.push_back(uint32_t(std::min<int64_t>((now - sent_at) / 1000, UINT32_MAX)));
        }
      }
      last_tag = env.delivery_tag;
      amqp_destroy_envelope(&env);
      if (!autoack && ++unacked >= uint64_t(o.ack_every)) {
        amqp_basic_ack(c, 1, last_tag, 1);
        unacked = 0;
      }
    }
    std::lock_guard lock(s.latency_mutex);
    s.latencies_us.insert(s.latencies_us.end(), lat.begin(), lat.end());
  } catch (const std::exception& e) {
    s.fail(std::string("consumer: ") + e.what());
  }
}

// CPU seconds (user + system) of a process or of one of its threads, from /proc.
double cpu_seconds(const std::string& stat_path) {
  FILE* f = std::fopen(stat_path.c_str(), "r");
  if (!f) return -1;
  char buf[1024];
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char* p = std::strrchr(buf, ')');  // the command name may hold spaces
  if (!p) return -1;
  unsigned long utime = 0, stime = 0;
  // Fields after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
  // stime
  if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) !=
      2)
    return -1;
  return double(utime + stime) / double(sysconf(_SC_CLK_TCK));
}

// The broker's threads by name, with their CPU seconds.
std::vector<std::pair<std::string, double>> thread_cpu(int pid) {
  std::vector<std::pair<std::string, double>> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& e : std::filesystem::directory_iterator(
           dir, std::filesystem::directory_options::skip_permission_denied)) {
    std::string tid = e.path().filename().string();
    std::string name;
    if (FILE* f = std::fopen((e.path() / "comm").c_str(), "r")) {
      char b[64] = {};
      if (std::fgets(b, sizeof b, f)) name = b;
      std::fclose(f);
    }
    while (!name.empty() && name.back() == '\n') name.pop_back();
    out.emplace_back(name + "/" + tid, cpu_seconds((e.path() / "stat").string()));
  }
  return out;
}

double percentile(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  size_t k = std::min(v.size() - 1, size_t(p * double(v.size())));
  std::nth_element(v.begin(), v.begin() + long(k), v.end());
  return v[k];
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"rmq-perf: AMQP load on librabbitmq (rabbitmq-c); one JSON line on stdout"};
  app.add_option("--host", o.host);
  app.add_option("--port", o.port);
  app.add_option("--user", o.user);
  app.add_option("--password", o.password);
  app.add_option("--vhost", o.vhost);
  app.add_option("--queue-prefix", o.queue_prefix, "queues are <prefix>-0 ... (declared, purged)");
  app.add_option("--exchange", o.exchange,
                 "publish to this direct exchange (declared; each queue bound by its name) "
                 "instead of the default exchange");
  app.add_option("--producers,-x", o.producers)->check(CLI::Range(0, 1000));
  app.add_option("--consumers,-y", o.consumers)->check(CLI::Range(0, 1000));
  app.add_option("--queues", o.queues)->check(CLI::Range(1, 1000));
  app.add_option("--size,-s", o.size, "body bytes (at least 8: the timestamp)");
  app.add_option("--prefetch,-q", o.prefetch)->check(CLI::Range(1, 65535));
  app.add_option("--ack-every", o.ack_every, "ack (multiple) every N deliveries; 0: autoack");
  app.add_flag("--persistent", o.persistent, "delivery mode 2, durable queues");
  app.add_option("--confirm,-c", o.confirm, "publisher confirms, at most N outstanding");
  app.add_option("--rate,-r", o.rate, "messages/s over all producers (0: unlimited)");
  app.add_option("--duration,-z", o.duration, "seconds measured");
  app.add_option("--warmup", o.warmup, "seconds before measuring");
  app.add_option("--producer-port", o.producer_port, "producers connect here (default --port)");
  app.add_option("--consumer-port", o.consumer_port, "consumers connect here (default --port)");
  app.add_option("--broker-pid", o.broker_pids,
                 "report this process's CPU time per consumed message over the window, and its "
                 "busiest threads; repeat for several processes (a cluster's nodes)");
  CLI11_PARSE(app, argc, argv);

  try {
    connection setup(o, o.port);
    if (!o.exchange.empty()) {
      amqp_exchange_declare(setup.c, 1, amqp_cstring_bytes(o.exchange.c_str()),
                            amqp_cstring_bytes("direct"), 0, 0, 0, 0, amqp_empty_table);
      check_rpc(setup.c, ("exchange.declare " + o.exchange).c_str());
    }
    for (int i = 0; i < o.queues; ++i) {
      std::string q = queue_name(o, i);
      amqp_queue_declare(setup.c, 1, amqp_cstring_bytes(q.c_str()), 0, o.persistent, 0, 0,
                         amqp_empty_table);
      check_rpc(setup.c, ("queue.declare " + q).c_str());
      amqp_queue_purge(setup.c, 1, amqp_cstring_bytes(q.c_str()));
      check_rpc(setup.c, ("queue.purge " + q).c_str());
      if (!o.exchange.empty()) {
        amqp_queue_bind(setup.c, 1, amqp_cstring_bytes(q.c_str()),
                        amqp_cstring_bytes(o.exchange.c_str()), amqp_cstring_bytes(q.c_str()),
                        amqp_empty_table);
        check_rpc(setup.c, ("queue.bind " + q).c_str());
      }
    }
    // In a cluster, queues declared on one node reach the others through etcd a few milliseconds
    // later (docs/cluster.md, "Consistency"): a consumer on another node waits for that.
    if ((o.consumer_port && o.consumer_port != o.port) ||
        (o.producer_port && o.producer_port != o.port))
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rmq-perf: %s\n", e.what());
    return 1;
  }

  shared_state s;
  int64_t start = now_ns();
  s.measure_from = start + int64_t(o.warmup * 1e9);
  s.measure_to = s.measure_from + int64_t(o.duration * 1e9);
  std::vector<std::thread> threads;
  for (int i = 0; i < o.consumers; ++i)
    threads.emplace_back(consumer, std::cref(o), i, std::ref(s));
  for (int i = 0; i < o.producers; ++i)
    threads.emplace_back(producer, std::cref(o), i, std::ref(s));
  // Each broker process's CPU seconds and threads at the window's start and end.
  struct sample {
    double cpu = -1;
    std::vector<std::pair<std::string, double>> threads;
  };
  auto take = [&o] {
    std::vector<sample> v;
    for (int pid : o.broker_pids)
      v.push_back({cpu_seconds("/proc/" + std::to_string(pid) + "/stat"), thread_cpu(pid)});
    return v;
  };
  std::vector<sample> from, to;
  while (!s.stop && now_ns() < s.measure_from)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  from = take();
  while (!s.stop && now_ns() < s.measure_to)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  to = take();
  s.stop = true;
  for (auto& t : threads) t.join();
  if (!s.error.empty()) {
    std::fprintf(stderr, "rmq-perf: %s\n", s.error.c_str());
    return 1;
  }
  try {  // leave nothing behind for the next run
    connection cleanup(o, o.port);
    for (int i = 0; i < o.queues; ++i) {
      amqp_queue_delete(cleanup.c, 1, amqp_cstring_bytes(queue_name(o, i).c_str()), 0, 0);
      check_rpc(cleanup.c, "queue.delete");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rmq-perf: cleanup: %s\n", e.what());
  }
  auto& lat = s.latencies_us;
  nlohmann::json out = {
      {"tool", "rmq-perf"},
      {"seconds", o.duration},
      {"published", s.published.load()},
      {"consumed", s.consumed.load()},
      {"publish_rate", double(s.published.load()) / o.duration},
      {"consume_rate", double(s.consumed.load()) / o.duration},
      {"latency_us",
       {{"p50", percentile(lat, 0.5)},
        {"p99", percentile(lat, 0.99)},
        {"p999", percentile(lat, 0.999)},
        {"max", lat.empty() ? 0.0 : double(*std::max_element(lat.begin(), lat.end()))}}},
  };
  // Busiest threads first: whether queue work spreads over the workers.
  auto busiest = [&o](const sample& before, const sample& after) {
    std::vector<std::pair<double, std::string>> busy;
    for (const auto& [name, t1] : after.threads)
      for (const auto& [name0, t0] : before.threads)
        if (name0 == name && t1 >= t0) busy.emplace_back(t1 - t0, name);
    std::sort(busy.rbegin(), busy.rend());
    nlohmann::json per_thread = nlohmann::json::object();
    for (size_t i = 0; i < busy.size() && i < 8; ++i)
      if (busy[i].first > 0) per_thread[busy[i].second] = busy[i].first / o.duration;
    return per_thread;  // each thread's share of a core over the window
  };
  auto per_msg = [&s](double cpu) {
    return s.consumed.load() ? nlohmann::json(cpu * 1e6 / double(s.consumed.load()))
                             : nlohmann::json();
  };
  nlohmann::json by_pid = nlohmann::json::array();
  for (size_t i = 0; i < o.broker_pids.size(); ++i) {
    if (from[i].cpu < 0 || to[i].cpu < 0) continue;
    double cpu = to[i].cpu - from[i].cpu;
    if (i == 0) {
      out["broker_cpu_seconds"] = cpu;
      out["broker_cpu_us_per_msg"] = per_msg(cpu);
      out["broker_thread_cores"] = busiest(from[i], to[i]);
    }
    by_pid.push_back({{"pid", o.broker_pids[i]},
                      {"cpu_seconds", cpu},
                      {"cpu_us_per_msg", per_msg(cpu)},
                      {"thread_cores", busiest(from[i], to[i])}});
  }
  if (o.broker_pids.size() > 1) out["brokers"] = by_pid;
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
