// Inboxes, rooms, presence and feeds on the hub's worker.
#include "web/hub.hpp"

#include "web/hub_internal.hpp"

#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "broker/vhost.hpp"
#include "mgmt/definitions_json.hpp"
#include "net/worker.hpp"

namespace warren::web {

namespace {

std::string json_string(std::string_view s) {
  return mgmt::dump(nlohmann::json(std::string(s)));
}

// The body as compact JSON if it is JSON, else as a JSON string.
std::string data_json(const std::string& body) {
  if (!body.empty()) {
    auto parsed = nlohmann::json::parse(body, nullptr, false);
    if (!parsed.is_discarded()) return mgmt::dump(parsed);
  }
  return json_string(body);
}

std::optional<std::string> sender(const broker::message& m) {
  if (m.properties.headers)
    if (auto f = common::table_string(*m.properties.headers, "from")) return std::string(*f);
  if (m.properties.user_id) return *m.properties.user_id;
  return std::nullopt;
}

}  // namespace

event_tail make_tail(std::string_view type, const std::string* room, const std::string* from,
                     std::string_view data, int64_t ts_ms) {
  std::string t;
  t.reserve(64 + data.size());
  t += ",\"type\":\"";
  t += type;
  t += "\",\"room\":";
  t += room ? json_string(*room) : "null";
  t += ",\"from\":";
  t += from ? json_string(*from) : "null";
  t += ",\"data\":";
  t += data;
  t += ",\"ts\":";
  t += std::to_string(ts_ms);
  t += '}';
  return std::make_shared<const std::string>(std::move(t));
}

event_tail make_tail(std::string_view type, const broker::message& m, const std::string* room,
                     const std::string* feed) {
  auto from = feed ? std::optional<std::string>(*feed) : sender(m);
  std::string data = data_json(m.body);
  if (feed) {
    // ... "data":D,"feed":"B","ts":...}
    data += ",\"feed\":";
    data += json_string(*feed);
  }
  return make_tail(type, room, from ? &*from : nullptr, data, now_ms());
}

event_tail transient_tail(const event_tail& t) {
  std::string s = *t;
  s.pop_back();
  s += ",\"transient\":true}";
  return std::make_shared<const std::string>(std::move(s));
}

hub::hub(const gateway_settings& settings, broker::vhost& vhost, net::worker_pool& pool,
         follow_graph& follows, std::span<worker_counters> counters, store::message_store* store)
    : settings_(settings),
      vhost_(vhost),
      pool_(pool),
      follows_(follows),
      store_(store),
      counters_(counters),
      outgoing_(pool.size()) {}

hub::~hub() {
  alive_->store(false);
}

void hub::start(net::worker& home) {
  home_ = &home;
  timer_ = std::make_unique<boost::asio::steady_timer>(home.io());
  arm();
}

void hub::release(std::function<void()> post) {
  if (unreleased_.empty() && (!store_ || store_->synced() >= written_ticket_)) {
    post();
    return;
  }
  unreleased_.emplace_back(written_ticket_, std::move(post));
  wait_for_store();
}

void hub::release_ready() {
  while (!unreleased_.empty() && store_->synced() >= unreleased_.front().first) {
    auto post = std::move(unreleased_.front().second);
    unreleased_.pop_front();
    post();
  }
  wait_for_store();
}

void hub::wait_for_store() {
  if (waiting_for_store_ || unreleased_.empty() || !home_) return;
  waiting_for_store_ = true;
  // On the store's thread: back to the hub's worker, where the queue is.
  store_->when_synced(unreleased_.front().first, [this, alive = alive_, home = home_] {
    if (!alive->load()) return;
    home->post([this, alive] {
      if (!alive->load()) return;
      waiting_for_store_ = false;
      release_ready();
    });
  });
}

void hub::arm() {
  timer_->expires_after(std::chrono::seconds(1));
  timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    tick();
    arm();
  });
}

void hub::tick() {
  int64_t now = now_ms();
  int64_t linger =
      std::chrono::duration_cast<std::chrono::milliseconds>(settings_.inbox_linger).count();
  // The live part of an inbox goes --inbox-linger after its last connection: its rooms are
  // left and its cache freed; what it holds stays in the store. Without a store the live part
  // is all there is, so it stays while it holds events.
  // Only the live inboxes are looked at: a million users away cost this nothing.
  std::vector<std::string> gone;
  for (const auto& [user, on] : lives_)
    if (on->sessions.empty() && now - on->idle_since >= linger && (store_ || on->cache.empty()))
      gone.push_back(user);
  for (const auto& user : gone) {
    auto it = lives_.find(user);
    for (const auto& r : std::vector<std::string>(it->second->rooms)) leave(user, r);
    lives_.erase(user);
    if (inbox* box = inboxes_.find(user)) box->set_live(false);
  }
  sweep(now);
  if (cluster_) cluster_tick();
  if (store_) store_->expire_inbox(now);
  flush();
}

hub::inbox& hub::get_inbox(const std::string& user) {
  auto [slot, fresh] = inboxes_.try_emplace(user);
  inbox& box = *slot;
  if (fresh) {
    box.start(fresh_seq());
    if (!store_) go_live(user, box);
  }
  return box;
}

hub::live& hub::go_live(const std::string& user, inbox& box) {
  if (live* on = live_of(user, box)) return *on;
  auto& on = lives_[user];
  on = std::make_unique<live>();
  on->before_cache = box.newest();
  on->idle_since = now_ms();
  box.set_live(true);
  return *on;
}

hub::live* hub::live_of(const std::string& user, const inbox& box) const {
  if (!box.live()) return nullptr;
  auto it = lives_.find(user);
  return it == lives_.end() ? nullptr : it->second.get();
}

hub::inbox* hub::find_inbox(const std::string& user) {
  return inboxes_.find(user);
}
const hub::inbox* hub::find_inbox(const std::string& user) const {
  return inboxes_.find(user);
}

void hub::count_replay(const std::vector<event>& evs) {
  if (evs.empty()) return;
  if (evs.front().tail->starts_with(",\"type\":\"reset\""))
    ++resets_;
  else
    ++replays_;
}

void hub::attach(const link_ptr& l, std::optional<uint64_t> since) {
  if (cluster_) {
    if (auto owner = away_owner(l->user); !owner.empty()) return attach_remote(l, since, owner);
    // Its inbox is being handed here: the tab waits for it (unless it goes meanwhile).
    if (gate(l->user, 0, [this, l, since] {
          if (held_tabs_.erase(l)) attach(l, since);
        })) {
      held_tabs_.insert(l);
      return;
    }
  }
  inbox& box = get_inbox(l->user);
  live& on = go_live(l->user, box);
  if (on.sessions.empty()) ++online_users_;
  on.sessions.push_back(l);
  std::vector<event> evs;
  if (since) {
    evs = replay(box, &on, *since);
    count_replay(evs);
  }
  release([l, evs = std::move(evs)]() mutable {
    l->worker->post([l, evs = std::move(evs)]() mutable {
      if (l->receiver) l->receiver->on_replay(std::move(evs));
    });
  });
}

void hub::detach(const link_ptr& l) {
  if (cluster_ && (held_tabs_.erase(l) || detach_remote(l))) return;
  inbox* box = find_inbox(l->user);
  live* on = box ? live_of(l->user, *box) : nullptr;
  if (!on) return;
  auto& sessions = on->sessions;
  auto it = std::find(sessions.begin(), sessions.end(), l);
  if (it == sessions.end()) return;
  sessions.erase(it);
  if (sessions.empty()) {
    --online_users_;
    sessions.shrink_to_fit();
    on->idle_since = now_ms();
  }
}

void hub::catch_up(const link_ptr& l, uint64_t since) {
  if (cluster_ && catch_up_remote(l, since)) return;
  if (cluster_ && gate(l->user, 0, [this, l, since] { catch_up(l, since); })) return;
  inbox* box = find_inbox(l->user);
  std::vector<event> evs;
  if (box) evs = replay(*box, live_of(l->user, *box), since);
  count_replay(evs);
  release([l, evs = std::move(evs)]() mutable {
    l->worker->post([l, evs = std::move(evs)]() mutable {
      if (l->receiver) l->receiver->on_replay(std::move(evs));
    });
  });
}

void hub::flush() {
  if (!handovers_.empty()) flush_handovers();
  if (!outgoing_since_) return;  // nothing queued for a connection
  auto since = *outgoing_since_;
  outgoing_since_.reset();
  std::vector<std::pair<size_t, std::vector<std::pair<link_ptr, event>>>> batches;
  for (size_t w = 0; w < outgoing_.size(); ++w) {
    if (outgoing_[w].empty()) continue;
    batches.emplace_back(w, std::move(outgoing_[w]));
    outgoing_[w] = {};
  }
  release([this, batches = std::move(batches), since]() mutable {
    for (auto& [w, batch] : batches) {
      worker_counters* wc = &counters_[w];
      pool_.at(w).post([batch = std::move(batch), since, wc] {
        uint64_t written = 0;
        for (const auto& [l, e] : batch)
          if (l->receiver) written += l->receiver->on_events(&e, 1);
        // One clock read per batch: every event of it counts as written when the last one was.
        if (written)
          wc->observe_latency(
              std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count(),
              written);
      });
    }
  });
}

void hub::add_stats(gateway_stats& s) const {
  s.online_users += online_users_;
  s.inboxes += inboxes_.size();
  s.held_events += held_events_;
  s.rooms += rooms_.size();
  s.replays += replays_;
  s.resets += resets_;
}

op_result hub::join(const std::string& user, const std::string& room_name) {
  // In a cluster a member whose inbox another node owns has no live part here: its events are
  // handed to its owner (deliver), and it stays a member until it leaves (docs/cluster.md).
  bool away = cluster_ && !away_owner(user).empty();
  live* on = nullptr;
  if (!away) {
    inbox& box = get_inbox(user);
    on = &go_live(user, box);
    if (std::find(on->rooms.begin(), on->rooms.end(), room_name) != on->rooms.end())
      return op_result{200, {}, true};
  }
  auto& slot = rooms_[room_name];
  if (!slot) {
    slot = std::make_unique<room>();
    slot->name = room_name;
  }
  room& r = *slot;
  if (away && std::binary_search(r.members.begin(), r.members.end(), user))
    return op_result{200, {}, true};
  if (on) on->rooms.push_back(room_name);
  r.members.insert(std::lower_bound(r.members.begin(), r.members.end(), user), user);
  // History first (as "history" events), then live messages.
  int64_t now = now_ms();
  for (const auto& h : r.history) {
    if (h.expires_ms && h.expires_ms <= now) continue;
    static constexpr std::string_view from = ",\"type\":\"message\"";
    std::string t = ",\"type\":\"history\"";
    t.append(*h.tail, from.size());
    send_options o;
    o.ttl_ms = h.expires_ms ? h.expires_ms - now : -1;
    deliver(user, std::make_shared<const std::string>(std::move(t)), o, true);
  }
  presence_event(r, user, true);
  flush();
  return {};
}

void hub::remove_member(room& r, const std::string& user) {
  auto it = std::lower_bound(r.members.begin(), r.members.end(), user);
  if (it != r.members.end() && *it == user) r.members.erase(it);
}

op_result hub::leave(const std::string& user, const std::string& room_name) {
  auto lit = lives_.find(user);
  auto rit = rooms_.find(room_name);
  bool away = cluster_ && !away_owner(user).empty();
  if ((!away && lit == lives_.end()) || rit == rooms_.end())
    return op_result{404, "not in room '" + room_name + "'"};
  if (away) {
    if (!std::binary_search(rit->second->members.begin(), rit->second->members.end(), user))
      return op_result{404, "not in room '" + room_name + "'"};
  } else {
    auto& rooms = lit->second->rooms;
    auto it = std::find(rooms.begin(), rooms.end(), room_name);
    if (it == rooms.end()) return op_result{404, "not in room '" + room_name + "'"};
    rooms.erase(it);
  }
  room& r = *rit->second;
  remove_member(r, user);
  presence_event(r, user, false);
  if (r.members.empty() && r.history.empty()) rooms_.erase(rit);
  flush();
  return {};
}

void hub::presence_event(room& r, const std::string& user, bool joined) {
  if (!settings_.room_presence_events) return;
  // Presence matters only live: never held.
  nlohmann::json d = {{"event", joined ? "join" : "leave"}, {"user", user}};
  auto tail = transient_tail(make_tail("presence", &r.name, &user, mgmt::dump(d), now_ms()));
  send_options o;
  o.transient = true;
  for (const auto& m : r.members) deliver(m, tail, o, false);
}

bool hub::room_exists(const std::string& room) const {
  return rooms_.count(room) != 0;
}

bool hub::is_member(const std::string& user, const std::string& room) const {
  auto it = rooms_.find(room);
  return it != rooms_.end() &&
         std::binary_search(it->second->members.begin(), it->second->members.end(), user);
}

std::vector<member_info> hub::members(const std::string& room) const {
  std::vector<member_info> out;
  auto it = rooms_.find(room);
  if (it == rooms_.end()) return out;
  for (const auto& u : it->second->members) {
    auto lit = lives_.find(u);
    out.push_back(
        member_info{u, lit != lives_.end() ? connections_of(lit->second->sessions, u) : 0});
  }
  return out;
}

std::pair<bool, size_t> hub::presence(const std::string& user) const {
  auto it = lives_.find(user);
  size_t n = it != lives_.end() ? connections_of(it->second->sessions, user) : 0;
  return {n > 0, n};
}

bool hub::on_user_message(const broker::message& m) {
  // Anonymous connections are read-only rooms members; nobody sends to them.
  if (m.routing_key.starts_with("anonymous:") || m.routing_key.empty()) return false;
  if (cluster_) {
    if (gate_message(m.routing_key, version_of(m), m)) return true;
    if (auto owner = away_owner(m.routing_key); !owner.empty()) return forward_to_owner(owner, m);
  }
  send_options o = options_of(m);
  inbox* box = find_inbox(m.routing_key);
  live* on = box ? live_of(m.routing_key, *box) : nullptr;
  if (o.transient && (!on || on->sessions.empty()))
    return false;  // nobody to give it to, and nothing to hold
  if (!box) box = &get_inbox(m.routing_key);
  auto tail = make_tail("message", m, nullptr, nullptr);
  if (o.transient) tail = transient_tail(tail);
  push(m.routing_key, *box, tail, o);
  flush();
  return true;
}

bool hub::on_room_message(const broker::message& m) {
  const std::string& name = m.routing_key;
  if (name.empty()) return false;
  if (cluster_) {
    if (gate_message(name, version_of(m), m)) return true;
    if (auto owner = away_owner(name); !owner.empty()) return forward_to_owner(owner, m);
  }
  auto& slot = rooms_[name];
  if (!slot) {
    slot = std::make_unique<room>();
    slot->name = name;
  }
  room& r = *slot;
  send_options o = options_of(m);
  auto tail = make_tail("message", m, &r.name, nullptr);
  if (o.transient) tail = transient_tail(tail);
  if (settings_.room_history > 0 && !o.transient) {
    if (r.history.size() >= settings_.room_history)
      r.history.erase(r.history.begin(),
                      r.history.begin() + long(r.history.size() - settings_.room_history + 1));
    int64_t expires = expiry(o, now_ms());
    r.history.push_back(room_entry{tail, expires});
    if (store_) {
      std::string body;
      encode_room_record(body, r.name, *tail);
      store::inbox_location at;
      note_ticket(store_->write_inbox(store::room_event, expires, body, at), o.persistent);
    }
  }
  for (const auto& u : r.members) deliver(u, tail, o, false);
  flush();
  return true;
}

bool hub::on_feed_message(const broker::message& m) {
  const std::string& b = m.routing_key;
  last_feed_fanout_ = 0;
  // In a cluster the feed's followers are kept at B's owner (its follow graph's edges into B).
  if (cluster_) {
    if (gate_message(b, version_of(m), m)) return true;
    if (auto owner = away_owner(b); !owner.empty()) return forward_to_owner(owner, m);
  }
  send_options o = options_of(m);
  event_tail tail;
  follows_.for_each_follower(b, [&](std::string_view a) {
    std::string user(a);
    bool away = cluster_ && !away_owner(user).empty();
    inbox* box = away ? nullptr : find_inbox(user);
    if (!box && !away) {
      if (o.transient) return;
      box = &get_inbox(user);
    }
    if (!tail) {
      tail = make_tail("message", m, nullptr, &b);
      if (o.transient) tail = transient_tail(tail);
    }
    // A follower another node owns: handed over there, once per node (deliver).
    if (away)
      deliver(user, tail, o, !o.transient);
    else
      push_owned(user, box, tail, o, !o.transient);
    ++last_feed_fanout_;
  });
  flush();
  return last_feed_fanout_ > 0;
}

}  // namespace warren::web
