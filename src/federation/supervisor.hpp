// Federation links and shovels: what the runtime parameters and policies ask for, kept running.
// The supervisor lives on one worker (`worker 0`); every link and shovel it starts lives there
// too, with its AMQP client connections (amqp/client). A link touches its local vhost only by
// posting to the vhost's home worker (publishing, reading bindings), as a channel does.
//
// Reconciliation (on every change of the parameters and every second): the shovels wanted are
// the "shovel" parameters; the exchange links wanted are, for each exchange a policy with
// federation-upstream or federation-upstream-set applies to, one per upstream of that set. A
// link or shovel whose settings changed is restarted; one no longer wanted is closed.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "broker/vhost.hpp"
#include "federation/parameters.hpp"
#include "net/worker.hpp"

namespace warren::federation {

// What GET /api/federation-links and /api/shovels show of one link or shovel.
struct link_status {
  std::string type;  // "exchange" (a federation link) or "shovel"
  std::string vhost;
  std::string name;      // the federated exchange, or the shovel's name
  std::string upstream;  // the upstream's parameter name (links)
  std::string uri;       // without credentials (links: the upstream; shovels: the source)
  std::string dest_uri;  // shovels
  std::string upstream_exchange;
  std::string internal_queue;  // links: the queue on the upstream
  std::string state;           // starting, running, error (links); starting, running, terminated
  std::string error;
  int64_t timestamp = 0;  // wall ms of the last state change
  uint64_t forwarded = 0;
};

class link;
class shovel;

// Counters for /metrics (any thread).
struct federation_counters {
  std::atomic<uint64_t> forwarded{0};      // messages republished by federation links
  std::atomic<uint64_t> shovelled{0};      // messages moved by shovels
  std::atomic<uint64_t> links_running{0};  // federation links in state running
  std::atomic<uint64_t> shovels_running{0};
};

class supervisor {
 public:
  supervisor(runtime_store& store, broker::vhost_registry& vhosts, net::worker_pool& pool,
             std::string cluster_name);
  ~supervisor();

  // Any thread: reconciles now and every second from then on.
  void start();
  // Any thread: closes every link and shovel (connection.close to their peers), waits up to
  // `wait_ms` for them to finish.
  void stop(int wait_ms = 2000);

  std::vector<link_status> status() const;
  federation_counters& counters() { return counters_; }
  const std::string& cluster_name() const { return cluster_name_; }

  // --- for links and shovels (the supervisor's worker) ---
  net::worker& home() { return pool_.at(0); }
  net::worker_pool& pool() { return pool_; }
  broker::vhost_registry& vhosts() { return vhosts_; }
  runtime_store& store() { return store_; }
  void report(const std::string& key, const link_status& s);
  void forget(const std::string& key);

 private:
  void reconcile();
  void arm_timer();

  runtime_store& store_;
  broker::vhost_registry& vhosts_;
  net::worker_pool& pool_;
  std::string cluster_name_;
  federation_counters counters_;

  // On the supervisor's worker only.
  struct running {
    std::string config;  // the settings it was started with (JSON text)
    std::shared_ptr<link> l;
    std::shared_ptr<shovel> s;
  };
  std::map<std::string, running> running_;
  bool stopping_ = false;
  bool reconcile_queued_ = false;
  std::shared_ptr<void> timer_;  // boost::asio::steady_timer, hidden from the header

  mutable std::mutex status_mutex_;
  std::map<std::string, link_status> status_;
};

}  // namespace warren::federation
