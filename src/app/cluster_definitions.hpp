// The cluster's exchanges, bindings and queue records, kept in etcd (docs/cluster.md,
// "Exchanges, bindings and queue records"; keys in cluster_definitions_codec.hpp).
//
// Writing: each vhost's routing observer (broker::vhost::set_routing_observer, on its home worker)
// hands every change of exchanges, bindings and queues to a `tap`, which turns them into
// definitions and posts them, a batch per turn of the worker, to the cluster thread. There each
// change made here is written to etcd after it was applied locally (the declaring client has its
// answer already: read-your-writes on this node, asynchronous elsewhere): a create-if-absent txn
// for an exchange, a binding or a queue record, a delete (with the bindings that go with it) for
// a removal.
//
// Applying: every node mirrors the prefix and makes its own exchanges and bindings equal to
// etcd's through the vhost's ordinary methods on its home worker (the calls the management API
// and a definitions import make); a queue of another node is only recorded (remote_directory):
// it is listed by the management API, and declaring or using it here is refused with its node.
// What this node wrote is not applied back while its write is in flight or its echo has not come
// back through the watch (the key is "pending"), so that an old echo never undoes a newer change.
//
// Conflicts: etcd's create-if-absent decides. A node that declared an exchange etcd already has
// with other settings adopts etcd's (replaces its own, logged); a queue another node recorded
// first stays this node's local queue, unrecorded (logged).
//
// Joining (the union, as for vhosts): what this node has and etcd never had is written; what
// etcd has is applied here. Its own queue records that it no longer has (a transient queue
// before its restart) are deleted.
//
// Lives on the cluster thread, except the taps (home workers) and remote_directory (any thread).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "app/cluster_definitions_codec.hpp"
#include "app/node_links.hpp"
#include "broker/vhost.hpp"
#include "cluster/prefix_mirror.hpp"
#include "net/worker.hpp"

namespace warren::app {

// The queues of other nodes (their records in etcd) and the bindings to them, by vhost. Written
// by the cluster thread; read by any thread (vhosts' home workers refusing their names, the
// management API listing them). One mutex, taken per lookup: a declare of a name this node does
// not have, or a management request; never per message.
class remote_directory {
 public:
  std::optional<std::string> node_of(const std::string& vhost, std::string_view name) const;
  std::optional<queue_record> record_of(const std::string& vhost, std::string_view name) const;
  // Of one vhost, or of all (null).
  std::vector<queue_record> queues(const std::string* vhost) const;
  std::vector<mgmt::binding_def> bindings(const std::string* vhost) const;

  void set_queue(const queue_record& q);
  void erase_queue(const std::string& vhost, const std::string& name);
  void set_binding(const std::string& key, const mgmt::binding_def& b);
  void erase_binding(const std::string& key);
  void erase_vhost(const std::string& vhost);

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::map<std::string, queue_record, std::less<>>, std::less<>> queues_;
  std::map<std::string, mgmt::binding_def> bindings_;  // by key
};

class cluster_definitions : public std::enable_shared_from_this<cluster_definitions> {
 public:
  cluster_definitions(std::shared_ptr<cluster::etcd_client> client, std::string cluster,
                      std::string node, broker::vhost_registry& vhosts, net::worker_pool& pool);
  void start();  // cluster thread: the mirror, and a tap on every vhost
  void stop();   // cluster thread: nothing is posted to it any more
  // Any thread: a vhost was created here (by the API or from etcd): tap it.
  void vhost_created(const std::string& name);
  // Any thread: a vhost was deleted here; `here`: by this node's API (its definitions are
  // deleted from etcd), else it was deleted in etcd by another node, which deletes them.
  void vhost_deleted(const std::string& name, bool here);
  std::shared_ptr<remote_directory> directory() const { return directory_; }
  // Before start(): how links between nodes find a node and the cluster's secret
  // (app/node_links.hpp); every tapped vhost sends publishes for other nodes' queues over them.
  void set_links(std::function<std::optional<node_address>(const std::string&)> locate,
                 std::function<std::string()> secret, std::chrono::seconds liveness) {
    locate_ = std::move(locate);
    secret_ = std::move(secret);
    liveness_ = liveness;
  }

  // A change of this node's definitions, as a tap reports it.
  struct local_change {
    bool from_etcd = false;  // made while applying etcd's state: recorded, not written back
    bool put = true;         // else removed (exchange and queue: by vhost and name only)
    definition d;
  };
  struct tap;
  struct sink;

 private:
  enum class kind { exchange, queue, binding };
  // An action that makes this node's definitions equal to etcd's, run on the vhost's home worker.
  struct action {
    enum { declare, remove, replace } what;
    definition d;
    std::string key;
  };

  void install_tap(const std::string& vhost);
  bool current(const tap& t) const;
  void on_snapshot(const tap& t, std::vector<local_change> all);
  void on_local(const tap& t, std::vector<local_change> changes);
  void on_mirror(const cluster::prefix_mirror::items_map& items);
  void on_applied(const std::vector<std::string>& keys);
  void reconcile(const std::string& key);
  void reconcile_all(const std::vector<std::string>& keys);
  void run_actions();
  // Writes: `key`'s value put (create-if-absent, or replacing `old`), or deleted with the
  // bindings of etcd that go with it.
  // `batched`: one of write_puts' items (its key counted pending already).
  void write_put(const std::string& key, const std::string& value, const std::string* old = nullptr,
                 bool batched = false);
  // Several puts, as write_put each, in as few txns as etcd allows; empties `puts`.
  struct put_item {
    std::string key, value;
    std::optional<std::string> old;
  };
  void write_puts(std::vector<put_item>& puts);
  void send_puts();   // queued_puts_, now
  void batch_done();  // a txn of write_puts answered
  // `also`: this node's bindings that went with it; `was`: the value this node had.
  void write_delete(const std::string& key, const definition& d,
                    const std::vector<std::string>& also = {}, const std::string* was = nullptr);
  void written(const std::string& key, const std::string& err, int64_t rev);
  // An auto-delete exchange that etcd still has bound to queues of other nodes.
  bool still_bound_elsewhere(const std::string& key, const mgmt::exchange_def& x) const;
  // Removes from local_ the bindings of `d` (a removed exchange or queue) that went with it, and
  // returns their keys.
  std::vector<std::string> drop_local_bindings(const definition& d);
  const std::string* etcd_value(const std::string& key) const;
  std::string abs(const std::string& key) const { return prefix_ + key; }

  std::shared_ptr<cluster::etcd_client> client_;
  std::string prefix_;  // /warren/<cluster>/definitions/
  std::string node_;
  broker::vhost_registry& vhosts_;
  net::worker_pool& pool_;
  std::shared_ptr<sink> sink_;
  std::shared_ptr<remote_directory> directory_;
  std::shared_ptr<cluster::prefix_mirror> mirror_;
  bool synced_once_ = false;
  std::map<std::string, std::shared_ptr<tap>> taps_;  // by vhost
  std::set<std::string> ready_;                       // vhosts whose snapshot came in
  std::map<std::string, std::string> local_;          // key -> value, this node's definitions
  std::set<std::string> known_;  // keys etcd had when last reconciled (deleted there, not new)
  struct pending {
    int in_flight = 0;
    int64_t rev = 0;  // the revision the mirror must reach before the key is etcd's again
  };
  std::map<std::string, pending> pending_;
  std::vector<put_item> queued_puts_;  // this node's puts gathering while a batch is on its way
  int put_batches_in_flight_ = 0;
  // Pending keys with no write in flight, by the revision the mirror must reach.
  std::multimap<int64_t, std::string> waiting_;
  // Actions posted, not yet run, with etcd's value when they were posted.
  std::map<std::string, std::optional<std::string>> applying_;
  std::map<std::string, std::vector<action>> actions_;  // by vhost, to post
  std::set<std::string> conflicts_logged_;
  // Bindings of etcd to other nodes' queues applied here (this node routes to them), by key.
  std::map<std::string, mgmt::binding_def> remote_bound_;
  std::function<std::optional<node_address>(const std::string&)> locate_;
  std::function<std::string()> secret_;
  std::chrono::seconds liveness_{0};  // node_links::settings::liveness
  // Posts to the vhost's home worker: the queue `name` lives on `node` (nullopt: went).
  void remote_queue_changed(const std::string& vhost, const std::string& name,
                            std::optional<std::string> node);
};

}  // namespace warren::app
