// What hub.cpp (sessions, rooms, feeds) and hub_inbox.cpp (holding, replaying and storing
// events) share: the live part of an inbox, rooms, the event cache and the clock. Hub's worker.
#pragma once

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "web/hub.hpp"

namespace warren::web {

// On every message a node hands another (forwarded sends, warren.nodes): the version of the
// sender's shard map, so that a node whose map is older waits for it (hub_handover.cpp).
inline constexpr std::string_view map_header = "x-warren-map";

inline int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The first sequence number of a new inbox: the time in microseconds, so that a later inbox of
// the same user always numbers above an earlier one and a stale `since` is detected.
inline uint64_t fresh_seq() {
  return uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count());
}

// A fixed-capacity ring of events with consecutive sequence numbers; holds nothing (no
// allocation) while empty.
class event_ring {
 public:
  size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  const event& at(size_t i) const { return buf_[(head_ + i) % buf_.size()]; }
  void push(event e, size_t cap) {
    if (buf_.size() < cap && count_ == buf_.size()) grow(cap);
    if (count_ == buf_.size()) {
      buf_[head_] = std::move(e);
      head_ = (head_ + 1) % buf_.size();
    } else {
      buf_[(head_ + count_) % buf_.size()] = std::move(e);
      ++count_;
    }
  }
  void clear() {
    buf_ = {};
    head_ = count_ = 0;
  }

 private:
  void grow(size_t cap) {
    std::vector<event> n;
    n.reserve(std::min(cap, std::max<size_t>(4, buf_.size() * 2)));
    for (size_t i = 0; i < count_; ++i) n.push_back(std::move(buf_[(head_ + i) % buf_.size()]));
    n.resize(n.capacity());
    buf_ = std::move(n);
    head_ = 0;
  }
  std::vector<event> buf_;
  size_t head_ = 0;
  size_t count_ = 0;
};

// The part of an inbox that exists while its user is connected (and --inbox-linger after).
struct hub::live {
  std::vector<link_ptr> sessions;
  std::vector<std::string> rooms;
  // The newest events since the live part exists (consecutive seqs up to the inbox's last), at
  // most --inbox-size; older held events are read from the store, from `before_cache` back.
  event_ring cache;
  store::inbox_location before_cache;
  int64_t idle_since = 0;  // ms, when the last connection went
};

// The same tail with "transient":true: an event delivered live only.
event_tail transient_tail(const event_tail& t);
// room_event record body: room | tail
void encode_room_record(std::string& out, std::string_view room, std::string_view tail);

struct room_entry {
  event_tail tail;
  int64_t expires_ms = 0;
};

struct hub::room {
  std::string name;
  std::vector<room_entry> history;   // oldest first, at most settings.room_history
  std::vector<std::string> members;  // sorted
};

// In a cluster (hub_cluster.cpp): the sessions here of a user another node owns.
struct hub::proxy {
  std::string node;               // the owner its sessions are attached to
  std::vector<link_ptr> active;   // taking the owner's live events
  std::vector<link_ptr> pending;  // waiting for their replay
  uint64_t last_seq = 0;          // the newest seq seen from the owner, or asked from
};

// The owner's session standing for another node's interest in a user.
class hub::node_receiver final : public event_receiver {
 public:
  node_receiver(hub& h, std::string node, std::string user)
      : hub_(h), node_(std::move(node)), user_(std::move(user)) {}
  size_t on_events(const event* evs, size_t n) override {
    hub_.send_events(node_, user_, evs, n);
    return n;
  }
  void on_replay(std::vector<event>) override {}

 private:
  hub& hub_;
  std::string node_, user_;
};

struct hub::interest {
  link_ptr link;
  std::unique_ptr<node_receiver> receiver;
  size_t tabs = 1;  // the node's connections of the user, for presence
};

}  // namespace warren::web
