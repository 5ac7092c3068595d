// Slots moving between running nodes (docs/cluster.md, "Slots moving"): when the shard map gives
// a slot of this node to another running node, this node hands that node the inboxes (every held
// event with its seq, the numbering and the read position) and the rooms (members and history) of
// the slot, then says the slot is handed; the new owner keeps back everything about the slot
// (sends, attaches, operations) until then, so that a browser resuming anywhere with its `since`
// gets every event after it, in one numbering, once. Messages about a slot that reach a node whose
// map is older than the sender's wait for the map (a node never acts on a slot it does not know it
// owns); a node whose map is newer passes them on to the owner it knows. Slots that come to a node
// from a node that is not running, and every slot not its own at its first map after a start, lose
// what the node held for them (it is stale: the slot may have been served elsewhere meanwhile), so
// that a browser gets a `reset`, never old history as if complete. On the hub's worker.
//
// clang-format off
//   op      | from -> to       | body
//   adopt   | old -> new owner | {"u": "", "n": old,
//           |                  |  "us": [{"u": user, "next": next seq, "read": read seq,
//           |                  |          "e": [[seq, tail, expires ms]...]}],
//           |                  |  "rs": [{"r": room, "m": [members], "h": [[tail, expires ms]...]}],
//           |                  |  "fs": [{"b": followee, "f": [followers]}]}
//   handed  | old -> new owner | {"u": "", "n": old, "s": [slots]}: all of them sent
// clang-format on
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <limits>
#include <mutex>

#include "broker/forward.hpp"
#include "broker/vhost.hpp"
#include "mgmt/definitions_json.hpp"
#include "net/worker.hpp"
#include "web/hub.hpp"
#include "web/hub_internal.hpp"

namespace warren::web {

namespace {

using json = nlohmann::json;

// An adopt message grows to about this much before it is sent and another started.
constexpr size_t batch_bytes = 256 * 1024;
// A hand-over not complete by then (the old owner died, or its link lost messages) is given up:
// the slot is served from what arrived, and a user whose inbox did not gets a fresh one (a reset).
constexpr auto handover_timeout = std::chrono::seconds(5);
// How long a message from a node with a newer map waits for this node's map to catch up.
constexpr auto map_wait = std::chrono::seconds(3);

// The answers a kept-back publish waits for once it is published again: its own store ticket and
// those of the nodes it hands parts to; then the original publish's answer, once. Any thread.
struct answer_join : std::enable_shared_from_this<answer_join> {
  explicit answer_join(broker::shard_answer d) : done(std::move(d)) {}
  broker::shard_answer part() {
    return [self = shared_from_this()](uint64_t t, bool r) {
      std::unique_lock lk(self->mutex);
      ++self->got;
      self->ticket = std::max(self->ticket, t);
      self->rejected = self->rejected || r;
      self->finish(lk);
    };
  }
  void expect(uint32_t n, uint64_t t, bool r) {
    std::unique_lock lk(mutex);
    expected = n;
    ticket = std::max(ticket, t);
    rejected = rejected || r;
    finish(lk);
  }
  void finish(std::unique_lock<std::mutex>& lk) {
    if (!expected || got < *expected || !done) return;
    auto d = std::move(done);
    done = nullptr;
    uint64_t t = ticket;
    bool r = rejected;
    lk.unlock();
    d(t, r);
  }
  broker::shard_answer done;
  std::mutex mutex;
  uint32_t got = 0;
  std::optional<uint32_t> expected;
  uint64_t ticket = 0;
  bool rejected = false;
};

}  // namespace

int64_t hub::map_version() const {
  return std::max<int64_t>(rehomed_version_, 0);
}

int64_t hub::version_of(const broker::message& m) const {
  if (!m.properties.headers) return 0;
  return common::table_int(*m.properties.headers, map_header).value_or(0);
}

bool hub::gate(std::string_view key, int64_t version, std::function<void()> again) {
  if (!cluster_) return false;
  if (auto it = incoming_.find(slot_of(key)); it != incoming_.end()) {
    it->second.held.push_back(std::move(again));
    return true;
  }
  if (!no_wait_ && version > map_version() && !away_owner(key).empty()) {
    waiting_map_.push_back(
        waiting_op{version, std::chrono::steady_clock::now() + map_wait, std::move(again)});
    return true;
  }
  return false;
}

bool hub::hold_local(std::string_view key, std::function<void()> again) {
  return gate(key, 0, std::move(again));
}

bool hub::gate_message(std::string_view key, int64_t version, const broker::message& m) {
  if (!cluster_) return false;
  auto answer = std::make_shared<broker::shard_answer>();
  auto copy = std::make_shared<broker::message>(m);
  bool held = gate(key, version, [this, copy, answer] {
    // Published again to its sink only (no queue sees it twice), its answer joined to the
    // original publish's.
    auto join = std::make_shared<answer_join>(std::move(*answer));
    broker::shard_answer part = join->part();
    uint64_t ticket = 0;
    uint32_t remote = 0;
    broker::forward_target t{copy->exchange, copy->routing_key, {}};
    auto r = vhost_.publish_forwarded(copy, std::move(t), 0, &ticket, join->done ? &part : nullptr,
                                      &remote);
    auto* o = std::get_if<broker::publish_outcome>(&r);
    join->expect(remote, ticket, !o || *o == broker::publish_outcome::rejected);
  });
  // The publish's answer waits for it (set after gate(): the closure reads it when it runs).
  if (held) *answer = vhost_.defer_answer();
  return held;
}

void hub::push_owned(const std::string& user, inbox* box, const event_tail& tail,
                     const send_options& o, bool create) {
  if (cluster_)
    if (auto it = incoming_.find(slot_of(user)); it != incoming_.end()) {
      auto answer = std::make_shared<broker::shard_answer>(vhost_.defer_answer());
      it->second.held.push_back([this, user, tail, o, create, answer] {
        deliver(user, tail, o, create);
        flush();
        if (*answer) (*answer)(o.persistent ? written_ticket_ : 0, false);
      });
      return;
    }
  if (!box) box = create ? &get_inbox(user) : find_inbox(user);
  if (box) push(user, *box, tail, o);
}

void hub::forget_inbox(const std::string& user) {
  for (auto it = interests_.lower_bound({user, std::string()});
       it != interests_.end() && it->first.first == user;) {
    it->second->link->receiver = nullptr;
    it = interests_.erase(it);
  }
  inbox* box = find_inbox(user);
  if (!box) return;
  live* on = live_of(user, *box);
  if (on) {
    auto& s = on->sessions;
    bool had = !s.empty();
    s.erase(std::remove_if(s.begin(), s.end(), [](const link_ptr& l) { return !l->node.empty(); }),
            s.end());
    if (!s.empty()) {
      // A tab still here (it moves with rehome): what is held goes, the entry stays.
      erase(user);
      return;
    }
    if (had) --online_users_;
  }
  erase(user);  // the store forgets it too (an erase record)
  lives_.erase(user);
  inboxes_.erase(user);
}

void hub::forget_slots(const std::vector<bool>& slots) {
  std::vector<std::string> users;
  inboxes_.for_each([&](std::string_view u, const inbox&) {
    if (slots[slot_of(u)]) users.emplace_back(u);
  });
  for (const auto& u : users) forget_inbox(u);
  for (auto it = rooms_.begin(); it != rooms_.end();)
    it = slots[slot_of(it->first)] ? rooms_.erase(it) : std::next(it);
}

void hub::hand_over(const std::string& node, const std::vector<size_t>& slots) {
  std::vector<bool> mask(shard_slots);
  for (size_t s : slots) mask[s] = true;
  const std::string& self = cluster_->shards->self();
  json batch = json::array(), rooms = json::array();
  size_t bytes = 0, users = 0;
  auto send = [&] {
    if (batch.empty() && rooms.empty()) return;
    send_node(node, "adopt",
              mgmt::dump(json{
                  {"u", ""}, {"n", self}, {"us", std::move(batch)}, {"rs", std::move(rooms)}}));
    batch = json::array();
    rooms = json::array();
    bytes = 0;
  };
  std::vector<std::string> names;
  inboxes_.for_each([&](std::string_view u, const inbox&) {
    if (mask[slot_of(u)]) names.emplace_back(u);
  });
  for (const auto& u : names) {
    inbox& box = *find_inbox(u);
    bool more;
    auto evs =
        held_from(box, live_of(u, box), box.first_seq(), std::numeric_limits<size_t>::max(), more);
    json e = json::array();
    for (const auto& ev : evs) {
      e.push_back(json::array({ev.seq, *ev.tail, ev.expires_ms}));
      bytes += ev.tail->size() + 40;
    }
    batch.push_back(
        json{{"u", u}, {"next", box.next_seq()}, {"read", box.read_seq()}, {"e", std::move(e)}});
    bytes += u.size() + 64;
    ++users;
    if (bytes > batch_bytes) send();
  }
  for (const auto& [name, r] : rooms_) {
    if (!mask[slot_of(name)]) continue;
    json h = json::array();
    for (const auto& x : r->history) {
      h.push_back(json::array({*x.tail, x.expires_ms}));
      bytes += x.tail->size() + 24;
    }
    rooms.push_back(json{{"r", name}, {"m", r->members}, {"h", std::move(h)}});
    bytes += name.size() + 64;
    if (bytes > batch_bytes) send();
  }
  // The followers of the slots' users (edges live at the followee's owner).
  json follows = json::array();
  std::vector<std::string> followees;
  for (const auto& b : follows_.followees()) {
    if (!mask[slot_of(b)]) continue;
    followees.push_back(b);
    auto f = follows_.followers(b);
    for (const auto& a : f) bytes += a.size() + 4;
    follows.push_back(json{{"b", b}, {"f", std::move(f)}});
    if (bytes > batch_bytes) {
      send_node(node, "adopt",
                mgmt::dump(json{{"u", ""}, {"n", self}, {"fs", std::move(follows)}}));
      follows = json::array();
      bytes = 0;
    }
  }
  send();
  if (!follows.empty())
    send_node(node, "adopt", mgmt::dump(json{{"u", ""}, {"n", self}, {"fs", std::move(follows)}}));
  send_node(node, "handed", mgmt::dump(json{{"u", ""}, {"n", self}, {"s", slots}}));
  for (const auto& b : followees) follows_.drop_followers(b);
  handed_out_ += users;
  spdlog::info("web gateway: {} slots handed to node '{}' with {} inboxes", slots.size(), node,
               users);
}

void hub::node_adopt(const std::string& from, const std::string& body) {
  auto j = json::parse(body, nullptr, false);
  if (!j.is_object()) return;
  const json& us = j.contains("us") && j["us"].is_array() ? j["us"] : json::array();
  const json& rs = j.contains("rs") && j["rs"].is_array() ? j["rs"] : json::array();
  const json& fs = j.contains("fs") && j["fs"].is_array() ? j["fs"] : json::array();
  // A slot whose first part arrives before this node's map gave it the slot: kept back from now
  // on, what was held here for it forgotten (it is stale), as rehome() does.
  std::vector<bool> fresh(shard_slots);
  bool any = false;
  auto note = [&](const std::string& key) {
    size_t s = slot_of(key);
    if (incoming_.count(s) || handed_early_.count(s)) return;
    incoming_[s] = incoming_slot{from, std::chrono::steady_clock::now() + handover_timeout, {}};
    fresh[s] = any = true;
  };
  for (const auto& x : us)
    if (x.is_object() && x.contains("u") && x["u"].is_string()) note(x["u"].get<std::string>());
  for (const auto& x : rs)
    if (x.is_object() && x.contains("r") && x["r"].is_string()) note(x["r"].get<std::string>());
  for (const auto& x : fs)
    if (x.is_object() && x.contains("b") && x["b"].is_string()) note(x["b"].get<std::string>());
  if (any) forget_slots(fresh);
  int64_t now = now_ms();
  for (const auto& x : us) {
    if (!x.is_object() || !x.contains("u") || !x["u"].is_string()) continue;
    std::string user = x["u"].get<std::string>();
    forget_inbox(user);
    uint64_t next = x.value("next", uint64_t(0));
    const json& e = x.contains("e") && x["e"].is_array() ? x["e"] : json::array();
    auto [box, created] = inboxes_.try_emplace(user);
    (void)created;
    uint64_t first = next;
    if (!e.empty() && e[0].is_array() && !e[0].empty() && e[0][0].is_number_unsigned())
      first = e[0][0].get<uint64_t>();
    box->start(first);
    live* on = store_ ? nullptr : &go_live(user, *box);
    for (const auto& ev : e) {
      if (!ev.is_array() || ev.size() != 3 || !ev[0].is_number_unsigned() || !ev[1].is_string())
        continue;
      uint64_t seq = ev[0].get<uint64_t>();
      int64_t expires = ev[2].is_number_integer() ? ev[2].get<int64_t>() : 0;
      if (seq < box->next_seq() || (expires != 0 && expires <= now)) continue;
      box->recovered(seq, settings_.inbox_size);
      event held{seq, std::make_shared<const std::string>(ev[1].get<std::string>()), expires,
                 false};
      if (store_) write_event(user, *box, held);
      box->hold_until(expires);
      if (on) on->cache.push(std::move(held), settings_.inbox_size);
    }
    // The numbers given out after the newest held event (transient or expired ones): the next
    // event goes on from the old owner's numbering.
    if (next > box->next_seq()) box->recovered(next - 1, settings_.inbox_size);
    held_events_ += box->held();
    if (uint64_t read = x.value("read", uint64_t(0)); read != 0) set_read(user, read);
    ++handed_in_;
  }
  for (const auto& x : rs) {
    if (!x.is_object() || !x.contains("r") || !x["r"].is_string()) continue;
    auto r = std::make_unique<room>();
    r->name = x["r"].get<std::string>();
    if (x.contains("m") && x["m"].is_array())
      for (const auto& m : x["m"])
        if (m.is_string()) r->members.push_back(m.get<std::string>());
    std::sort(r->members.begin(), r->members.end());
    if (x.contains("h") && x["h"].is_array())
      for (const auto& h : x["h"]) {
        if (!h.is_array() || h.size() != 2 || !h[0].is_string()) continue;
        int64_t expires = h[1].is_number_integer() ? h[1].get<int64_t>() : 0;
        if (expires != 0 && expires <= now) continue;
        auto tail = std::make_shared<const std::string>(h[0].get<std::string>());
        if (store_) {
          std::string rec;
          encode_room_record(rec, r->name, *tail);
          store::inbox_location at;
          note_ticket(store_->write_inbox(store::room_event, expires, rec, at), false);
        }
        r->history.push_back(room_entry{std::move(tail), expires});
      }
    rooms_[r->name] = std::move(r);
  }
  // The followers of the slots' users: the old owner's edges replace what was here.
  std::vector<std::pair<std::string, std::string>> edges;
  for (const auto& x : fs) {
    if (!x.is_object() || !x.contains("b") || !x["b"].is_string()) continue;
    std::string b = x["b"].get<std::string>();
    follows_.drop_followers(b);
    if (x.contains("f") && x["f"].is_array())
      for (const auto& a : x["f"])
        if (a.is_string()) edges.emplace_back(a.get<std::string>(), b);
  }
  if (!edges.empty()) {
    std::vector<std::pair<std::string_view, std::string_view>> views(edges.begin(), edges.end());
    follows_.follow_all(views);
  }
}

void hub::node_handed(const std::string& from, const std::vector<size_t>& slots) {
  size_t done = 0;
  for (size_t s : slots) {
    if (s >= shard_slots) continue;
    // Handed before this node's map gave it the slot: rehome() must not forget what came.
    if (!placed_ || (*placed_)[s] != cluster_->shards->self())
      handed_early_[s] = std::chrono::steady_clock::now();
    if (incoming_.count(s)) {
      release_slot(s);
      ++done;
    }
  }
  spdlog::info("web gateway: node '{}' handed {} slots here", from, done);
}

void hub::release_slot(size_t s) {
  // The slot stays kept back until the posted task runs: what arrives meanwhile queues behind
  // what was kept, and the task runs it all in order.
  home_->post([this, alive = alive_, s] {
    if (!alive->load()) return;
    auto it = incoming_.find(s);
    if (it == incoming_.end()) return;
    auto held = std::move(it->second.held);
    incoming_.erase(it);
    for (auto& f : held) f();
    flush();
  });
}

void hub::run_later(std::vector<std::function<void()>> fns) {
  if (fns.empty()) return;
  home_->post([this, alive = alive_, fns = std::move(fns)] {
    if (!alive->load()) return;
    for (auto& f : fns) f();
    flush();
  });
}

void hub::handover_tick() {
  auto now = std::chrono::steady_clock::now();
  for (auto& [s, in] : incoming_) {
    if (in.deadline == std::chrono::steady_clock::time_point::min()) continue;  // posted already
    if (in.deadline > now && (!cluster_->running || cluster_->running(in.from))) continue;
    spdlog::warn(
        "web gateway: slot {} was not handed over by node '{}' (gone, or too slow): its users "
        "start fresh inboxes here (their tabs get a reset)",
        s, in.from);
    in.deadline = std::chrono::steady_clock::time_point::min();
    release_slot(s);
  }
  for (auto it = handed_early_.begin(); it != handed_early_.end();)
    it = now - it->second > std::chrono::seconds(10) ? handed_early_.erase(it) : std::next(it);
  std::vector<std::function<void()>> due;
  for (auto it = waiting_map_.begin(); it != waiting_map_.end();) {
    if (it->deadline > now) {
      ++it;
      continue;
    }
    due.push_back(std::move(it->again));
    it = waiting_map_.erase(it);
  }
  if (!due.empty())
    home_->post([this, alive = alive_, due = std::move(due)] {
      if (!alive->load()) return;
      // This node's map did not catch up: acted on as it says.
      no_wait_ = true;
      for (auto& f : due) f();
      no_wait_ = false;
      flush();
    });
}

}  // namespace warren::web
