// warren: start-up and shut-down order.
//   1. configuration and logging; 2. data directory and its lock; 3. users and vhosts;
//   4. workers and listeners (signals blocked first, so only the main thread sees them);
//   5. the ports file; 6. wait for SIGINT/SIGTERM (SIGHUP reloads the TLS certificate); 7. stop
//   accepting, close connections with CONNECTION_FORCED, stop and join the workers.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <mutex>
#include <optional>
#include <thread>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <boost/asio/steady_timer.hpp>

#include "alarm/system.hpp"
#include "amqp/server/connection.hpp"
#include "app/alarms.hpp"
#include "app/cluster_node.hpp"
#include "app/config.hpp"
#include "auth/password.hpp"
#include "common/log.hpp"
#include "common/memory.hpp"
#include "federation/parameters.hpp"
#include "federation/supervisor.hpp"
#include "mgmt/limits.hpp"
#include "mgmt/prometheus.hpp"
#include "mgmt/routes.hpp"
#include "mgmt/users_file.hpp"
#include "net/connection.hpp"
#include "net/listener.hpp"
#include "net/tls.hpp"
#include "store/message_store.hpp"
#include "store/record_file.hpp"
#include "web/gateway.hpp"
#include "web/inbox_entry.hpp"

namespace fs = std::filesystem;
using namespace warren;

namespace {

// Holds an exclusive lock on <data_dir>/warren.lock for the life of the process, so that two
// brokers never share a data directory.
// A directory it creates is private to the broker's user (0700): it holds every persistent message
// and the users' password hashes. An existing one keeps the mode the operator gave it.
int lock_data_dir(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    fs::path parent = fs::path(dir).parent_path();
    if (!parent.empty()) fs::create_directories(parent, ec);
    if (!ec && ::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
      ec = std::error_code(errno, std::generic_category());
  }
  if (ec) throw std::runtime_error(fmt::format("cannot create data dir {}: {}", dir, ec.message()));
  std::string path = (fs::path(dir) / "warren.lock").string();
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error(fmt::format("cannot open {}", path));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0)
    throw std::runtime_error(fmt::format("data dir {} is in use by another warren", dir));
  return fd;
}

void write_ports_file(const std::string& path, const nlohmann::json& j) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    f << j.dump() << "\n";
    if (!f) throw std::runtime_error("cannot write " + tmp);
  }
  fs::rename(tmp, path);
}

// A vhost's directory under <data_dir>/vhosts: its name with every byte outside
// [A-Za-z0-9._-] percent-encoded ("/" is "%2F").
std::string store_dir_name(std::string_view vhost) {
  std::string out;
  for (unsigned char c : vhost) {
    if (std::isalnum(c) || c == '.' || c == '_' || c == '-')
      out += char(c);
    else
      out += fmt::format("%{:02X}", c);
  }
  return out.empty() ? "%" : out;
}

// Runs fn on every worker and waits for all of them. A worker that has not run it after a few
// seconds is named in the log (once), so that a stuck worker is seen, not only a broker that does
// not stop.
void on_every_worker(net::worker_pool& pool, const std::function<void(net::worker&)>& fn) {
  std::vector<std::atomic<bool>> done(pool.size());
  for (size_t i = 0; i < pool.size(); ++i) {
    net::worker& w = pool.at(i);
    w.post([&fn, &w, &flag = done[i]] {
      fn(w);
      flag = true;
    });
  }
  auto since = std::chrono::steady_clock::now();
  bool told = false;
  for (;;) {
    std::string waiting;
    for (size_t i = 0; i < done.size(); ++i)
      if (!done[i]) waiting += fmt::format("{}{}", waiting.empty() ? "" : ", ", i);
    if (waiting.empty()) return;
    if (!told && std::chrono::steady_clock::now() - since >= std::chrono::seconds(3)) {
      told = true;
      spdlog::warn("waiting for worker(s) {} for 3 s: not yet run a task posted to every worker",
                   waiting);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// Drives a vhost's housekeeping (TTL expiry, x-expires) on its home worker, every 100 ms.
class vhost_ticker {
 public:
  vhost_ticker(net::worker& w, broker::vhost& v) : v_(v), timer_(w.io()) { arm(); }

 private:
  void arm() {
    timer_.expires_after(std::chrono::milliseconds(100));
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      v_.tick(broker::now_ms());
      arm();
    });
  }
  broker::vhost& v_;
  boost::asio::steady_timer timer_;
};

// Samples the overview's history every 5 s on worker 0: the sums of the vhosts' last samples
// and of every thread's counters; and the web gateway's, whose counters are gathered from its
// workers (recorded when the last one answers, under the time the sample was asked at).
class overview_ticker {
 public:
  overview_ticker(net::worker& w, broker::vhost_registry& vhosts, mgmt::overview_sampler& out,
                  const mgmt::api_context& api)
      : vhosts_(vhosts), out_(out), api_(api), timer_(w.io()) {
    arm();
  }

 private:
  void arm() {
    timer_.expires_after(std::chrono::milliseconds(broker::overview_history::interval_ms));
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      sample();
      arm();
    });
  }
  void sample() {
    using G = broker::global_counters;
    broker::overview_history::values v{};
    for (const auto& n : vhosts_.names())
      if (broker::vhost* x = vhosts_.find(n)) {
        v[broker::os_ready] += x->sampled_ready();
        v[broker::os_unacked] += x->sampled_unacked();
      }
    auto g = G::total();
    v[broker::os_publish] = g[G::received];
    v[broker::os_confirm] = g[G::confirmed];
    v[broker::os_deliver] = g[G::delivered_consume_manual_ack];
    v[broker::os_deliver_no_ack] = g[G::delivered_consume_auto_ack];
    v[broker::os_get] = g[G::delivered_get_manual_ack];
    v[broker::os_get_no_ack] = g[G::delivered_get_auto_ack];
    v[broker::os_deliver_get] = v[broker::os_deliver] + v[broker::os_deliver_no_ack] +
                                v[broker::os_get] + v[broker::os_get_no_ack];
    v[broker::os_get_empty] = g[G::get_empty];
    v[broker::os_ack] = g[G::acknowledged];
    v[broker::os_redeliver] = g[G::redelivered];
    v[broker::os_return_unroutable] = g[G::unroutable_returned];
    v[broker::os_drop_unroutable] = g[G::unroutable_dropped];
    int64_t now = broker::wall_ms();
    out_.record(now, v);
    if (api_.gateway_stats && api_.gateway_history)
      api_.gateway_stats([out = api_.gateway_history, now](web::gateway_stats s) {
        mgmt::gateway_history::values gv{};
        gv[mgmt::gs_delivered] = s.events_delivered;
        out->record(now, gv);
      });
  }
  broker::vhost_registry& vhosts_;
  mgmt::overview_sampler& out_;
  const mgmt::api_context& api_;
  boost::asio::steady_timer timer_;
};

// The TLS context, if a certificate is configured; its files are read now so that a bad one
// stops the start with a clear message.
std::unique_ptr<net::tls_context_source> load_tls(const app::config& cfg) {
  if (cfg.tls_cert.empty() && cfg.tls_key.empty()) {
    if (!cfg.tls_ca.empty() || cfg.tls_verify != "none" || cfg.tls_fail_if_no_peer_cert)
      throw std::runtime_error(
          "--tls-ca, --tls-verify and --tls-fail-if-no-peer-cert need --tls-cert and --tls-key");
    return nullptr;
  }
  net::tls_settings s;
  s.cert_file = cfg.tls_cert;
  s.key_file = cfg.tls_key;
  s.ca_file = cfg.tls_ca;
  s.verify = cfg.tls_verify == "peer" ? net::tls_verify::peer : net::tls_verify::none;
  s.fail_if_no_peer_cert = cfg.tls_fail_if_no_peer_cert;
  if (s.fail_if_no_peer_cert && s.verify != net::tls_verify::peer)
    throw std::runtime_error("--tls-fail-if-no-peer-cert needs --tls-verify peer");
  auto out = std::make_unique<net::tls_context_source>(std::make_shared<const net::tls_context>(s));
  spdlog::info("TLS certificate {}: {}", s.cert_file, out->current()->certificate_summary());
  return out;
}

int run(const app::config& cfg) {
  std::unique_ptr<net::tls_context_source> tls = load_tls(cfg);
  int lock_fd = lock_data_dir(cfg.data_dir);

  auth::user_store users;
  auto nets = auth::parse_ip_networks(cfg.loopback_networks);
  if (!nets) throw std::runtime_error("bad --loopback-networks: " + cfg.loopback_networks);
  users.set_loopback_networks(*nets);
  // The default vhost and any others asked for, spread over the workers: a vhost's queues run
  // on its home worker, so separate vhosts use separate cores.
  std::vector<std::string> vhost_names{cfg.default_vhost};
  for (std::string_view rest = cfg.vhosts; !rest.empty();) {
    size_t comma = rest.find(',');
    std::string name(rest.substr(0, comma));
    if (!name.empty() &&
        std::find(vhost_names.begin(), vhost_names.end(), name) == vhost_names.end())
      vhost_names.push_back(name);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  // Vhosts created at run time (PUT /api/vhosts/X, definitions import) come back too.
  const fs::path vhosts_file = fs::path(cfg.data_dir) / "vhosts.json";
  std::vector<std::string> created_vhosts;
  if (std::string text; store::read_whole_file(vhosts_file, text)) {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (!j.is_array()) throw std::runtime_error(vhosts_file.string() + ": not a JSON array");
    for (const auto& n : j) {
      if (!n.is_string()) throw std::runtime_error(vhosts_file.string() + ": not a list of names");
      created_vhosts.push_back(n.get<std::string>());
      if (std::find(vhost_names.begin(), vhost_names.end(), created_vhosts.back()) ==
          vhost_names.end())
        vhost_names.push_back(created_vhosts.back());
    }
  }
  auth::user u{cfg.default_user, auth::hash_password(cfg.default_pass), {"administrator"}, {}};
  for (const auto& name : vhost_names) u.permissions[name] = auth::permission{};
  users.add_user(std::move(u));
  // Users imported through the management API (they replace the configured one of that name).
  mgmt::users_file user_file(fs::path(cfg.data_dir) / "users.json");
  if (std::string err; !user_file.load(users, err)) throw std::runtime_error(err);

  broker::vhost_registry vhosts;
  // Shards post to the workers once they run (start_shards, below); recovery calls them directly.
  net::worker_pool* shard_pool = nullptr;
  auto placement = cfg.queue_placement == "hash" ? broker::vhost::placement::hash
                                                 : broker::vhost::placement::home;
  auto enable_shards = [&](broker::vhost& v) {
    v.enable_shards(
        cfg.queue_placement == "hash" ? cfg.workers : 1, placement,
        [&shard_pool](size_t i, std::function<void()> fn) {
          shard_pool->at(i).post(std::move(fn));
        },
        [&shard_pool](size_t i, std::function<void()> fn) {
          shard_pool->at(i).defer(std::move(fn));
        });
  };
  for (size_t i = 0; i < vhost_names.size(); ++i)
    enable_shards(vhosts.add(vhost_names[i], i % cfg.workers));
  // The web gateway's exchanges exist before recovery, which restores bindings to them.
  std::string web_vhost = cfg.web_vhost.empty() ? cfg.default_vhost : cfg.web_vhost;
  broker::vhost* gw_vhost = vhosts.find(web_vhost);
  if (!gw_vhost) throw std::runtime_error("--web-vhost: no vhost '" + web_vhost + "'");
  web::gateway::declare_exchanges(*gw_vhost);
  // Each vhost's durable state comes back from its store before anything can reach it.
  std::mutex vhosts_mutex;  // stores, tickers and vhosts.json, for vhosts created at run time
  std::vector<std::unique_ptr<store::message_store>> stores;
  store::store_options store_opts;
  if (const char* unsafe = std::getenv("WARREN_TEST_UNSAFE_CONFIRM"); unsafe && *unsafe == '1') {
    store_opts.confirm_before_write = true;
    spdlog::warn(
        "WARREN_TEST_UNSAFE_CONFIRM=1: publisher confirms and transactions are answered BEFORE "
        "messages are written; a crash loses confirmed messages. For fault tests only.");
  }
  auto open_store = [&](broker::vhost& v) {
    auto& st = stores.emplace_back(std::make_unique<store::message_store>(
        fs::path(cfg.data_dir) / "vhosts" / store_dir_name(v.name()), store_opts));
    auto r = st->recover(v);
    spdlog::info(
        "vhost '{}': recovered {} queues, {} exchanges and {} messages in {:.3f} s "
        "({} definition records, {} segments, {:.1f} MB{})",
        v.name(), v.queue_count(), v.exchange_count(), r.messages, r.seconds, r.definitions,
        r.segments, double(r.bytes) / 1e6,
        r.torn_files ? fmt::format(", {} torn files cut back", r.torn_files) : "");
  };
  for (const auto& name : vhost_names) open_store(*vhosts.find(name));
  // Vhost limits set through the management API or definitions (user limits are in users.json).
  mgmt::vhost_limits_file limits_file(fs::path(cfg.data_dir) / "vhost-limits.json");
  if (std::string err; !limits_file.load(vhosts, err)) throw std::runtime_error(err);
  // Runtime parameters and policies (federation upstreams, shovels) set through the API.
  federation::runtime_store runtime(fs::path(cfg.data_dir) / "parameters.json");
  if (std::string err; !runtime.load(err)) throw std::runtime_error(err);
  std::string node_name = cfg.node_name;
  if (node_name.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    node_name = fmt::format("warren@{}", host);
  }
  // A node alone is its own cluster, named after it (as a RabbitMQ node is); config.cpp names a
  // cluster joined through etcd "warren" unless told otherwise.
  std::string cluster_name = cfg.cluster_name.empty() ? node_name : cfg.cluster_name;

  amqp::server::server_context ctx;
  ctx.settings.channel_max = cfg.channel_max;
  ctx.settings.frame_max = cfg.frame_max;
  ctx.settings.heartbeat = cfg.heartbeat;
  ctx.settings.handshake_timeout = std::chrono::milliseconds(int64_t(cfg.handshake_timeout * 1000));
  ctx.settings.max_message_size = cfg.max_message_size;
  ctx.users = &users;
  ctx.vhosts = &vhosts;
  common::limited_count node_connections;
  node_connections.set_limit(cfg.max_connections);
  ctx.node_connections = &node_connections;
  if (cfg.max_connections >= 0) spdlog::info("node connection limit: {}", cfg.max_connections);
  // In a cluster the node serves only while it holds its lease in etcd (app/cluster_node.hpp).
  common::node_fence fence;
  if (!cfg.etcd_endpoints.empty()) ctx.fence = &fence;
  ctx.settings.cluster_name = cluster_name;
  ctx.server_properties = amqp::server::make_server_properties(ctx.settings);

  // Block the shutdown and reload signals before any thread starts; the main thread waits for
  // them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  net::worker_pool pool(cfg.workers);
  pool.set_busy_wait(std::chrono::microseconds(cfg.busy_wait_us));
  shard_pool = &pool;
  for (const auto& name : vhost_names) vhosts.find(name)->start_shards();
  ctx.pool = &pool;
  app::resource_alarms alarms(cfg, pool);  // memory and disk alarms block publishers
  ctx.alarms = &alarms.board();
  alarms.page_vhosts(vhosts, cfg.vm_memory_high_watermark_paging_ratio);
  // Where the listeners bind: by default every IPv4 and IPv6 address, as RabbitMQ, through one
  // dual-stack socket per port (IPv4 only on a kernel without IPv6); --bind ADDR binds just ADDR.
  bool dual_stack = cfg.bind.empty();
  boost::asio::ip::address addr;
  if (!dual_stack) {
    addr = boost::asio::ip::make_address(cfg.bind);
  } else if (auto why = net::dual_stack_unavailable()) {
    spdlog::warn("IPv6 is not available ({}): listening on IPv4 addresses only", why.message());
    dual_stack = false;
    addr = boost::asio::ip::address_v4::any();
  } else {
    addr = boost::asio::ip::address_v6::any();
  }
  const std::string bound = addr.to_string();  // "::" also stands for IPv4 when dual-stack
  auto where = [&](uint16_t port) { return net::host_port(addr, port); };
  auto amqp_accept = [&ctx](std::shared_ptr<net::connection> c) {
    c->start(std::make_unique<amqp::server::amqp_connection>(ctx));
  };
  net::listener amqp_listener(pool, {addr, cfg.amqp_port}, amqp_accept, "amqp", dual_stack);
  // A TLS listener hands its connections to the same handler as the plain one, with the
  // context of the moment: a reload (SIGHUP) changes it for the handshakes that follow.
  auto with_tls = [&tls](net::listener::on_accept next) {
    return [&tls, next = std::move(next)](std::shared_ptr<net::connection> c) {
      if (c->use_tls(tls->current())) next(std::move(c));
    };
  };
  std::optional<net::listener> amqps_listener, https_listener, web_tls_listener;
  using tcp_endpoint = boost::asio::ip::tcp::endpoint;
  if (tls)
    amqps_listener.emplace(pool, tcp_endpoint(addr, cfg.amqps_port), with_tls(amqp_accept), "amqps",
                           dual_stack);
  std::vector<std::unique_ptr<vhost_ticker>> tickers;  // armed before the workers run
  mgmt::api_context api{&users, &vhosts, &pool, &user_file, WARREN_VERSION, {}};
  api.limits_file = &limits_file;
  api.runtime = &runtime;
  federation::supervisor links(runtime, vhosts, pool, cluster_name);
  api.federation = &links;
  // A vhost created at run time: recovered from its (empty, or left over) directory before
  // anyone can find it, then its housekeeping armed on its home worker. The acting user gets
  // full permissions on it, as RabbitMQ's HTTP API does.
  api.create_vhost = [&](const std::string& name, const std::string& acting_user) -> std::string {
    std::lock_guard lock(vhosts_mutex);
    if (vhosts.find(name)) return {};
    if (name.empty() || name.size() > 255) return "a vhost name has 1 to 255 bytes";
    auto v = std::make_unique<broker::vhost>(name, vhosts.size() % cfg.workers);
    enable_shards(*v);
    try {
      open_store(*v);
      created_vhosts.push_back(name);
      store::replace_file(vhosts_file, nlohmann::json(created_vhosts).dump() + "\n");
    } catch (const std::exception& e) {
      return fmt::format("cannot create vhost '{}': {}", name, e.what());
    }
    v->start_shards();
    broker::vhost& added = vhosts.add(std::move(v));
    for (size_t i = 0; i < added.shard_count(); ++i) {
      net::worker& w = pool.at(added.shard_count() == 1 ? added.home_worker() : i);
      w.post([&, v = &added.shard_at(i), w = &w] {
        std::lock_guard lock(vhosts_mutex);
        tickers.push_back(std::make_unique<vhost_ticker>(*w, *v));
      });
    }
    if (auto who = users.find(acting_user)) {
      users.update([&](auth::user_map& m) {
        auto it = m.find(acting_user);
        if (it == m.end()) return;
        auto copy = std::make_shared<auth::user>(*it->second);
        copy->permissions.try_emplace(name, auth::permission{});
        it->second = std::move(copy);
      });
      std::string err;
      if (!user_file.save(users, err))
        spdlog::error("vhost '{}': permissions of '{}' not saved: {}", name, acting_user, err);
    }
    spdlog::info("vhost '{}' created by '{}'", name, acting_user);
    return {};
  };
  // A vhost deleted at run time: gone from the registry at once (new connections and requests
  // no longer find it), its connections closed on their workers, then on its home worker its
  // queues deleted, its store closed and its directory removed. The object itself stays (see
  // vhost_registry::retire). The web gateway's vhost cannot be deleted.
  api.delete_vhost = [&](const std::string& name, std::function<void(std::string)> done) {
    if (name == web_vhost)
      return done(fmt::format("vhost '{}' holds the web gateway and cannot be deleted", name));
    broker::vhost* v = vhosts.retire(name);
    if (!v) return done(fmt::format("no vhost '{}'", name));
    std::string reason = fmt::format("vhost '{}' is deleted", name);
    for (size_t i = 0; i < pool.size(); ++i) {
      net::worker& w = pool.at(i);
      w.post([&w, v, reason] { amqp::server::amqp_connection::close_vhost(w, v, reason); });
    }
    pool.at(v->home_worker()).post([&, v, name, done = std::move(done)] {
      v->destroy_all();
      std::lock_guard lock(vhosts_mutex);
      broker::journal* j = v->get_journal();
      v->set_journal(nullptr);
      std::erase_if(stores,
                    [j](const auto& s) { return static_cast<broker::journal*>(s.get()) == j; });
      std::error_code ec;
      fs::remove_all(fs::path(cfg.data_dir) / "vhosts" / store_dir_name(name), ec);
      std::erase(created_vhosts, name);
      try {
        store::replace_file(vhosts_file, nlohmann::json(created_vhosts).dump() + "\n");
      } catch (const std::exception& e) {
        spdlog::error("vhost '{}': vhosts.json not updated: {}", name, e.what());
      }
      users.update([&](auth::user_map& m) {
        for (auto& [n, u] : m)
          if (u->permissions.count(name) || u->topic_permissions.count(name)) {
            auto copy = std::make_shared<auth::user>(*u);
            copy->permissions.erase(name);
            copy->topic_permissions.erase(name);
            u = std::move(copy);
          }
      });
      std::string err;
      if (!user_file.save(users, err)) spdlog::error("users not saved: {}", err);
      // Its limits go with it (RabbitMQ deletes a vhost's parameters with the vhost).
      if (!limits_file.save(vhosts, err)) spdlog::error("vhost limits not saved: {}", err);
      spdlog::info("vhost '{}' deleted", name);
      done(ec ? fmt::format("vhost deleted, but its data was not removed: {}", ec.message())
              : std::string());
    });
  };
  api.list_connections = [](net::worker& w, std::vector<broker::connection_view>& out) {
    amqp::server::amqp_connection::describe_all(w, out);
  };
  api.close_connection = [](net::worker& w, uint64_t id, const std::string& reason) {
    return amqp::server::amqp_connection::force_close(w, id, reason);
  };
  api.node_name = node_name;
  api.cluster_name = cluster_name;
  api.started_at = broker::wall_ms();
  api.set_memory_high_watermark = [&alarms](std::variant<double, uint64_t> limit) {
    return alarms.set_memory_high_watermark(limit);
  };
  api.node = [&alarms, &pool, &cfg] {
    mgmt::node_status s;
    s.mem_used = alarm::process_rss().value_or(0);
    s.mem_limit = alarms.memory_limit();
    s.disk_free = alarm::disk_free(cfg.data_dir).value_or(0);
    s.disk_free_limit = cfg.disk_free_limit;
    // The calling worker's view of the alarms (each worker keeps its own slot).
    for (size_t i = 0; i < pool.size(); ++i)
      if (pool.at(i).on_own_thread()) {
        auto on = alarms.board().on(i);
        s.mem_alarm = on.memory;
        s.disk_free_alarm = on.disk;
      }
    std::error_code ec;
    for (auto it = fs::directory_iterator("/proc/self/fd", ec);
         !ec && it != fs::directory_iterator(); it.increment(ec)) {
      ++s.fd_used;
      std::error_code lec;  // "socket:[inode]" for sockets: listeners, clients, the stores' none
      if (fs::read_symlink(it->path(), lec).native().starts_with("socket:")) ++s.sockets_used;
    }
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0) s.fd_total = rl.rlim_cur;
    ec.clear();
    for (auto it = fs::directory_iterator("/proc/self/task", ec);
         !ec && it != fs::directory_iterator(); it.increment(ec))
      ++s.threads;
    return s;
  };
  mgmt::overview_sampler overview;
  api.overview = &overview;
  http::router router = mgmt::make_router(api);
  auto http_accept = [&router](std::shared_ptr<net::connection> c) {
    c->start(std::make_unique<http::http_handler>(router));
  };
  net::listener http_listener(pool, {addr, cfg.http_port}, http_accept, "http", dual_stack);
  if (tls)
    https_listener.emplace(pool, tcp_endpoint(addr, cfg.https_port), with_tls(http_accept), "https",
                           dual_stack);
  // The same API for warrenctl on a Unix socket, authenticated by the file's mode.
  std::optional<net::listener> ctl_listener;
  if (!cfg.ctl_socket.empty())
    ctl_listener.emplace(
        pool, net::listener::unix_path{cfg.ctl_socket},
        [&router](std::shared_ptr<net::connection> c) {
          c->start(std::make_unique<http::http_handler>(router, /*local_socket=*/true));
        },
        "ctl");
  if (ctl_listener) spdlog::info("management API for warrenctl on {}", cfg.ctl_socket);
  // Metrics for Prometheus, as rabbitmq_prometheus serves them (no authentication).
  http::router prometheus_router = mgmt::make_prometheus_router(api);
  net::listener prometheus_listener(
      pool, {addr, cfg.prometheus_port},
      [&prometheus_router](std::shared_ptr<net::connection> c) {
        c->start(std::make_unique<http::http_handler>(prometheus_router));
      },
      "prometheus", dual_stack);
  // The web gateway, in its vhost (whose home worker runs the hub).
  web::gateway_settings gs;
  gs.vhost = web_vhost;
  gs.inbox_linger = std::chrono::seconds(cfg.inbox_linger);
  // 1 to 2^31-1 (an inbox entry keeps the count in 31 bits).
  gs.inbox_size = std::clamp<uint32_t>(cfg.inbox_size, 1, web::inbox_entry::max_held);
  gs.inbox_ttl = std::chrono::seconds(std::max<uint32_t>(1, cfg.inbox_ttl));
  gs.room_history = cfg.room_history;
  gs.room_presence_events = cfg.room_presence_events;
  for (std::string_view rest = cfg.anonymous_rooms; !rest.empty();) {
    size_t comma = rest.find(',');
    if (comma != 0) gs.anonymous_rooms.emplace_back(rest.substr(0, comma));
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  gs.ws_max_message = cfg.ws_max_message;
  gs.max_connections_per_ip = cfg.web_max_connections_per_ip;
  gs.publish_rate = cfg.web_publish_rate;
  gs.max_header = cfg.web_max_header;
  gs.max_body = cfg.web_max_body;
  gs.heartbeat = std::chrono::seconds(std::max<uint32_t>(1, cfg.web_heartbeat));
  gs.dev_tokens = cfg.web_dev_tokens;
  gs.jwt_secret = cfg.jwt_secret;
  std::optional<web::jwt_config> jwt;
  if (!cfg.jwt_secret.empty() || !cfg.jwt_public_key.empty()) {
    jwt.emplace();
    jwt->hs256_secret = cfg.jwt_secret;
    if (!cfg.jwt_public_key.empty()) {
      std::ifstream f(cfg.jwt_public_key);
      if (!f) throw std::runtime_error("--jwt-public-key: cannot read " + cfg.jwt_public_key);
      jwt->rs256_public_pem.assign(std::istreambuf_iterator<char>(f), {});
    }
  }
  web::gateway gateway(
      gs, jwt,
      {&users, gw_vhost, &pool, &alarms.board(),
       dynamic_cast<store::message_store*>(gw_vhost->get_journal()), ctx.fence},
      fs::path(cfg.data_dir) / "vhosts" / store_dir_name(web_vhost) / "follows.log");
  gateway.prepare();
  mgmt::gateway_sampler gateway_history;
  api.gateway_stats = [&gateway](std::function<void(web::gateway_stats)> done) {
    gateway.gather_stats(std::move(done));
  };
  api.gateway_history = &gateway_history;
  auto web_accept = [&gateway](std::shared_ptr<net::connection> c) {
    gateway.accept(std::move(c));
  };
  net::listener web_listener(pool, {addr, cfg.web_port}, web_accept, "web", dual_stack);
  if (tls)
    web_tls_listener.emplace(pool, tcp_endpoint(addr, cfg.web_tls_port), with_tls(web_accept),
                             "web-tls", dual_stack);
  for (const auto& name : vhost_names) {
    broker::vhost* v = vhosts.find(name);
    for (size_t i = 0; i < v->shard_count(); ++i)
      tickers.push_back(std::make_unique<vhost_ticker>(
          pool.at(v->shard_count() == 1 ? v->home_worker() : i), v->shard_at(i)));
  }
  api.listeners = {{"amqp", bound, amqp_listener.port()},
                   {"http", bound, http_listener.port()},
                   {"web", bound, web_listener.port()},
                   {"prometheus", bound, prometheus_listener.port()}};
  if (tls) {
    api.listeners.push_back({"amqp/ssl", bound, amqps_listener->port()});
    api.listeners.push_back({"https", bound, https_listener->port()});
    api.listeners.push_back({"web/ssl", bound, web_tls_listener->port()});
  }
  overview_ticker overview_timer(pool.at(0), vhosts, overview, api);
  // Joining the cluster: the node registers under its lease before any listener accepts (a
  // duplicate name stops the start here; etcd unreachable starts the node fenced).
  std::optional<app::cluster_node> cluster;
  if (!cfg.etcd_endpoints.empty()) {
    app::cluster_node::settings cs;
    cs.cluster = cfg.cluster_name;
    cs.node = api.node_name;
    cs.endpoints = cfg.etcd_endpoints;
    cs.lease_ttl = std::chrono::seconds(cfg.etcd_lease_ttl);
    cs.started_at_ms = api.started_at;
    nlohmann::json ls = nlohmann::json::array();
    for (const auto& l : api.listeners)
      ls.push_back({{"protocol", l.protocol}, {"ip_address", l.ip_address}, {"port", l.port}});
    cs.info = {{"version", WARREN_VERSION}, {"pid", ::getpid()}, {"listeners", ls}};
    // Where the other nodes reach this one (app::cluster_node's locate).
    if (!cfg.advertise_address.empty())
      cs.info["advertise_address"] = cfg.advertise_address;
    else if (bound == "::" || bound == "0.0.0.0")
      spdlog::warn(
          "cluster node bound to every address without --advertise-address: the other nodes "
          "reach it on 127.0.0.1, which serves only nodes on this machine");
    cluster.emplace(std::move(cs), fence, pool, users, &user_file, vhosts);
    user_file.on_saved = [&cluster] { cluster->publish_users(); };
    ctx.remote_queue_call = cluster->remote_queue_call();
    ctx.node_connection = cluster->node_connection();
    ctx.balanced_node = cluster->balanced_node();
    ctx.remote_queue_declared = cluster->remote_queue_declared();
    // Vhosts: the API's functions apply what etcd says; the API's calls publish to etcd.
    auto local_create = api.create_vhost;
    auto local_delete = api.delete_vhost;
    cluster->set_vhost_ops(
        {[&vhosts] { return vhosts.names(); },
         [local_create](const std::string& name) { return local_create(name, std::string()); },
         local_delete});
    api.create_vhost = [&cluster, local_create](const std::string& name, const std::string& who) {
      std::string err = local_create(name, who);
      if (err.empty()) cluster->publish_vhost(name, true);
      return err;
    };
    api.delete_vhost = [&cluster, local_delete](const std::string& name,
                                                std::function<void(std::string)> done) {
      local_delete(name, [&cluster, name, done = std::move(done)](std::string err) {
        if (err.empty() || err.starts_with("vhost deleted")) cluster->publish_vhost(name, false);
        done(std::move(err));
      });
    };
    api.cluster = [&cluster] { return cluster->status(); };
    // The web gateway across nodes (web/hub_cluster.cpp): users and rooms have an owner node by
    // the shard map in etcd; the hub hands sends and events to other nodes over their links.
    auto shards = std::make_shared<web::shard_table>(api.node_name);
    cluster->keep_gateway_map(
        shards, [&gateway] { gateway.home().post([&gateway] { gateway.the_hub().rehome(); }); });
    gateway.join_cluster(
        web::hub::cluster_hooks{shards,
                                [gw_vhost](const std::string& node, const broker::message& m) {
                                  gw_vhost->send_to_node(node, m);
                                },
                                cluster->running_check()});
    // Exchanges, bindings and queue records (app/cluster_definitions.hpp): other nodes' queues
    // are listed and exported here.
    api.remote_queues = [dir = cluster->remote()](const std::string* vhost) {
      std::vector<mgmt::queue_def> out;
      for (auto& r : dir->queues(vhost)) {
        if (r.exclusive) continue;  // another node's connection's: listed there only
        r.def.node = r.node;
        out.push_back(std::move(r.def));
      }
      return out;
    };
    api.remote_bindings = [dir = cluster->remote()](const std::string* vhost) {
      return dir->bindings(vhost);
    };
    cluster->join();
  }
  pool.start();
  alarms.start();
  amqp_listener.start();
  http_listener.start();
  if (ctl_listener) ctl_listener->start();
  web_listener.start();
  prometheus_listener.start();
  if (tls) {
    amqps_listener->start();
    https_listener->start();
    web_tls_listener->start();
  }
  if (!cfg.ports_file.empty()) {
    nlohmann::json ports = {{"amqp", amqp_listener.port()},
                            {"http", http_listener.port()},
                            {"web", web_listener.port()},
                            {"prometheus", prometheus_listener.port()}};
    if (tls) {
      ports["amqps"] = amqps_listener->port();
      ports["https"] = https_listener->port();
      ports["web_tls"] = web_tls_listener->port();
    }
    write_ports_file(cfg.ports_file, ports);
  }
  spdlog::info(
      "Warren {} started: AMQP on {}, HTTP on {}, web gateway on {}, Prometheus on {}{}, {} "
      "workers, data in {}, allocator {}",
      WARREN_VERSION, where(amqp_listener.port()), where(http_listener.port()),
      where(web_listener.port()), where(prometheus_listener.port()),
      dual_stack ? " (IPv6 and IPv4)" : "", cfg.workers, cfg.data_dir,
      using_jemalloc() ? "jemalloc" : "glibc");
  if (tls)
    spdlog::info("TLS: AMQPS on {}, HTTPS on {}, web gateway on {}", where(amqps_listener->port()),
                 where(https_listener->port()), where(web_tls_listener->port()));
  // Federation links and shovels connect once the listeners answer (a shovel may point here).
  links.start();

  int sig = 0;
  for (;;) {
    sigwait(&sigs, &sig);
    if (sig != SIGHUP) break;
    // A reload: new handshakes use the new certificate, sessions already open keep theirs.
    if (!tls) {
      spdlog::info("received SIGHUP: no TLS certificate to reload");
      continue;
    }
    try {
      spdlog::info("received SIGHUP: TLS certificate reloaded: {}", tls->reload());
    } catch (const std::exception& e) {
      spdlog::error("received SIGHUP: TLS certificate not reloaded, the previous one stays: {}",
                    e.what());
    }
  }
  spdlog::info("received {}, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
  // The lease goes first, so the other nodes see this one stop at once.
  if (cluster) {
    user_file.on_saved = nullptr;
    cluster->leave();
  }

  links.stop();  // connection.close to their peers while the workers still run
  // The links between nodes (app/node_links.hpp) too: their connections belong to the workers.
  if (cluster)
    on_every_worker(pool, [&vhosts](net::worker& w) {
      for (const auto& n : vhosts.names())
        if (broker::vhost* v = vhosts.find(n); v && v->home_worker() == w.index())
          v->set_remote_sender(nullptr);
    });
  amqp_listener.stop();
  if (tls) {
    amqps_listener->stop();
    https_listener->stop();
    web_tls_listener->stop();
  }
  http_listener.stop();
  if (ctl_listener) ctl_listener->stop();  // removes the socket file
  web_listener.stop();
  prometheus_listener.stop();
  on_every_worker(pool, [](net::worker& w) {
    w.for_each_connection([](net::connection& c) {
      if (c.handler()) c.handler()->on_shutdown();
      c.flush();
    });
  });
  // Give clients a moment to answer connection.close with close-ok.
  for (int i = 0; i < 20; ++i) {
    std::atomic<size_t> open{0};
    on_every_worker(pool, [&open](net::worker& w) { open += w.connection_count(); });
    if (open == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // Whoever did not answer is closed now, on its own worker, while every worker still runs (a
  // closing channel posts its goodbye to the vhost's worker).
  on_every_worker(pool, [](net::worker& w) {
    w.for_each_connection([](net::connection& c) { c.close_now(); });
  });
  on_every_worker(pool, [](net::worker&) {});  // let those posts land
  pool.stop();
  pool.join();
  stores.clear();  // writes and syncs what is pending
  ::close(lock_fd);
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = app::parse_config(argc, argv);
  if (auto* req = std::get_if<app::exit_request>(&parsed)) {
    (req->code == 0 ? std::cout : std::cerr) << req->text;
    return req->code;
  }
  const auto& cfg = std::get<app::config>(parsed);
  if (!common::init_logging(cfg.log_level)) {
    std::cerr << "unknown log level: " << cfg.log_level << "\n";
    return 2;
  }
  try {
    return run(cfg);
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
}
