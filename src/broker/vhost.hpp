// Virtual hosts. A vhost owns its exchanges, queues, bindings, consumers and the delivery
// bookkeeping of the channels that use it, and runs on one worker (its home): every method
// below must be called on that worker. Channels on other workers reach it by message passing
// (the AMQP layer posts to the home worker) and it answers the same way, through the
// delivery_target each channel registers. Spreading a vhost's queues over several workers is
// the next step; the interface (ids, targets, no shared pointers into the model) allows it.
#pragma once

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "broker/exchange.hpp"
#include "broker/forward.hpp"
#include "broker/journal.hpp"
#include "broker/queue.hpp"
#include "broker/read_cache.hpp"
#include "broker/routing.hpp"
#include "broker/views.hpp"
#include "common/limited_count.hpp"

namespace warren::broker {

// The receiving side of a channel. Called on the vhost's home worker; implementations forward
// to the channel's own worker.
class delivery_target {
 public:
  virtual ~delivery_target() = default;
  virtual void deliver(const std::string& consumer_tag, uint64_t delivery_tag, bool redelivered,
                       const message_ptr& m) = 0;
  // The server cancelled this consumer (its queue was deleted).
  virtual void cancelled(const std::string& consumer_tag) = 0;
  // Stop (true) or resume (false) taking publishes from this channel's connection: a queue it
  // publishes to has more backlog than its consumers are draining.
  virtual void throttle(bool /*on*/) {}
};

struct channel_record;

struct consumer {
  std::string tag;
  channel_record* channel = nullptr;
  queue* q = nullptr;
  uint16_t prefetch = 0;  // 0: unlimited
  uint32_t unacked = 0;
  bool no_ack = false;
  bool exclusive = false;
  int32_t priority = 0;  // x-priority
};

struct unacked_message {
  queue::entry entry;
  dest_id queue_id;
  uint32_t store_queue = 0;   // the queue's store id, to release the message even if it is gone
  consumer* owner = nullptr;  // null for basic.get or once the consumer is gone
};

// A channel's unacknowledged deliveries by tag. Their nodes come from the vhost's pool, so a
// delivery and its ack reuse memory instead of allocating and freeing a node each.
using unacked_map = std::pmr::map<uint64_t, unacked_message>;

struct channel_record {
  explicit channel_record(std::pmr::memory_resource* pool) : unacked(pool) {}

  uint64_t id = 0;
  uint64_t connection_id = 0;
  std::shared_ptr<delivery_target> target;
  uint64_t next_tag = 1;
  uint16_t global_prefetch = 0;  // basic.qos global=true
  uint32_t unacked_count = 0;
  // The channel's unacknowledged deliveries over every shard, shared by its records on them, for
  // basic.qos global=true (null: this record's count is the channel's). A shard reserves a slot
  // before it delivers.
  std::shared_ptr<std::atomic<int64_t>> global_unacked;
  uint32_t in_transit = 0;        // deliveries sent to the channel and not yet credited back
  uint64_t in_transit_bytes = 0;  // their bodies
  uint32_t throttled_by = 0;      // queues holding this channel's publishes back
  bool flow_active = true;
  unacked_map unacked;
  std::map<std::string, std::unique_ptr<consumer>, std::less<>> consumers;
};

struct queue_declare_request {
  std::string name;  // empty: server-named
  bool passive = false;
  bool durable = false;
  bool exclusive = false;
  bool auto_delete = false;
  common::field_table arguments;
  uint64_t connection_id = 0;
  uint32_t store_id = 0;  // restoring definitions: the id the queue had (0: a new one)
  // Called (not for passive declares) once the name is settled, server-named ones included, and
  // before the queue is compared or created: an error refuses the declaration. The AMQP and HTTP
  // layers check the user's permissions here (configure on the queue; read on it and write on
  // its dead-letter exchange when `exists` is false), in RabbitMQ's order.
  std::function<maybe_error(const std::string& name, bool exists)> authorize;
};
struct queue_declare_ok {
  std::string name;
  uint32_t message_count = 0;
  uint32_t consumer_count = 0;
  // The queue lives on this other shard: its counts are there (vhost::queue_counts).
  size_t shard = SIZE_MAX;
};

struct get_ok {
  uint64_t delivery_tag;
  bool redelivered;
  uint32_t message_count;  // left in the queue
  message_ptr msg;
};
struct get_empty {};

enum class publish_outcome { routed, unroutable, rejected };

// A publish's part taken by the queues of another shard, answered on that shard's thread: the
// store ticket to wait for before confirming (0: none) and whether a queue refused it.
using shard_answer = std::function<void(uint64_t ticket, bool rejected)>;

class vhost {
 public:
  vhost(std::string name, size_t home_worker);
  const std::string& name() const { return name_; }
  size_t home_worker() const { return home_; }

  // --- exchanges ---
  maybe_error declare_exchange(const exchange_settings& s, bool passive);
  maybe_error delete_exchange(std::string_view name, bool if_unused);
  bool has_exchange(std::string_view name) const;
  maybe_error bind(std::string_view source, dest_id dest, const std::string& key,
                   const common::field_table& args);
  maybe_error unbind(std::string_view source, dest_id dest, const std::string& key,
                     const common::field_table& args);
  // Resolve names for bind/unbind. `connection_id` checks exclusive ownership.
  std::variant<dest_id, error> queue_dest(std::string_view name, uint64_t connection_id,
                                          bool check_exclusive = true);
  std::variant<dest_id, error> exchange_dest(std::string_view name) const;

  // --- queues ---
  std::variant<queue_declare_ok, error> declare_queue(const queue_declare_request& r);
  std::variant<uint32_t, error> purge_queue(std::string_view name, uint64_t connection_id);
  std::variant<uint32_t, error> delete_queue(std::string_view name, bool if_unused, bool if_empty,
                                             uint64_t connection_id);

  // --- publishing ---
  // Routes through the exchange (and exchange-to-exchange bindings, and alternate exchanges),
  // enqueues in every target queue and dispatches to consumers. An error means the publish
  // itself is refused (missing or internal exchange).
  // `publisher` is the publishing channel's id (0: none), for backlog throttling.
  // `sync_ticket`, if given, receives what to wait for before confirming (see journal::write);
  // 0 when nothing went to the store.
  // Queues on other shards get the message by message passing: with `answer`, each such shard
  // calls it once (on its own thread) and `*remote` counts them.
  std::variant<publish_outcome, error> publish(message_ptr m, uint64_t publisher = 0,
                                               uint64_t* sync_ticket = nullptr,
                                               const shard_answer* answer = nullptr,
                                               uint32_t* remote = nullptr);
  // A queue with consumers and more ready messages than backlog_high holds back the channels
  // publishing to it once they are flow_slack messages ahead of its deliveries, until the
  // deliveries catch up or the backlog is down to backlog_low ("queues are fastest when empty",
  // seed 001). Publishers slower than the consumers never wait, however deep the backlog.
  static constexpr size_t backlog_high = 4000;
  static constexpr size_t backlog_low = 1000;
  static constexpr size_t flow_slack = 1000;
  // The same in bytes of bodies, whichever mark is passed first: counted in messages alone,
  // 1 MB publishers (seed 000's flood) ran 4 GB of backlog and 1 GB of slack ahead of a queue's
  // consumers, so the global memory alarm tripped first and blocked every publisher, including
  // those of queues that kept up.
  static constexpr uint64_t backlog_high_bytes = 64u << 20;
  static constexpr uint64_t backlog_low_bytes = 16u << 20;
  static constexpr int64_t flow_slack_bytes = 16 << 20;

  // --- channels and consumers ---
  // The home's record of a channel shares the channel's count over the shards.
  void share_unacked(uint64_t channel_id, std::shared_ptr<std::atomic<int64_t>> n) {
    auto it = channels_.find(channel_id);
    if (it != channels_.end()) it->second.global_unacked = std::move(n);
  }
  // On every shard: the channel's record there.
  void open_channel(uint64_t channel_id, uint64_t connection_id,
                    std::shared_ptr<delivery_target> target,
                    std::shared_ptr<std::atomic<int64_t>> global_unacked = nullptr);
  // Requeues the channel's unacknowledged messages and removes its consumers.
  void close_channel(uint64_t channel_id);
  // Deletes the connection's exclusive queues.
  void close_connection(uint64_t connection_id);
  // Registers a consumer without delivering yet: the caller sends consume-ok first, then calls
  // dispatch_queue, so that no delivery overtakes the consume-ok.
  maybe_error consume(uint64_t channel_id, std::string_view queue_name, const std::string& tag,
                      bool no_ack, bool exclusive, uint16_t prefetch, uint64_t connection_id,
                      const common::field_table& args = {});
  void dispatch_queue(std::string_view name);
  void cancel(uint64_t channel_id, std::string_view tag);
  bool has_consumer(uint64_t channel_id, std::string_view tag) const;
  std::variant<get_ok, get_empty, error> get(uint64_t channel_id, std::string_view queue_name,
                                             bool no_ack, uint64_t connection_id);
  // `strict` false: a multiple settle with nothing outstanding up to `tag` is no error (a
  // channel spreading one client ack over several shards).
  maybe_error ack(uint64_t channel_id, uint64_t tag, bool multiple, bool strict = true);
  maybe_error reject(uint64_t channel_id, uint64_t tag, bool multiple, bool requeue,
                     bool strict = true);
  void recover(uint64_t channel_id);
  void set_global_prefetch(uint64_t channel_id, uint16_t n);
  // The channel wrote n deliveries (`bytes` of bodies) out: room for more (see transit_window).
  void credit(uint64_t channel_id, uint32_t n, uint64_t bytes = 0);
  // Deliveries a channel may have in transit (posted, not yet written to its socket). Bounds
  // the memory a slow consumer can make the broker hold outside its queues, acked or not.
  static constexpr uint32_t transit_window = 2000;
  // The same in body bytes (one delivery always goes, however large): each delivery is copied
  // into its connection's output, so 50 consumers with prefetch 10 of 1 MB messages held 500 MB
  // of copies of a 10 MB backlog, and tripped the memory alarm for every publisher.
  static constexpr uint64_t transit_window_bytes = 1u << 20;
  void set_flow(uint64_t channel_id, bool active);

  // Periodic housekeeping on the home worker: expires messages whose TTL passed (dead-lettering
  // them) and deletes queues unused for their x-expires.
  void tick(int64_t now);

  // --- persistence ---
  // From now on durable definitions and persistent messages in durable queues go to `j` (which
  // must outlive the vhost's use of it). Set before recovery; restore calls do not journal.
  void set_journal(journal* j) {
    journal_ = j;
    for (auto& sh : owned_shards_) sh->journal_ = j;
  }
  journal* get_journal() const { return journal_; }
  // Tells `j` every durable definition (exchanges, queues, bindings): a snapshot of the state.
  void snapshot(definitions_journal& j) const;
  // Recovery: puts back a stored message (store_id and store_segment set) into the queue
  // whose store id is `queue_store_id`, marked redelivered. False if there is no such queue.
  bool restore_message(uint32_t queue_store_id, message_ptr m);
  // The same for a queue that pages it at once (queue::enqueue_paged): no message is decoded.
  // `paged` says whether it did; false with true returned: call restore_message instead.
  // `now`: now_ms(), read once by the caller for many messages.
  bool restore_paged(uint32_t queue_store_id, const queue::stored_ref& r, int64_t now, bool& paged);
  // Restoring definitions replays them through the ordinary calls; while this is set they are
  // not journalled again.
  void set_restoring(bool on) { restoring_ = on; }
  // With a journal, a queue holding more ready messages in memory than this pages the next
  // ones out: they stay on disk, their locations too (broker/paged_index.hpp), and are read
  // back ahead of delivery.
  // Applies to queues declared after the call.
  void set_page_threshold(size_t n) {
    page_threshold_ = n;
    for (auto& sh : owned_shards_) sh->page_threshold_ = n;
  }
  static constexpr size_t default_page_threshold = 20000;
  // Memory pressure (the broker's memory passed its paging mark): every queue keeps only its
  // read-ahead in memory and pages what arrives until it is off again. What is in memory
  // beyond the read-ahead goes by page_out_some.
  void set_memory_pressure(bool on);
  bool memory_pressure() const { return memory_pressure_; }
  // Under memory pressure, one step of paging out what is in memory beyond the read-ahead:
  // at most about `budget_bytes` (bodies plus a fixed cost per message). `more` when the budget
  // ran out (another step may find more); `ticket` is the store ticket to wait for before the
  // next step, so that the copies waiting in the store's write batch stay within one step.
  struct page_out_step {
    size_t messages = 0;
    uint64_t ticket = 0;
    bool more = false;
  };
  page_out_step page_out_some(size_t budget_bytes);

  // The web gateway: messages published to the sink exchange `exchange` (x-warren-inbox, -room
  // or -feed) also go to `fn`, on the home worker. False if there is no such exchange or it is
  // not a sink exchange.
  bool attach_sink(std::string_view exchange, std::function<bool(const message&)> fn);
  // A sink that wrote the message being published to the store says so: publish reports the
  // ticket through its `sync_ticket`, so that a confirm or an answer waits for the disk.
  void external_stored(uint64_t ticket) { external_ticket_ = std::max(external_ticket_, ticket); }
  // During a publish with an answer: that answer, counted as one more node's, for a sink that
  // keeps the message back and stores it later (the web gateway's slot hand-over); the sink calls
  // it once with its ticket. Empty outside such a publish.
  shard_answer defer_answer() {
    if (!answer_ || !remote_) return {};
    ++*remote_;
    return *answer_;
  }
  // An exchange the broker itself provides (the gateway's warren.*): declared at every start
  // before recovery, never journalled or exported, and not deletable; bindings to it are
  // journalled as usual. Like declare_exchange otherwise (an existing equivalent one is fine).
  maybe_error declare_builtin_exchange(const exchange_settings& s);

  // --- management (vhost_views.cpp); home worker only ---
  // Copies of the queues (all, or the one named `only`), with their history when asked.
  std::vector<queue_view> view_queues(std::string_view only = {}, bool with_history = false) const;
  // For one page of a long list: how many queues pass `keep` (all when it is empty), and views of
  // those from the `skip`-th on, in name order, at most `count` of them. Walks the names only;
  // builds views for the page alone.
  size_t count_queues(const std::function<bool(std::string_view)>& keep) const;
  std::vector<queue_view> view_queues_window(const std::function<bool(std::string_view)>& keep,
                                             size_t skip, size_t count,
                                             bool with_history = false) const;
  std::vector<exchange_view> view_exchanges() const;
  std::optional<exchange_view> view_exchange(std::string_view name) const;  // "" is the default
  // Every binding, the default exchange's implicit ones (to each queue by its name) first.
  std::vector<binding_view> view_bindings() const;
  // The consumers of every queue, or of the queue named `queue`.
  std::vector<consumer_view> view_consumers(std::string_view queue = {}) const;
  std::vector<channel_usage> view_channels() const;
  // Sums over the queues: live up to live_totals_limit queues, else as of the last sample.
  vhost_totals totals() const;
  // The vhost's own history (the sums of its queues), sampled with them.
  const queue_history& history() const { return history_; }
  // Ready and unacknowledged messages at the last sample: any thread (the overview's sampler).
  // Over every shard.
  uint64_t sampled_ready() const {
    uint64_t n = sampled_ready_.load(std::memory_order_relaxed);
    for (const auto& sh : owned_shards_) n += sh->sampled_ready_.load(std::memory_order_relaxed);
    return n;
  }
  uint64_t sampled_unacked() const {
    uint64_t n = sampled_unacked_.load(std::memory_order_relaxed);
    for (const auto& sh : owned_shards_) n += sh->sampled_unacked_.load(std::memory_order_relaxed);
    return n;
  }
  // Samples every queue, exchange and the vhost itself (tick does it every sample interval).
  void sample(int64_t wall);
  // The management API's "get messages": takes up to `count` ready messages as a basic.get on a
  // channel of its own would, then settles them: requeued (ack_requeue_true,
  // reject_requeue_true: redelivered from then on), acknowledged or rejected (dead-lettered).
  enum class fetch_mode {
    ack_requeue_true,
    ack_requeue_false,
    reject_requeue_true,
    reject_requeue_false
  };
  std::variant<std::vector<get_ok>, error> fetch(std::string_view queue, size_t count,
                                                 fetch_mode m);
  // Deletes every queue (the vhost itself is being deleted), cancelling their consumers.
  void destroy_all();

  // Read-only access for statistics and tests (home worker only); null if there is none.
  const queue* inspect_queue(std::string_view name) const { return find_queue(name); }
  const exchange* inspect_exchange(std::string_view name) const { return find_exchange(name); }
  size_t queue_count() const { return queues_.size(); }
  size_t exchange_count() const { return routing_.exchanges().size(); }
  // The routing state (exchanges, bindings, the queue directory), home worker only. Every change
  // to it is also handed, as a value, to `fn` (on the home worker, after the change is made):
  // fed to another routing_table, they keep it equal to this one.
  const routing_table& routing() const { return routing_; }
  void set_routing_observer(std::function<void(const routing_change&)> fn) {
    routing_observer_ = std::move(fn);
  }
  // The observer set, so that a second one can chain to it.
  const std::function<void(const routing_change&)>& routing_observer() const {
    return routing_observer_;
  }
  // In a cluster (app/cluster_definitions.hpp): the node a queue of this name lives on when that
  // is another node, else nullopt. Asked only for names this vhost does not have: declaring,
  // using or deleting such a queue here is refused with 405 naming its node (serving a queue
  // from another node is not built yet). Home worker; the function itself may be called there.
  struct remote_queue_info {
    std::string node;
    bool durable = true;
    bool node_running = true;  // else RabbitMQ's 404 for a queue whose home node is down
    bool exclusive = false;    // exclusive to a connection there: RabbitMQ's 405 here
  };
  using remote_queue_fn = std::function<std::optional<remote_queue_info>(std::string_view name)>;
  void set_remote_queue_lookup(remote_queue_fn fn) { remote_queue_ = std::move(fn); }
  // Any thread (the function is set when the vhost is tapped, before its clients come).
  std::optional<remote_queue_info> remote_queue_of(std::string_view name) const {
    return remote_queue_ ? remote_queue_(name) : std::nullopt;
  }

  // --- queues on other nodes (vhost_remote.cpp; docs/cluster.md, "Queues across nodes") ---
  // Authority only. A queue of another node has an id in the routing table (so bindings and the
  // default exchange route to it) but no queue object here: a publish routed to such queues is
  // handed to `sender` once per node, with the names of that node's targets, on this thread.
  // With `answer` (confirm or tx mode) the sender calls it once, from any thread, when the other
  // node has stored the message (rejected: it did not, or is down).
  using remote_sender =
      std::function<void(const std::string& node, const message& m, std::vector<std::string> queues,
                         const shard_answer* answer)>;
  void set_remote_sender(remote_sender s) {
    remote_sender_ = std::move(s);
    in_cluster_.store(true, std::memory_order_relaxed);
  }
  // Any thread: publishes may go to other nodes, whose answers a confirm or tx waits for.
  bool in_cluster() const { return in_cluster_.load(std::memory_order_relaxed); }
  // The queue `name` lives on `node` (ignored when a queue of that name lives here).
  void add_remote_queue(const std::string& name, const std::string& node);
  // It went (with its bindings here).
  void remove_remote_queue(std::string_view name);
  // Its id, for binding to it (the bindings etcd has).
  std::optional<dest_id> remote_queue_id(std::string_view name) const;
  // A sink hands `m` to `node` (the web gateway's owner of a user: web/hub_cluster.cpp), as a
  // forward naming no queue: that node's sink exchange `m.exchange` takes it (publish_forwarded).
  // During a publish, that publish's confirm waits for the node's answer as for a queue there.
  void send_to_node(const std::string& node, const message& m);
  // A publish another node forwarded (broker/forward.hpp): into the named queues that exist here,
  // no routing; rejected when none does. Naming no queue, it goes to the sink of the sink
  // exchange it names (the web gateway's), only to it. The channel took the forward header out of
  // the message's encoded properties (`t`); publish() takes it out of decoded ones (forwarded
  // messages made without encoded properties).
  std::variant<publish_outcome, error> publish_forwarded(message_ptr m, forward_target t,
                                                         uint64_t publisher, uint64_t* sync_ticket,
                                                         const shard_answer* answer,
                                                         uint32_t* remote);

  // --- shards (docs/architecture.md, "Spreading queues over workers") ---
  // The vhost in the registry is the authority: it runs on its home worker and keeps the
  // definitions (exchanges, bindings, routing, every queue's declaration) and the queues placed
  // on the home shard. With shards enabled, every other worker has a shard of the vhost (a vhost
  // object too) holding the queues placed there, their consumers and the delivery bookkeeping
  // of every channel for them. The authority keeps a twin of such a queue (its declaration, no
  // messages) and hands publishes routed to it over to its shard.
  enum class placement { home, hash };
  // `post(i, fn)` runs fn on worker i's thread. Authority only, once, before recovery: until
  // start_shards() the shards are called directly (recovery runs before the workers do).
  using shard_poster = std::function<void(size_t, std::function<void()>)>;
  // `defer(i, fn)`, called on worker i's thread, runs fn there once the handler running now
  // returns, or before that thread next posts anything (net::worker::defer). Given, hand-overs
  // to another shard made during one handler go there as one message (hand_over); without it,
  // one post each.
  void enable_shards(size_t count, placement p, shard_poster post, shard_poster defer = {});
  void start_shards() { direct_ = false; }
  size_t shard_count() const { return shards_.empty() ? 1 : shards_.size(); }
  // This object's shard: the worker it runs on.
  size_t shard_index() const { return shard_; }
  vhost& shard_at(size_t i) { return shards_.empty() ? *this : *shards_[i]; }
  // This shard's cache of records its paging queues read back (read_cache.hpp).
  const read_cache& paging_reads() const { return read_cache_; }
  bool is_authority() const { return authority_ == this; }
  vhost& authority() const { return *authority_; }
  // The shard the queue of that name lives on (the home's when there is none). Any thread.
  size_t locate_queue(std::string_view name) const;
  // The shard of a queue living away from the home; SIZE_MAX for the home's or none. Any thread.
  size_t located_shard(std::string_view name) const;
  // On a shard other than the authority, on its worker: publish() routed on this worker's copy of
  // the routing table (broker/routing_copy.cpp), the message handed to each other shard holding
  // target queues once. Nothing (nullopt, `m` untouched) when the copy cannot route it: it has
  // not yet applied every change the authority made, or an exchange on the way keeps state or is
  // missing or internal; the caller then sends the publish to the authority.
  std::optional<std::variant<publish_outcome, error>> publish_here(message_ptr& m,
                                                                   uint64_t publisher,
                                                                   uint64_t* sync_ticket,
                                                                   const shard_answer* answer,
                                                                   uint32_t* remote);
  // True when this shard's copy has applied every routing change the authority made. On the
  // shard's worker.
  bool copy_current() const {
    return copy_version_ == authority_->routing_version_.load(std::memory_order_acquire);
  }
  // The shard that numbered a delivery tag (the home's tags have no shard bits).
  size_t tag_shard(uint64_t tag) const {
    uint64_t b = tag >> tag_shard_shift;
    return b == 0 ? home_ : size_t(b - 1);
  }
  static constexpr int tag_shard_shift = 56;
  // On the queue's shard: its ready messages and consumers, as a declare-ok reports them.
  std::optional<std::pair<uint32_t, uint32_t>> queue_counts(std::string_view name);

  // --- limits (RabbitMQ's vhost limits: max-connections, max-queues) ---
  // The exception to "home worker only": any thread. The AMQP layer counts connections here at
  // connection.open and close on its own workers; the limits are set by the management API.
  // Values as set: limited_count::unset, negative (no limit), 0 (none allowed) or a maximum.
  common::limited_count& connections() { return connections_; }
  const common::limited_count& connections() const { return connections_; }
  void set_max_queues(int64_t v) { max_queues_.store(v, std::memory_order_relaxed); }
  int64_t max_queues() const { return max_queues_.load(std::memory_order_relaxed); }

 private:
  static constexpr dest_id exchange_bit = routing_table::exchange_bit;
  queue* find_queue(std::string_view name) const;
  queue* queue_by_id(dest_id id) const;
  exchange* find_exchange(std::string_view name) const { return routing_.find_exchange(name); }
  exchange* exchange_by_id(dest_id id) const { return routing_.exchange_by_id(id); }
  // Applies a change to the routing table and tells the observer (set_routing_observer) and the
  // other shards' copies (`place`: for queue_added, the shard the queue lives on).
  void change_routing(routing_change c, size_t place = SIZE_MAX);
  // routing_copy.cpp. Authority: the change goes to every other shard's copy, in order.
  void copy_routing(const routing_change& c, size_t place);
  // A shard: applies the authority's change number `version` to its copy.
  void apply_copy(const routing_change& c, uint64_t version, size_t place,
                  const std::shared_ptr<copied_counters>& counters);
  // The exchanges in `sources` that an auto-delete empties go.
  void auto_delete_exchanges(const std::vector<std::string>& sources);
  void dispatch(queue& q);
  // basic.qos global=true: room for one more acknowledged delivery on the channel (counted, and
  // reserved against the limit, over its shards when they share a count). Called once per
  // delivery chosen.
  bool reserve_global(channel_record& ch);
  // A settle freed room on a channel that was at its global limit: every shard dispatches to its
  // consumers again.
  void released_global(channel_record& ch);
  void dispatch_channel(uint64_t channel_id);
  void deliver_one(consumer& c, queue::entry e);
  void settle(channel_record& ch, unacked_map::iterator it, bool requeue,
              std::vector<queue*>& touched, bool dead = false);
  // Acks (dead=false, requeue=false), requeues, or rejects to the dead-letter exchange.
  maybe_error settle_range(uint64_t channel_id, uint64_t tag, bool multiple, bool requeue,
                           bool dead, bool strict = true);
  void remove_consumer(consumer& c, bool notify);
  // Routes a message the queue gives up (rejected, expired, over its length) to the queue's
  // dead-letter exchange, with the x-death header RabbitMQ writes.
  void dead_letter(queue& q, queue::entry e, std::string_view reason, int64_t now);
  void dead_letter_all(queue& q, std::vector<queue::entry>& entries, std::string_view reason,
                       int64_t now);
  // True if the queue took the message.
  bool enqueue(queue& q, message_ptr m, int64_t now, bool& rejected, bool stored = false);
  // Enqueues a message in its target queues, storing it first when it is persistent and some
  // of them are durable. Returns the store ticket (0: not stored).
  uint64_t enqueue_all(message_ptr m, std::span<const dest_id> targets, int64_t now, bool& rejected,
                       uint64_t publisher);
  // A shard: fn(authority) on the authority's thread.
  void to_authority(std::function<void(vhost&)> fn);
  // Shards: runs fn(shard) on shard s's thread (directly until start_shards()).
  void on_shard(size_t s, std::function<void(vhost&)> fn);
  // Authority: the queue's definitions go (journal, routing, the directory); its runtime was
  // torn down on its shard. Nothing if there is no such queue.
  void forget_queue(dest_id id);
  // The declaration part of destroy_queue (authority only).
  void drop_definition(queue& q);
  // A shard's queue tore itself down: the authority forgets it.
  void queue_gone(dest_id id);
  // Routes a dead-lettered message from the authority (see dead_letter).
  void route_dead_letter(message_ptr m, std::vector<std::string> death_queues, bool any_rejected);
  size_t twin_shard(dest_id id) const {
    auto it = twins_.find(id);
    return it == twins_.end() ? SIZE_MAX : it->second;
  }
  // A shard takes a queue the authority placed on it.
  void adopt(std::unique_ptr<queue> q);
  // The message goes to the queues `ids` of shard s (enqueue_all there). With a deferrer, in
  // one message with the other hand-overs from this shard to s during this handler.
  void hand_over(size_t s, message_ptr m, std::vector<dest_id> ids, uint64_t publisher,
                 const shard_answer* answer);
  // Sends the hand-overs gathered since the last call, one message per destination shard.
  void flush_hand_overs();

  // The queue is done with this message for good: the store forgets it there.
  void release(const queue& q, const queue::entry& e) {
    if (journal_ && e.stored)
      journal_->release(e.msg->store_segment, e.msg->store_offset, q.store_id);
  }
  void journal_binding(bool added, std::string_view source, dest_id dest, const std::string& key,
                       const common::field_table& args);
  bool durable_dest(dest_id d) const;
  void throttle(queue& q, uint64_t publisher);
  void release_throttles(queue& q);
  void destroy_queue(queue& q, bool notify_consumers);
  void maybe_auto_delete_exchange(std::string_view name);
  maybe_error check_exclusive(const queue& q, uint64_t connection_id) const;
  error no_queue(std::string_view name) const;
  error no_exchange(std::string_view name) const;

  std::string name_;
  size_t home_;
  size_t shard_ = 0;  // this object's worker (home_ for the authority)
  vhost* authority_ = this;
  std::vector<std::unique_ptr<vhost>> owned_shards_;
  std::vector<vhost*> shards_;  // by worker, the authority included; empty: not sharded
  placement placement_ = placement::home;
  shard_poster post_;
  shard_poster defer_;
  bool direct_ = true;
  // Hand-overs from this object's worker to other shards not sent yet, by destination shard
  // (hand_over); flush_hand_overs is armed to run when the worker's handler returns.
  struct pending_hand_over {
    message_ptr m;
    std::vector<dest_id> ids;
    uint64_t publisher;
    shard_answer answer;
  };
  std::vector<std::vector<pending_hand_over>> outgoing_;
  bool flush_armed_ = false;
  std::map<dest_id, size_t> twins_;  // authority: queues living on other shards
  // A shard's copy: the queues living on other shards than this one, by id (twins_'s role here).
  std::map<dest_id, size_t> places_;
  // Authority: the number of routing changes made, bumped before the change is posted to the
  // copies (and so before any answer to whoever caused it). On a line of its own: publishers on
  // every worker read it, the authority writes it only when definitions change.
  alignas(64) std::atomic<uint64_t> routing_version_{0};
  // A shard: the last change its copy applied (on its worker).
  alignas(64) uint64_t copy_version_ = 0;
  mutable std::shared_mutex located_mutex_;
  std::map<std::string, size_t, std::less<>> located_;  // the same by name, for any thread
  uint64_t tag_base_ = 0;
  const shard_answer* answer_ = nullptr;  // during publish()
  bool keeps_published_ = false;          // during publish(): the exchange keeps the message
  uint32_t* remote_ = nullptr;  // shards other than the home number their deliveries from here
  journal* journal_ = nullptr;
  read_cache read_cache_;         // this shard's paging reads (read_cache.hpp)
  uint64_t external_ticket_ = 0;  // set by sinks during one publish
  // The store's ticket of the last durable message written: a dropped duplicate's confirm
  // waits for it, so it never comes before the original's (broker/dedup.hpp).
  uint64_t last_write_ticket_ = 0;
  bool restoring_ = false;
  size_t page_threshold_ = default_page_threshold;
  bool memory_pressure_ = false;
  std::string page_cursor_;  // page_out_some resumes at this queue
  uint32_t next_store_queue_ = 1;
  dest_id next_id_ = routing_table::first_free_id;
  routing_table routing_;
  std::function<void(const routing_change&)> routing_observer_;
  remote_queue_fn remote_queue_;
  struct remote_entry {
    std::string node, name;
  };
  std::map<dest_id, remote_entry> remote_ids_;  // authority: queues of other nodes
  std::map<std::string, dest_id, std::less<>> remote_names_;
  remote_sender remote_sender_;
  std::atomic<bool> in_cluster_{false};
  // enqueue_all: the targets among `targets` that live on other nodes go there (one send per
  // node); the rest stay in `targets`.
  void send_remote(const message& m, std::vector<dest_id>& remote);
  // The refusal of a queue that lives on another node, if `name` is one.
  maybe_error remote_queue(std::string_view name) const;
  std::map<std::string, std::unique_ptr<queue>, std::less<>> queues_;
  std::map<dest_id, queue*> queue_ids_;
  std::map<uint32_t, queue*> store_queues_;  // durable queues by store id
  // Before channels_: their unacked maps give their nodes back to it when they go. Keeps the
  // largest number of unacknowledged deliveries there has been (nodes of about 100 bytes).
  std::pmr::unsynchronized_pool_resource unacked_pool_;
  std::map<uint64_t, channel_record> channels_;
  std::set<std::string, std::less<>> builtin_;  // declare_builtin_exchange
  // Queues with ready messages that expire, or an x-expires: all that tick() looks at. A queue
  // lists itself (queue::list_timed); tick() drops those with neither any more.
  std::vector<dest_id> timed_;
  // totals(): live up to this many queues, else from the last sample (see vhost_views.cpp).
  static constexpr size_t live_totals_limit = 10'000;
  vhost_totals sampled_totals_;
  vhost_totals walk_totals() const;
  queue_counters retired_;  // of queues deleted, so totals never go back
  queue_history history_;
  int64_t next_sample_ = 0;  // steady ms
  common::limited_count connections_;
  std::atomic<int64_t> max_queues_{common::limited_count::unset};
  std::atomic<uint64_t> sampled_ready_{0};
  std::atomic<uint64_t> sampled_unacked_{0};
  uint64_t next_fetch_channel_ = 0;
};

// The set of vhosts. Built at start-up; vhosts may be added at run time (the management API),
// never removed, so a pointer found stays valid. Lookups from any thread take a shared lock
// (once per connection.open or HTTP request, not per message); each vhost itself is touched
// only on its home worker.
class vhost_registry {
 public:
  vhost& add(std::string name, size_t home_worker = 0);
  // Adds a vhost built (and recovered) elsewhere; if the name is taken, the existing one wins and
  // `v` is dropped.
  vhost& add(std::unique_ptr<vhost> v);
  vhost* find(std::string_view name) const;
  // Takes a vhost out of the registry (it is being deleted): find no longer sees it, but the
  // object lives on until the registry goes, since workers may still hold pointers to it.
  // Null if there is no such vhost.
  vhost* retire(std::string_view name);
  size_t size() const;
  // In the order they were added.
  std::vector<std::string> names() const;

 private:
  mutable std::shared_mutex mutex_;
  std::map<std::string, std::unique_ptr<vhost>, std::less<>> vhosts_;
  std::vector<std::string> order_;
  std::vector<std::unique_ptr<vhost>> retired_;
};

}  // namespace warren::broker
