// Inboxes, rooms, presence and feeds on the hub's worker.
#include "web/hub.hpp"

#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "broker/vhost.hpp"
#include "net/worker.hpp"

namespace warren::web {

namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The first sequence number of a new inbox: the time in microseconds, so that a later inbox of
// the same user always numbers above an earlier one and a stale `since` is detected.
uint64_t fresh_seq() {
  return uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count());
}

std::string json_string(std::string_view s) {
  return nlohmann::json(std::string(s))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// The body as compact JSON if it is JSON, else as a JSON string.
std::string data_json(const std::string& body) {
  if (!body.empty()) {
    auto parsed = nlohmann::json::parse(body, nullptr, false);
    if (!parsed.is_discarded())
      return parsed.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  return json_string(body);
}

std::optional<std::string> sender(const broker::message& m) {
  if (m.properties.headers)
    if (auto f = common::table_string(*m.properties.headers, "from")) return std::string(*f);
  if (m.properties.user_id) return *m.properties.user_id;
  return std::nullopt;
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

}  // namespace

struct hub::inbox {
  std::string user;
  uint64_t first_seq;  // the inbox's first sequence number
  uint64_t next_seq;   // the next event's
  event_ring held;     // the last events, up to settings.inbox_size
  std::vector<link_ptr> sessions;
  std::vector<std::string> rooms;
  int64_t idle_since = 0;  // ms, when the last connection went

  uint64_t oldest_held() const { return next_seq - held.size(); }
};

struct hub::room {
  std::string name;
  std::vector<event_tail> history;   // oldest first, at most settings.room_history
  std::vector<std::string> members;  // sorted
};

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

hub::hub(const gateway_settings& settings, broker::vhost& vhost, net::worker_pool& pool,
         follow_graph& follows, std::span<worker_counters> counters)
    : settings_(settings),
      vhost_(vhost),
      pool_(pool),
      follows_(follows),
      counters_(counters),
      outgoing_(pool.size()) {}

hub::~hub() = default;

void hub::start(net::worker& home) {
  timer_ = std::make_unique<boost::asio::steady_timer>(home.io());
  arm();
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
  std::vector<std::string> gone;
  for (auto& [user, box] : inboxes_)
    if (box->sessions.empty() && now - box->idle_since >= linger) gone.push_back(user);
  for (const auto& user : gone) {
    inbox& box = *inboxes_.at(user);
    for (const auto& r : std::vector<std::string>(box.rooms)) leave(user, r);
    held_events_ -= box.held.size();
    inboxes_.erase(user);
  }
  flush();
}

hub::inbox& hub::get_inbox(const std::string& user) {
  auto& slot = inboxes_[user];
  if (!slot) {
    slot = std::make_unique<inbox>();
    slot->user = user;
    slot->first_seq = slot->next_seq = fresh_seq();
    slot->idle_since = now_ms();
  }
  return *slot;
}

hub::inbox* hub::find_inbox(const std::string& user) {
  auto it = inboxes_.find(user);
  return it == inboxes_.end() ? nullptr : it->second.get();
}
const hub::inbox* hub::find_inbox(const std::string& user) const {
  auto it = inboxes_.find(user);
  return it == inboxes_.end() ? nullptr : it->second.get();
}

std::vector<event> hub::replay(inbox& box, uint64_t since) const {
  std::vector<event> out;
  uint64_t last = box.next_seq - 1;
  if (since == last) return out;  // nothing newer
  if (since > last) {
    // A number this inbox never gave out (from a later numbering: the clock went back between
    // two inboxes of the user): say the position is unknown here, then go on from this inbox's.
    nlohmann::json d = {{"reason", "new-inbox"}, {"after", since}, {"missed_to", last}};
    out.push_back(event{last, make_tail("reset", nullptr, nullptr, d.dump(), now_ms())});
    return out;
  }
  uint64_t oldest = box.oldest_held();
  if (since != 0 && since + 1 < oldest) {
    // Something after `since` is gone: say so before what follows.
    bool fresh = since < box.first_seq;
    nlohmann::json d = {
        {"reason", fresh ? "new-inbox" : "dropped"}, {"after", since}, {"missed_to", oldest - 1}};
    out.push_back(event{oldest - 1, make_tail("reset", nullptr, nullptr, d.dump(), now_ms())});
  }
  uint64_t from = std::max(since + 1, oldest);
  for (uint64_t s = from; s <= last; ++s) out.push_back(box.held.at(size_t(s - oldest)));
  return out;
}

void hub::count_replay(const std::vector<event>& evs) {
  if (evs.empty()) return;
  if (evs.front().tail->starts_with(",\"type\":\"reset\""))
    ++resets_;
  else
    ++replays_;
}

void hub::attach(const link_ptr& l, std::optional<uint64_t> since) {
  inbox& box = get_inbox(l->user);
  if (box.sessions.empty()) ++online_users_;
  box.sessions.push_back(l);
  std::vector<event> evs;
  if (since) {
    evs = replay(box, *since);
    count_replay(evs);
  }
  l->worker->post([l, evs = std::move(evs)]() mutable {
    if (l->receiver) l->receiver->on_replay(std::move(evs));
  });
}

void hub::detach(const link_ptr& l) {
  inbox* box = find_inbox(l->user);
  if (!box) return;
  auto it = std::find(box->sessions.begin(), box->sessions.end(), l);
  if (it == box->sessions.end()) return;
  box->sessions.erase(it);
  if (box->sessions.empty()) {
    --online_users_;
    box->sessions.shrink_to_fit();
    box->idle_since = now_ms();
  }
}

void hub::catch_up(const link_ptr& l, uint64_t since) {
  inbox* box = find_inbox(l->user);
  std::vector<event> evs;
  if (box) evs = replay(*box, since);
  count_replay(evs);
  l->worker->post([l, evs = std::move(evs)]() mutable {
    if (l->receiver) l->receiver->on_replay(std::move(evs));
  });
}

void hub::push(inbox& box, const event_tail& tail) {
  event e{box.next_seq++, tail};
  if (!box.sessions.empty() && !outgoing_since_) outgoing_since_ = std::chrono::steady_clock::now();
  for (const auto& l : box.sessions) outgoing_[l->worker->index()].emplace_back(l, e);
  size_t held = box.held.size();
  box.held.push(std::move(e), settings_.inbox_size);
  held_events_ += box.held.size() - held;
}

void hub::flush() {
  if (!outgoing_since_) return;  // nothing queued for a connection
  auto since = *outgoing_since_;
  outgoing_since_.reset();
  for (size_t w = 0; w < outgoing_.size(); ++w) {
    if (outgoing_[w].empty()) continue;
    auto batch = std::move(outgoing_[w]);
    outgoing_[w] = {};
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
  inbox& box = get_inbox(user);
  if (std::find(box.rooms.begin(), box.rooms.end(), room_name) != box.rooms.end())
    return op_result{200, {}, true};
  auto& slot = rooms_[room_name];
  if (!slot) {
    slot = std::make_unique<room>();
    slot->name = room_name;
  }
  room& r = *slot;
  box.rooms.push_back(room_name);
  r.members.insert(std::lower_bound(r.members.begin(), r.members.end(), user), user);
  // History first (as "history" events), then live messages.
  for (const auto& t : r.history) {
    static constexpr std::string_view from = ",\"type\":\"message\"";
    std::string h = ",\"type\":\"history\"";
    h.append(*t, from.size());
    push(box, std::make_shared<const std::string>(std::move(h)));
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
  inbox* box = find_inbox(user);
  auto rit = rooms_.find(room_name);
  if (!box || rit == rooms_.end()) return op_result{404, "not in room '" + room_name + "'"};
  auto it = std::find(box->rooms.begin(), box->rooms.end(), room_name);
  if (it == box->rooms.end()) return op_result{404, "not in room '" + room_name + "'"};
  box->rooms.erase(it);
  room& r = *rit->second;
  remove_member(r, user);
  presence_event(r, user, false);
  if (r.members.empty() && r.history.empty()) rooms_.erase(rit);
  flush();
  return {};
}

void hub::presence_event(room& r, const std::string& user, bool joined) {
  if (!settings_.room_presence_events) return;
  nlohmann::json d = {{"event", joined ? "join" : "leave"}, {"user", user}};
  auto tail = make_tail("presence", &r.name, &user, d.dump(), now_ms());
  for (const auto& m : r.members)
    if (inbox* box = find_inbox(m)) push(*box, tail);
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
    const inbox* box = find_inbox(u);
    out.push_back(member_info{u, box ? box->sessions.size() : 0});
  }
  return out;
}

std::pair<bool, size_t> hub::presence(const std::string& user) const {
  const inbox* box = find_inbox(user);
  size_t n = box ? box->sessions.size() : 0;
  return {n > 0, n};
}

bool hub::on_user_message(const broker::message& m) {
  // Anonymous connections are read-only rooms members; nobody sends to them.
  if (m.routing_key.starts_with("anonymous:")) return false;
  inbox* box = find_inbox(m.routing_key);
  if (!box) return false;
  push(*box, make_tail("message", m, nullptr, nullptr));
  flush();
  return true;
}

bool hub::on_room_message(const broker::message& m) {
  const std::string& name = m.routing_key;
  if (name.empty()) return false;
  auto& slot = rooms_[name];
  if (!slot) {
    slot = std::make_unique<room>();
    slot->name = name;
  }
  room& r = *slot;
  auto tail = make_tail("message", m, &r.name, nullptr);
  if (settings_.room_history > 0) {
    if (r.history.size() >= settings_.room_history)
      r.history.erase(r.history.begin(),
                      r.history.begin() + long(r.history.size() - settings_.room_history + 1));
    r.history.push_back(tail);
  }
  for (const auto& u : r.members)
    if (inbox* box = find_inbox(u)) push(*box, tail);
  flush();
  return true;
}

bool hub::on_feed_message(const broker::message& m) {
  const std::string& b = m.routing_key;
  last_feed_fanout_ = 0;
  event_tail tail;
  follows_.for_each_follower(b, [&](std::string_view a) {
    inbox* box = find_inbox(std::string(a));
    if (!box) return;
    if (!tail) tail = make_tail("message", m, nullptr, &b);
    push(*box, tail);
    ++last_feed_fanout_;
  });
  flush();
  return last_feed_fanout_ > 0;
}

}  // namespace warren::web
