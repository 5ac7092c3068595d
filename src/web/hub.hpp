// The gateway's shared state: user inboxes, rooms, presence and the follow graph. Like a vhost
// it is an actor owned by one worker (the gateway vhost's home, where the warren.* exchanges
// hand it messages); transport connections on every worker reach it by posting, and it answers
// and pushes events by posting back, grouped per worker (a room message to 10 000 members is one
// post per worker, not 10 000).
//
// An inbox holds the user's last events with consecutive sequence numbers; a connection attaches
// with the last seq it saw and gets what it missed, or a reset event when that is no longer held
// (docs/web-api.md, "The inbox, sequence numbers and resuming"). The same mechanism serves a
// slow reader: a connection whose output backs up stops taking live events and catches up from
// the inbox once it has drained, so no connection buffers without bound.
#pragma once

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "broker/message.hpp"
#include "web/event.hpp"
#include "web/follow_graph.hpp"
#include "web/gateway_counters.hpp"
#include "web/gateway_settings.hpp"
#include "web/gateway_stats.hpp"

namespace warren::net {
class worker;
class worker_pool;
}  // namespace warren::net

namespace warren::broker {
class vhost;
}

namespace warren::web {

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

class hub {
 public:
  // `counters` has one entry per worker of the pool; the hub records there, on each worker, the
  // latency of the live events it hands to that worker's connections.
  hub(const gateway_settings& settings, broker::vhost& vhost, net::worker_pool& pool,
      follow_graph& follows, std::span<worker_counters> counters);
  ~hub();

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

  follow_graph& follows() { return follows_; }
  size_t inbox_count() const { return inboxes_.size(); }
  // Fills the hub's part of the gateway's statistics: online users, inboxes, held events, rooms,
  // replays and resets.
  void add_stats(gateway_stats& s) const;

  // Starts the linger timer (call once, before or after the workers start).
  void start(net::worker& home);

 private:
  struct inbox;
  struct room;

  inbox& get_inbox(const std::string& user);
  inbox* find_inbox(const std::string& user);
  const inbox* find_inbox(const std::string& user) const;
  // Appends an event to the inbox and queues it for the inbox's connections.
  void push(inbox& box, const event_tail& tail);
  void flush();  // posts what push() queued, one task per worker
  std::vector<event> replay(inbox& box, uint64_t since) const;
  void count_replay(const std::vector<event>& evs);
  void presence_event(room& r, const std::string& user, bool joined);
  void remove_member(room& r, const std::string& user);
  void tick();
  void arm();

  const gateway_settings& settings_;
  broker::vhost& vhost_;
  net::worker_pool& pool_;
  follow_graph& follows_;
  std::unordered_map<std::string, std::unique_ptr<inbox>> inboxes_;
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
  uint64_t held_events_ = 0;   // events in all inboxes' rings
  uint64_t replays_ = 0;
  uint64_t resets_ = 0;
  std::unique_ptr<boost::asio::steady_timer> timer_;
};

// `,"type":...,"room":...,"from":...,"data":...,"ts":...}` for a message: the body as JSON if it
// parses, else as a string; `from` from the header "from" or the user_id property.
event_tail make_tail(std::string_view type, const broker::message& m, const std::string* room,
                     const std::string* feed);
event_tail make_tail(std::string_view type, const std::string* room, const std::string* from,
                     std::string_view data_json, int64_t ts_ms);

}  // namespace warren::web
