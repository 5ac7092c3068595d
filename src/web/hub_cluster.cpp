// The hub in a cluster (docs/cluster.md, "The web gateway across nodes"). Each user has one
// owner node, the slot of its name in the shard map (web/shard_map.hpp); only the owner keeps the
// user's inbox. A send arriving elsewhere is handed to the owner; a browser connected elsewhere
// is served through a *proxy* there: the node asks the owner for the events after its `since`
// and registers its interest (once per user per node, however many tabs), and the owner hands
// it every new event of the user once, which the node gives its tabs. Nodes talk through the
// links between nodes (app/node_links), as forwards to the sink exchange `warren.nodes`, whose
// bodies are small JSON objects:
//
// clang-format off
//   op      | from -> to           | body
//   attach  | node -> owner        | {"u": user, "n": node, "r": request, "s": since?, "t": tabs}
//   tabs    | node -> owner        | {"u": user, "n": node, "t": tabs}: the node's tabs, for presence
//   replay  | owner -> node        | {"u": user, "n": owner, "r": request, "e": [[seq, tail, transient]...]}
//   events  | owner -> node        | {"u": user, "n": owner, "e": [...]}
//   detach  | node -> owner        | {"u": user, "n": node}
//   push    | room's owner ->      | {"u": "", "us": [users], "t": tail, "x": ttl ms, "tr": transient}:
//           |   user's owner       |   one event for the users the receiving node owns, once per node
//   call    | node -> key's owner  | {"u": user, "n": node, "r": request, "k": key, "op": op, "room": R,
//           |                      |  "data": D}: an operation run where its key lives (owner_op)
//   answer  | key's owner -> node  | {"u": "", "r": request, "res": {"code", "error", "extra"}}
//   adopt, handed: a slot's state handed to its new owner (hub_handover.cpp)
// clang-format on
// Every one carries the sender's map version (header x-warren-map, hub_handover.cpp).
//
// The owner answers an attach, after its store synced what it holds, with a replay; its later
// events follow on the same link, so a tab made live at its replay misses nothing and numbers
// are the owner's. When the map moves a user, the sessions of that user attach again where it
// now lives, from the newest seq seen: when the old owner was running it handed the inbox over
// first (same numbers, nothing missed); else the new owner's inbox never gave that number out,
// so the tab gets a `reset` first (never a silent gap). On the hub's worker, like the rest of
// the hub.
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "broker/vhost.hpp"
#include "mgmt/definitions_json.hpp"
#include "net/worker.hpp"
#include "web/hub.hpp"
#include "web/hub_internal.hpp"

namespace warren::web {

namespace {

using json = nlohmann::json;

// Set on a send handed to its owner: the receiving node keeps it whatever its own map says
// (two nodes whose maps differ for a moment never hand a message back and forth).
constexpr std::string_view hop_header = "x-warren-hop";

json events_json(const event* evs, size_t n) {
  json out = json::array();
  for (size_t i = 0; i < n; ++i)
    out.push_back(json::array({evs[i].seq, *evs[i].tail, evs[i].transient ? 1 : 0}));
  return out;
}

std::vector<event> events_of(const json& j) {
  std::vector<event> out;
  if (!j.is_array()) return out;
  for (const auto& e : j) {
    if (!e.is_array() || e.size() != 3 || !e[0].is_number_unsigned() || !e[1].is_string()) continue;
    out.push_back(event{e[0].get<uint64_t>(),
                        std::make_shared<const std::string>(e[1].get<std::string>()), 0,
                        e[2] == 1});
  }
  return out;
}

bool drop(std::vector<link_ptr>& v, const link_ptr& l) {
  auto it = std::find(v.begin(), v.end(), l);
  if (it == v.end()) return false;
  v.erase(it);
  return true;
}

}  // namespace

void hub::set_cluster(cluster_hooks h) {
  cluster_ = std::move(h);
}

std::string hub::away_owner(std::string_view name) const {
  if (!cluster_ || !cluster_->shards) return {};
  // The map this hub last acted on (rehome), not a newer one the cluster thread just set: what is
  // owned here is what the hand-overs and stale drops were done for.
  std::string o = placed_ ? (*placed_)[slot_of(name)] : cluster_->shards->owner(name);
  if (o == cluster_->shards->self()) return {};
  return o;
}

bool hub::forward_to_owner(const std::string& node, const broker::message& m) {
  broker::message copy = m;
  common::field_table h =
      copy.properties.headers ? *copy.properties.headers : common::field_table{};
  h.set(std::string(hop_header), true);
  h.set(std::string(map_header), map_version());
  copy.properties.headers = std::move(h);
  copy.amqp_properties.clear();  // its headers changed
  cluster_->send(node, copy);
  return true;
}

void hub::send_node(const std::string& node, std::string_view op, std::string body) {
  broker::message m;
  m.exchange = std::string(node_exchange);
  m.routing_key = std::string(op);
  m.body = std::move(body);
  m.properties.content_type = "application/json";
  common::field_table h;
  h.set(std::string(map_header), map_version());
  m.properties.headers = std::move(h);
  cluster_->send(node, m);
}

void hub::send_events(const std::string& node, const std::string& user, const event* evs,
                      size_t n) {
  send_node(
      node, "events",
      mgmt::dump(json{{"u", user}, {"n", cluster_->shards->self()}, {"e", events_json(evs, n)}}));
}

void hub::attach_remote(const link_ptr& l, std::optional<uint64_t> since, const std::string& node) {
  auto& p = proxies_[l->user];
  if (!p) {
    p = std::make_unique<proxy>();
    p->node = node;
  }
  p->pending.push_back(l);
  if (since) p->last_seq = std::max(p->last_seq, *since);
  ask_replay(p->node, l, since);
}

size_t hub::connections_of(const std::vector<link_ptr>& sessions, const std::string& user) const {
  if (interests_.empty()) return sessions.size();
  size_t n = 0;
  for (const auto& l : sessions) {
    if (l->node.empty()) {
      ++n;
      continue;
    }
    auto it = interests_.find({user, l->node});
    n += it == interests_.end() ? 1 : it->second->tabs;
  }
  return n;
}

void hub::ask_replay(const std::string& node, const link_ptr& l, std::optional<uint64_t> since) {
  uint64_t r = ++next_request_;
  requests_[r] = replay_request{l, since, std::chrono::steady_clock::now()};
  json b = {{"u", l->user}, {"n", cluster_->shards->self()}, {"r", r}};
  if (auto p = proxies_.find(l->user); p != proxies_.end())
    b["t"] = p->second->active.size() + p->second->pending.size();
  if (since) b["s"] = *since;
  send_node(node, "attach", mgmt::dump(b));
}

bool hub::detach_remote(const link_ptr& l) {
  auto it = proxies_.find(l->user);
  if (it == proxies_.end()) return false;
  proxy& p = *it->second;
  if (!drop(p.active, l) && !drop(p.pending, l)) return false;
  if (p.active.empty() && p.pending.empty()) {
    send_node(p.node, "detach", mgmt::dump(json{{"u", l->user}, {"n", cluster_->shards->self()}}));
    proxies_.erase(it);
  } else {
    send_node(p.node, "tabs",
              mgmt::dump(json{{"u", l->user},
                              {"n", cluster_->shards->self()},
                              {"t", p.active.size() + p.pending.size()}}));
  }
  return true;
}

bool hub::catch_up_remote(const link_ptr& l, uint64_t since) {
  auto it = proxies_.find(l->user);
  if (it == proxies_.end()) return false;
  proxy& p = *it->second;
  if (std::find(p.active.begin(), p.active.end(), l) == p.active.end() &&
      std::find(p.pending.begin(), p.pending.end(), l) == p.pending.end())
    return false;
  ask_replay(p.node, l, since);
  return true;
}

bool hub::on_node_message(const broker::message& m) {
  if (!cluster_) return false;
  auto j = json::parse(m.body, nullptr, false);
  if (!j.is_object() || !j.contains("u") || !j["u"].is_string()) return false;
  std::string user = j["u"].get<std::string>();
  std::string node = j.value("n", std::string());
  uint64_t r = j.contains("r") && j["r"].is_number_unsigned() ? j["r"].get<uint64_t>() : 0;
  const std::string& op = m.routing_key;
  int64_t version = version_of(m);
  auto again = [this, copy = std::make_shared<broker::message>(m)] { on_node_message(*copy); };
  if (op == "attach" && !node.empty()) {
    if (gate(user, version, again)) return true;
    // Asked by a node whose map is older than this one's: its own rehome() asks the owner.
    if (!away_owner(user).empty()) return true;
    std::optional<uint64_t> since;
    if (j.contains("s") && j["s"].is_number_unsigned()) since = j["s"].get<uint64_t>();
    node_attach(node, user, r, since, j.value("t", size_t(1)));
  } else if (op == "detach" && !node.empty()) {
    node_detach(node, user);
  } else if (op == "tabs" && !node.empty()) {
    if (auto it = interests_.find({user, node}); it != interests_.end())
      it->second->tabs = j.value("t", size_t(1));
  } else if (op == "events") {
    node_events(user, node, events_of(j.value("e", json::array())), 0);
  } else if (op == "replay" && r != 0) {
    node_events(user, node, events_of(j.value("e", json::array())), r);
  } else if (op == "push" && j.contains("us") && j["us"].is_array() && j.contains("t") &&
             j["t"].is_string()) {
    std::vector<std::string> users;
    for (const auto& u : j["us"])
      if (u.is_string()) users.push_back(u.get<std::string>());
    send_options o;
    o.ttl_ms = j.value("x", int64_t(-1));
    o.transient = j.value("tr", false);
    node_push(users, std::make_shared<const std::string>(j["t"].get<std::string>()), o);
  } else if (op == "call" && !node.empty() && r != 0) {
    if (gate(j.value("k", std::string()), version, again)) return true;
    auto reply = [this, alive = alive_, node, r](std::string res) {
      if (!alive->load()) return;
      auto parsed = json::parse(res, nullptr, false);
      send_node(node, "answer", mgmt::dump(json{{"u", ""}, {"r", r}, {"res", std::move(parsed)}}));
    };
    if (cluster_->owner_op)
      cluster_->owner_op(user, j.value("op", std::string()), j.value("room", std::string()),
                         j.value("data", std::string()), std::move(reply));
    else
      reply(mgmt::dump(json{{"code", 503}, {"error", "no such operation here"}}));
  } else if (op == "adopt" && !node.empty()) {
    node_adopt(node, m.body);
  } else if (op == "handed" && !node.empty() && j.contains("s") && j["s"].is_array()) {
    std::vector<size_t> slots;
    for (const auto& s : j["s"])
      if (s.is_number_unsigned()) slots.push_back(s.get<size_t>());
    node_handed(node, slots);
  } else if (op == "answer" && r != 0) {
    auto c = calls_.find(r);
    if (c == calls_.end()) return true;  // too late: answered 503 already
    auto done = std::move(c->second.done);
    calls_.erase(c);
    const json& res = j.contains("res") ? j["res"] : json();
    done(res.value("code", 500), res.value("error", std::string()),
         res.contains("extra") ? mgmt::dump(res["extra"]) : std::string("{}"));
  } else {
    return false;
  }
  flush();
  return true;
}

void hub::node_attach(const std::string& node, const std::string& user, uint64_t request,
                      std::optional<uint64_t> since, size_t tabs) {
  inbox& box = get_inbox(user);
  live& on = go_live(user, box);
  auto& slot = interests_[{user, node}];
  if (!slot) {
    slot = std::make_unique<interest>();
    slot->receiver = std::make_unique<node_receiver>(*this, node, user);
    slot->link = std::make_shared<session_link>();
    slot->link->receiver = slot->receiver.get();
    slot->link->worker = home_;
    slot->link->user = user;
    slot->link->node = node;
    if (on.sessions.empty()) ++online_users_;
    on.sessions.push_back(slot->link);
  }
  slot->tabs = tabs;
  std::vector<event> evs;
  if (since) {
    evs = replay(box, &on, *since);
    count_replay(evs);
  }
  // After what the store must sync, and behind the live events already on their way to the
  // hub's worker: the node takes its tab live at this answer.
  release([this, alive = alive_, node, user, request, evs = std::move(evs)]() mutable {
    home_->post([this, alive, node, user, request, evs = std::move(evs)] {
      if (!alive->load()) return;
      send_node(node, "replay",
                mgmt::dump(json{{"u", user},
                                {"n", cluster_->shards->self()},
                                {"r", request},
                                {"e", events_json(evs.data(), evs.size())}}));
    });
  });
}

void hub::node_detach(const std::string& node, const std::string& user) {
  auto it = interests_.find({user, node});
  if (it == interests_.end()) return;
  link_ptr l = it->second->link;
  detach(l);
  l->receiver = nullptr;
  interests_.erase(it);
}

void hub::node_events(const std::string& user, const std::string& from, std::vector<event> evs,
                      uint64_t request) {
  auto it = proxies_.find(user);
  proxy* p = it == proxies_.end() ? nullptr : it->second.get();
  // From a node that no longer owns the user here (the map moved, its detach on its way): its
  // numbers are not the tabs' any more.
  if (!p || p->node != from) {
    if (request) requests_.erase(request);
    return;
  }
  for (const auto& e : evs)
    if (!e.transient) p->last_seq = std::max(p->last_seq, e.seq);
  if (request) {
    auto q = requests_.find(request);
    if (q == requests_.end()) return;
    link_ptr l = q->second.link;
    requests_.erase(q);
    if (drop(p->pending, l)) p->active.push_back(l);
    l->worker->post([l, evs = std::move(evs)]() mutable {
      if (l->receiver) l->receiver->on_replay(std::move(evs));
    });
    return;
  }
  if (evs.empty()) return;
  auto shared = std::make_shared<const std::vector<event>>(std::move(evs));
  for (const auto& l : p->active)
    l->worker->post([l, shared] {
      if (l->receiver) l->receiver->on_events(shared->data(), shared->size());
    });
}

void hub::deliver(const std::string& user, const event_tail& tail, const send_options& o,
                  bool create) {
  if (cluster_)
    if (auto node = away_owner(user); !node.empty()) {
      // One hand-over per node and event: the members of a room on node B go in one message.
      auto it = std::find_if(handovers_.begin(), handovers_.end(),
                             [&](const handover& h) { return h.node == node && h.tail == tail; });
      if (it == handovers_.end()) it = handovers_.insert(handovers_.end(), {node, tail, o, {}});
      it->users.push_back(user);
      return;
    }
  push_owned(user, nullptr, tail, o, create);
}

void hub::flush_handovers() {
  auto batch = std::move(handovers_);
  handovers_.clear();
  for (auto& h : batch)
    send_node(h.node, "push",
              mgmt::dump(json{{"u", ""},
                              {"us", std::move(h.users)},
                              {"t", *h.tail},
                              {"x", h.options.ttl_ms},
                              {"tr", h.options.transient}}));
}

void hub::node_push(const std::vector<std::string>& users, const event_tail& tail,
                    const send_options& o) {
  // A user this node no longer owns (its map is newer than the room's node's) is handed on.
  for (const auto& u : users) deliver(u, tail, o, !o.transient);
}

bool hub::call_owner(const std::string& key, const std::string& user, const std::string& op,
                     const std::string& room, const std::string& data, room_answer done) {
  if (!cluster_) return false;
  std::string node = away_owner(key);
  if (node.empty()) return false;
  call_node(node, key, user, op, room, data, std::move(done));
  return true;
}

void hub::remember_member(const std::string& room, const std::string& user, bool joined) {
  if (!cluster_) return;
  if (joined) {
    joined_[room].insert(user);
    return;
  }
  auto it = joined_.find(room);
  if (it == joined_.end()) return;
  it->second.erase(user);
  if (it->second.empty()) joined_.erase(it);
}

std::vector<std::string> hub::other_nodes() const {
  std::vector<std::string> out;
  if (!cluster_ || !cluster_->shards) return out;
  auto map = cluster_->shards->get();
  if (!map) return out;
  for (const auto& n : *map)
    if (!n.empty() && n != cluster_->shards->self() &&
        std::find(out.begin(), out.end(), n) == out.end())
      out.push_back(n);
  return out;
}

void hub::call_node(const std::string& node, const std::string& key, const std::string& user,
                    const std::string& op, const std::string& room, const std::string& data,
                    room_answer done) {
  uint64_t r = ++next_request_;
  calls_[r] =
      pending_call{std::chrono::steady_clock::now() + std::chrono::seconds(5), std::move(done)};
  send_node(node, "call",
            mgmt::dump(json{{"u", user},
                            {"n", cluster_->shards->self()},
                            {"r", r},
                            {"k", key},
                            {"op", op},
                            {"room", room},
                            {"data", data}}));
}

void hub::cluster_tick() {
  auto now = std::chrono::steady_clock::now();
  // Replays not answered: asked again of the proxy's owner, or dropped with their tab.
  std::vector<replay_request> again;
  for (auto it = requests_.begin(); it != requests_.end();) {
    if (now - it->second.sent < std::chrono::seconds(2)) {
      ++it;
      continue;
    }
    again.push_back(std::move(it->second));
    it = requests_.erase(it);
  }
  for (auto& q : again) {
    // Only for a tab still attached (a tab that went was detached from its proxy).
    auto p = proxies_.find(q.link->user);
    if (p == proxies_.end()) continue;
    auto& x = *p->second;
    if (std::find(x.pending.begin(), x.pending.end(), q.link) != x.pending.end() ||
        std::find(x.active.begin(), x.active.end(), q.link) != x.active.end())
      ask_replay(x.node, q.link, q.since);
  }
  // Room operations whose node did not answer (down, or the link lost them).
  for (auto it = calls_.begin(); it != calls_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    auto done = std::move(it->second.done);
    it = calls_.erase(it);
    done(503, "the node owning it in the cluster did not answer", "{}");
  }
  // Interests of nodes that stopped (their lease went): their sessions are gone with them.
  for (auto it = interests_.begin(); it != interests_.end();) {
    if (cluster_->running && cluster_->running(it->first.second)) {
      ++it;
      continue;
    }
    link_ptr l = it->second->link;
    detach(l);
    l->receiver = nullptr;
    it = interests_.erase(it);
  }
  // The map's changes are posted here (rehome); the tick catches one that came before the hub's
  // worker ran, without a walk over every session each second.
  if (cluster_->shards->version() != rehomed_version_) rehome();
  handover_tick();
}

void hub::rehome() {
  if (!cluster_) return;
  rehomed_version_ = cluster_->shards->version();
  const std::string& self = cluster_->shards->self();
  // Slots that changed owner since the map this node last acted on (hub_handover.cpp): those it
  // gave to another node are handed there, before the sessions below ask that node for them;
  // those it took from a running node are kept back until handed; what it held for slots it took
  // otherwise (and, at its first map, for every slot not its own) is stale and goes.
  auto map = cluster_->shards->get();
  std::vector<bool> gone(shard_slots), stale(shard_slots), orphaned(shard_slots);
  bool any_gone = false, any_stale = false, any_orphaned = false;
  if (map && map->size() == shard_slots) {
    std::map<std::string, std::vector<size_t>> out;
    auto now = std::chrono::steady_clock::now();
    for (size_t s = 0; s < shard_slots; ++s) {
      const std::string& owner = (*map)[s];
      if (!placed_) {
        if (owner != self) stale[s] = any_stale = true;
        continue;
      }
      const std::string& was = (*placed_)[s];
      if (was == owner) continue;
      if (!was.empty() && !owner.empty() && was != self &&
          !(cluster_->running && cluster_->running(was)))
        orphaned[s] = any_orphaned = true;
      if (was == self && !owner.empty()) {
        out[owner].push_back(s);
        gone[s] = any_gone = true;
      } else if (owner == self) {
        if (handed_early_.erase(s) || incoming_.count(s)) continue;  // its hand-over came first
        stale[s] = any_stale = true;
        if (!was.empty() && cluster_->running && cluster_->running(was))
          incoming_[s] = incoming_slot{was, now + std::chrono::seconds(5), {}};
      }
    }
    if (any_stale) forget_slots(stale);
    for (const auto& [node, slots] : out) hand_over(node, slots);
    placed_ = map;
  }
  // Proxies whose user the map gave to another node: their sessions attach there (or here).
  std::vector<std::string> moved;
  for (const auto& [user, p] : proxies_) {
    std::string o = away_owner(user);
    if (o != p->node && !(o.empty() && cluster_->shards->owner(user).empty()))
      moved.push_back(user);
  }
  for (const auto& user : moved) {
    auto it = proxies_.find(user);
    std::unique_ptr<proxy> p = std::move(it->second);
    proxies_.erase(it);
    if (cluster_->running && cluster_->running(p->node))
      send_node(p->node, "detach", mgmt::dump(json{{"u", user}, {"n", self}}));
    spdlog::info("web gateway: user '{}' moved from node '{}': {} sessions attach again", user,
                 p->node, p->active.size() + p->pending.size());
    // Never from 0: the new owner's inbox then answers with a reset (it never gave out that
    // number), so a tab learns that events may be missing.
    uint64_t since = std::max<uint64_t>(p->last_seq, 1);
    for (const auto& l : p->active) attach(l, since);
    for (const auto& l : p->pending) attach(l, since);
  }
  // Users with sessions here whose inbox now lives on another node.
  std::vector<std::string> away;
  for (const auto& [user, on] : lives_)
    if (!on->sessions.empty() && !away_owner(user).empty()) away.push_back(user);
  for (const auto& user : away) {
    inbox* box = find_inbox(user);
    live* on = box ? live_of(user, *box) : nullptr;
    if (!on) continue;
    uint64_t last = std::max<uint64_t>(box->last_seq(), 1);
    std::vector<link_ptr> tabs;
    for (const auto& l : on->sessions)
      if (l->node.empty()) tabs.push_back(l);  // a tab, not another node's interest
    for (const auto& l : tabs) {
      detach(l);
      attach(l, last);
    }
  }
  // Handed over: no longer held here (the sessions above moved first).
  if (any_gone) forget_slots(gone);
  // Rooms whose owner went with its members list: the members that joined through this node
  // join again at the new owner (each node does so for its own), so the list stays whole.
  if (any_orphaned)
    for (const auto& entry : joined_) {
      const std::string& name = entry.first;
      const auto& users = entry.second;
      if (!orphaned[slot_of(name)]) continue;
      for (const auto& u : users) {
        if (away_owner(name).empty()) {
          join(u, name);
        } else {
          call_owner(
              name, u, "join", name, {}, [name, u](int code, std::string error, std::string) {
                if (code != 200)
                  spdlog::warn(
                      "web gateway: '{}' could not join room '{}' again at its new owner: {}", u,
                      name, error);
              });
        }
      }
      spdlog::info("web gateway: {} members of room '{}' joined again at its new owner",
                   users.size(), name);
    }
  // Messages from nodes whose map this one has now caught up with.
  std::vector<std::function<void()>> ready;
  for (auto it = waiting_map_.begin(); it != waiting_map_.end();) {
    if (it->version > map_version()) {
      ++it;
      continue;
    }
    ready.push_back(std::move(it->again));
    it = waiting_map_.erase(it);
  }
  run_later(std::move(ready));
}

}  // namespace warren::web
