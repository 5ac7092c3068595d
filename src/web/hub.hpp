// The gateway's shared state: user inboxes, rooms, presence and the follow graph. Like a vhost
// it is an actor owned by one worker (the gateway vhost's home, where the warren.* exchanges
// hand it messages); transport connections on every worker reach it by posting, and it answers
// and pushes events by posting back, grouped per worker (a room message to 10 000 members is one
// post per worker, not 10 000).
//
// Every user sent to has an inbox, connected or not: an index entry in memory (its sequence
// numbers, read position and the location of its newest record) and its events in the vhost's
// store, each record pointing to the user's previous one (docs/storage.md, "Inbox records"). While
// the user is connected, and --inbox-linger after, the inbox also has a live part: its
// connections, its rooms and a cache of the events that arrived meanwhile. A connection attaches
// with the last seq it saw and gets what it missed (from the cache, then from the store by
// following the chain), or a reset event when that is no longer held (docs/web-api.md, "The
// inbox, sequence numbers and resuming"). The same mechanism serves a slow reader: a connection
// whose output backs up stops taking live events and catches up from the inbox once it has
// drained, so no connection buffers without bound. Held events expire (--inbox-ttl, or the
// send's own) and are limited in number (--inbox-size); the store gives their space back by
// whole segments.
#pragma once

#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "broker/message.hpp"
#include "store/message_store.hpp"
#include "web/event.hpp"
#include "web/follow_graph.hpp"
#include "web/gateway_counters.hpp"
#include "web/gateway_settings.hpp"
#include "web/gateway_stats.hpp"
#include "web/inbox_entry.hpp"
#include "web/shard_map.hpp"
#include "web/user_table.hpp"

namespace warren::net {
class worker;
class worker_pool;
}  // namespace warren::net

namespace warren::broker {
class vhost;
}

namespace warren::web {

// In a cluster: the exchange through which nodes' hubs talk to each other (hub_cluster.cpp),
// internal (no client publishes to it), declared only with --etcd-endpoints.
inline constexpr std::string_view node_exchange = "warren.nodes";

// What a transport connection implements to receive events (called on its own worker).
class event_receiver {
 public:
  virtual ~event_receiver() = default;
  // Live events, in order. Returns how many it wrote (the others it had already, or it is not
  // taking live events now).
  virtual size_t on_events(const event* evs, size_t n) = 0;
  // The answer to attach() or catch_up(): what was missed (a reset first if some is gone).
  virtual void on_replay(std::vector<event> evs) = 0;
};

// Shared between a connection (on its worker) and the hub (on the hub's worker).
struct session_link {
  event_receiver* receiver = nullptr;  // the connection's worker only; null once it is gone
  net::worker* worker = nullptr;       // the connection's
  std::string user;                    // set before the link is shared; read-only afterwards
  std::string node;  // in a cluster: the node an owner's session stands for (empty: a tab)
};
using link_ptr = std::shared_ptr<session_link>;

struct op_result {
  int code = 200;  // 200 ok; 400, 403, 404 as in docs/web-api.md
  std::string error;
  bool already = false;  // join: was a member already
};

struct member_info {
  std::string user;
  size_t connections;
};

// What a backend reads of an inbox (GET /api/inbox/{user}).
struct inbox_page {
  uint64_t first_seq = 0;  // the oldest held (0: nothing held)
  uint64_t last_seq = 0;   // the newest given out (0: none)
  uint64_t read_seq = 0;
  uint64_t unread = 0;  // held events after read_seq (expired ones not yet trimmed included)
  std::vector<event> events;
  bool more = false;  // events after the last one returned
};

class hub {
 public:
  // `counters` has one entry per worker of the pool; the hub records there, on each worker, the
  // latency of the live events it hands to that worker's connections. `store` (the vhost's) keeps
  // inboxes and room history; without one (tests) they are held in memory only.
  hub(const gateway_settings& settings, broker::vhost& vhost, net::worker_pool& pool,
      follow_graph& follows, std::span<worker_counters> counters,
      store::message_store* store = nullptr);
  ~hub();

  // Once, before the workers start: the inboxes and room histories from the store.
  void recover();

  // --- on the hub's worker ---
  // Adds a connection to its user's inbox (created if needed). With `since`, the events after it
  // are replayed (see the class comment); without, live events only.
  void attach(const link_ptr& l, std::optional<uint64_t> since);
  void detach(const link_ptr& l);
  // A connection that stopped taking live events (slow reader) asks again from `since`.
  void catch_up(const link_ptr& l, uint64_t since);

  op_result join(const std::string& user, const std::string& room);
  op_result leave(const std::string& user, const std::string& room);
  bool room_exists(const std::string& room) const;
  bool is_member(const std::string& user, const std::string& room) const;
  std::vector<member_info> members(const std::string& room) const;
  // {online, connections}
  std::pair<bool, size_t> presence(const std::string& user) const;

  // Sinks of the warren.users, warren.rooms and warren.feed exchanges. True if routed.
  bool on_user_message(const broker::message& m);
  bool on_room_message(const broker::message& m);
  bool on_feed_message(const broker::message& m);
  // Inboxes the last feed message reached (for POST /api/feed/B's answer).
  size_t last_feed_fanout() const { return last_feed_fanout_; }

  // --- the backend's inbox API (on the hub's worker) ---
  // Held events after `since`, oldest first, at most `limit`.
  inbox_page read_inbox(const std::string& user, uint64_t since, size_t limit);
  // Sets the read position (kept in the store, not waited for). Nullopt if the user has no
  // inbox; else the unread count after it. A seq above the last is taken as the last.
  std::optional<uint64_t> set_read(const std::string& user, uint64_t seq);
  // Erases everything held for the user (its connections stay); returns the store ticket to
  // wait for before answering (0: nothing to wait for).
  uint64_t erase(const std::string& user);

  follow_graph& follows() { return follows_; }
  size_t inbox_count() const { return inboxes_.size(); }
  // Fills the hub's part of the gateway's statistics: online users, inboxes, held events, rooms,
  // replays and resets.
  void add_stats(gateway_stats& s) const;

  // Starts the linger timer (call once, before or after the workers start).
  void start(net::worker& home);

  // --- in a cluster (hub_cluster.cpp; docs/cluster.md, "The web gateway across nodes") ---
  struct cluster_hooks {
    std::shared_ptr<const shard_table> shards;
    // On the hub's worker: hands `m` to the hub of `node` (its exchange names the sink there);
    // during a publish, the publish's confirm waits for that node's answer.
    std::function<void(const std::string& node, const broker::message& m)> send;
    // Any thread: whether `node` is running (holds its lease).
    std::function<bool(const std::string& node)> running;
    // On the hub's worker: runs an operation for another node here, where its key lives (a room,
    // a user's inbox or presence, a followee's followers: gateway_http_api.cpp, owner_op); calls
    // `reply` (on the hub's worker) with {"code": C, "error": E, "extra": {...}}.
    std::function<void(const std::string& user, const std::string& op, const std::string& room,
                       const std::string& data, std::function<void(std::string)> reply)>
        owner_op;
  };
  // Once, before the workers start. Without it the hub is the single node's, as always.
  void set_cluster(cluster_hooks h);
  // The sink of the node exchange (warren.nodes): what other nodes' hubs hand this one.
  bool on_node_message(const broker::message& m);
  // The shard map changed: the inboxes and rooms of slots this node gave to another running
  // node are handed to it (hub_handover.cpp), and sessions whose user moved follow it.
  void rehome();
  // An operation on `key` asked here while its slot is being handed to this node: kept back and
  // run (`again`) once the hand-over is complete. False (nothing kept) otherwise.
  bool hold_local(std::string_view key, std::function<void()> again);
  // An operation on `key` (a room, or a user) that another node owns: asked of that node (its
  // owner_op); `done` runs here with its outcome (code, error, extra fields as JSON), or 503 when
  // it does not answer within 5 s. False when `key` is this node's (the caller runs it here).
  using room_answer = std::function<void(int code, std::string error, std::string extra_json)>;
  bool call_owner(const std::string& key, const std::string& user, const std::string& op,
                  const std::string& room, const std::string& data, room_answer done);
  // The same, asked of `node` whatever the map says (`key` picks what it waits for there).
  void call_node(const std::string& node, const std::string& key, const std::string& user,
                 const std::string& op, const std::string& room, const std::string& data,
                 room_answer done);
  // The nodes of the shard map other than this one (none without a cluster).
  std::vector<std::string> other_nodes() const;
  // In a cluster: `user` joined (or left) `room` through this node, which joins it again at the
  // room's new owner if the owner goes (rehome).
  void remember_member(const std::string& room, const std::string& user, bool joined);

 private:
  struct live;
  struct room;
  // A user's inbox: 32 bytes (inbox_entry.hpp), and in inboxes_ about 25 more (where its id is,
  // the id with its length, the index), connected or not.
  using inbox = inbox_entry;
  struct send_options {
    int64_t ttl_ms = -1;  // -1: --inbox-ttl
    bool transient = false;
    bool persistent = true;  // an AMQP confirm waits for its record (HTTP answers always do)
  };
  static send_options options_of(const broker::message& m);

  inbox& get_inbox(const std::string& user);
  inbox* find_inbox(const std::string& user);
  const inbox* find_inbox(const std::string& user) const;
  live& go_live(const std::string& user, inbox& box);
  // The live part of a user's inbox, or null (a user away: no lookup).
  live* live_of(const std::string& user, const inbox& box) const;
  // Holds an event in the inbox (and the store) and queues it for the inbox's connections; a
  // transient one is only queued.
  void push(const std::string& user, inbox& box, const event_tail& tail, const send_options& o);
  void flush();  // posts what push() queued, one task per worker
  // Runs `post` (which posts to connections' workers) once everything the hub wrote to the store
  // so far is on disk, after whatever was released before it: a browser never sees an event a
  // crash could take back (its seq would be given again), and each worker gets the posts in order.
  void release(std::function<void()> post);
  void release_ready();
  void wait_for_store();
  std::vector<event> replay(inbox& box, live* on, uint64_t since);
  // Held events of the inbox with seq >= from, oldest first, at most `limit`.
  std::vector<event> held_from(inbox& box, live* on, uint64_t from, size_t limit, bool& more);
  void note_ticket(uint64_t t, bool persistent);
  int64_t expiry(const send_options& o, int64_t now) const;
  void sweep(int64_t now);
  void count_replay(const std::vector<event>& evs);
  void presence_event(room& r, const std::string& user, bool joined);
  void remove_member(room& r, const std::string& user);
  void tick();
  void arm();

  // --- cluster (hub_cluster.cpp) ---
  struct proxy;     // the sessions here of a user another node owns
  struct interest;  // another node's sessions of a user owned here
  class node_receiver;
  // The node owning `name` when that is not this one; empty when it is (or no map is known).
  std::string away_owner(std::string_view name) const;
  bool forward_to_owner(const std::string& node, const broker::message& m);
  void attach_remote(const link_ptr& l, std::optional<uint64_t> since, const std::string& node);
  bool detach_remote(const link_ptr& l);
  bool catch_up_remote(const link_ptr& l, uint64_t since);
  void send_node(const std::string& node, std::string_view op, std::string body);
  void send_events(const std::string& node, const std::string& user, const event* evs, size_t n);
  void node_attach(const std::string& node, const std::string& user, uint64_t request,
                   std::optional<uint64_t> since, size_t tabs);
  void node_detach(const std::string& node, const std::string& user);
  void node_events(const std::string& user, const std::string& from, std::vector<event> evs,
                   uint64_t request);
  void cluster_tick();
  // The user's connections on every node: its tabs here and those other nodes reported (an
  // interest counts its node's tabs). Without a cluster: the sessions here.
  size_t connections_of(const std::vector<link_ptr>& sessions, const std::string& user) const;
  // An event for `user`, kept in its inbox: here, or handed to its owner (one hand-over per node
  // and event, at the next flush). `create`: an inbox is made for a user who has none.
  void deliver(const std::string& user, const event_tail& tail, const send_options& o, bool create);
  void flush_handovers();
  void node_push(const std::vector<std::string>& users, const event_tail& tail,
                 const send_options& o);
  struct handover {
    std::string node;
    event_tail tail;
    send_options options;
    std::vector<std::string> users;
  };
  std::vector<handover> handovers_;  // queued by deliver(), sent by flush()

  // --- hand-over of moved slots (hub_handover.cpp; docs/cluster.md, "Slots moving") ---
  int64_t map_version() const;
  // A message about `key` from a node whose map had `version`: kept back (true) while the slot
  // is being handed here, or while this node's map is older than the sender's; `again` runs it
  // once that is over (or after 3 s).
  bool gate(std::string_view key, int64_t version, std::function<void()> again);
  // gate() for a message being published to a sink: the publish's answer waits for it.
  bool gate_message(std::string_view key, int64_t version, const broker::message& m);
  // push() for an owned user, unless its slot is being handed here (then kept back, the
  // publish's answer waiting for it).
  void push_owned(const std::string& user, inbox* box, const event_tail& tail,
                  const send_options& o, bool create);
  int64_t version_of(const broker::message& m) const;  // the sender's map version (0: none)
  void hand_over(const std::string& node, const std::vector<size_t>& slots);
  // Forgets what is held here for those slots (inboxes, with an erase record each; rooms).
  void forget_slots(const std::vector<bool>& slots);
  void forget_inbox(const std::string& user);
  void node_adopt(const std::string& from, const std::string& body);
  void node_handed(const std::string& from, const std::vector<size_t>& slots);
  void release_slot(size_t slot);
  void run_later(std::vector<std::function<void()>> fns);
  void handover_tick();
  void write_event(const std::string& user, inbox& box, const event& e);
  struct incoming_slot {
    std::string from;
    std::chrono::steady_clock::time_point deadline;
    std::vector<std::function<void()>> held;
  };
  std::map<size_t, incoming_slot> incoming_;  // slots being handed here, by slot
  // Handed here before this node's map said so, and when (forgotten after 10 s: a map that gives
  // the slot later must not take what came then for current).
  std::map<size_t, std::chrono::steady_clock::time_point> handed_early_;
  struct waiting_op {
    int64_t version;
    std::chrono::steady_clock::time_point deadline;
    std::function<void()> again;
  };
  std::vector<waiting_op> waiting_map_;  // from nodes with a newer map than this one's
  bool no_wait_ = false;                 // running waiting_map_ entries that timed out
  std::set<link_ptr> held_tabs_;         // tabs waiting for their inbox's hand-over
  std::map<std::string, std::set<std::string>> joined_;  // room -> users joined through here
  std::shared_ptr<const slot_list> placed_;  // the map inboxes and sessions were placed by
  uint64_t handed_out_ = 0, handed_in_ = 0;  // inboxes handed to other nodes, and taken
  struct pending_call {
    std::chrono::steady_clock::time_point deadline;
    room_answer done;
  };
  std::unordered_map<uint64_t, pending_call> calls_;

  std::optional<cluster_hooks> cluster_;
  std::unordered_map<std::string, std::unique_ptr<proxy>> proxies_;  // by user
  std::map<std::pair<std::string, std::string>, std::unique_ptr<interest>>
      interests_;  // (user, node)
  // Replays asked of owners, by request id; asked again after 2 s without an answer (the link
  // to the owner was down, or the owner was starting).
  struct replay_request {
    link_ptr link;
    std::optional<uint64_t> since;
    std::chrono::steady_clock::time_point sent;
  };
  std::unordered_map<uint64_t, replay_request> requests_;
  void ask_replay(const std::string& node, const link_ptr& l, std::optional<uint64_t> since);
  uint64_t next_request_ = 0;
  int64_t rehomed_version_ = -1;  // the map version the sessions were last placed by

  const gateway_settings& settings_;
  broker::vhost& vhost_;
  net::worker_pool& pool_;
  follow_graph& follows_;
  store::message_store* store_;
  user_table<inbox> inboxes_;
  // The live parts of inboxes (connected users and --inbox-linger after), apart from the entries
  // so that a user away costs nothing for them.
  std::unordered_map<std::string, std::unique_ptr<live>> lives_;
  size_t sweep_cursor_ = 0;  // where the next tick's sweep over the inboxes goes on
  std::unordered_map<std::string, std::unique_ptr<room>> rooms_;
  std::span<worker_counters> counters_;
  // Deliveries queued by push(), per destination worker, and when the first of them was queued
  // (one clock read per flush; the delivery latency counts from there).
  std::vector<std::vector<std::pair<link_ptr, event>>> outgoing_;
  std::optional<std::chrono::steady_clock::time_point> outgoing_since_;
  size_t last_feed_fanout_ = 0;
  // Statistics (add_stats): kept as the state changes, so that a request costs no walk over the
  // inboxes.
  uint64_t online_users_ = 0;  // inboxes with at least one session
  uint64_t held_events_ = 0;   // events in all inboxes (expired ones until swept)
  uint64_t replays_ = 0;
  uint64_t resets_ = 0;
  std::unique_ptr<boost::asio::steady_timer> timer_;
  net::worker* home_ = nullptr;
  uint64_t written_ticket_ = 0;  // the store ticket of the hub's last record
  std::deque<std::pair<uint64_t, std::function<void()>>> unreleased_;
  bool waiting_for_store_ = false;
  // Cleared when the hub goes: a store callback that comes later does nothing.
  std::shared_ptr<std::atomic<bool>> alive_ = std::make_shared<std::atomic<bool>>(true);
};

// `,"type":...,"room":...,"from":...,"data":...,"ts":...}` for a message: the body as JSON if it
// parses, else as a string; `from` from the header "from" or the user_id property.
event_tail make_tail(std::string_view type, const broker::message& m, const std::string* room,
                     const std::string* feed);
event_tail make_tail(std::string_view type, const std::string* room, const std::string* from,
                     std::string_view data_json, int64_t ts_ms);

}  // namespace warren::web
