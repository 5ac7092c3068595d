// Holding events in inboxes, replaying them, and keeping them in the store (docs/storage.md,
// "Inbox records"); the backend's inbox API. On the hub's worker.
#include <algorithm>
#include <limits>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "broker/vhost.hpp"
#include "common/byte_io.hpp"
#include "mgmt/definitions_json.hpp"
#include "net/worker.hpp"
#include "web/hub.hpp"
#include "web/hub_internal.hpp"

namespace warren::web {

namespace {

void put_str(common::byte_writer& w, std::string_view s) {
  w.u32(uint32_t(s.size()));
  w.bytes(s);
}

std::string_view get_str(common::byte_reader& r) {
  uint32_t n = r.u32();
  return r.bytes(n);
}

// inbox_event: u64 seq | u32 prev segment | u32 prev offset | u32 prev length | user | tail
struct event_record {
  uint64_t seq = 0;
  store::inbox_location prev;
  std::string_view user, tail;
};

bool decode_event_record(std::string_view body, event_record& e) {
  common::byte_reader r(body.data(), body.size());
  e.seq = r.u64();
  e.prev.segment = r.u32();
  e.prev.offset = r.u32();
  e.prev.length = r.u32();
  e.user = get_str(r);
  e.tail = get_str(r);
  return r.ok();
}

event reset_event(uint64_t seq, std::string_view reason, uint64_t after) {
  nlohmann::json d = {{"reason", reason}, {"after", after}, {"missed_to", seq}};
  return event{seq, make_tail("reset", nullptr, nullptr, mgmt::dump(d), now_ms())};
}

bool expired(const event& e, int64_t now) {
  return e.expires_ms != 0 && e.expires_ms <= now;
}

}  // namespace

void encode_room_record(std::string& out, std::string_view room, std::string_view tail) {
  common::byte_writer w(out);
  put_str(w, room);
  put_str(w, tail);
}

hub::send_options hub::options_of(const broker::message& m) {
  send_options o;
  o.persistent = m.persistent();
  if (m.properties.expiration) {
    int64_t ms = 0;
    if (broker::parse_expiration(*m.properties.expiration, ms)) o.ttl_ms = ms;
  }
  if (m.properties.headers &&
      common::table_bool(*m.properties.headers, "x-warren-transient") == std::optional<bool>(true))
    o.transient = true;
  // As an AMQP queue does with expiration 0: delivered if someone is there now, else nothing.
  if (o.ttl_ms == 0) o.transient = true;
  return o;
}

int64_t hub::expiry(const send_options& o, int64_t now) const {
  int64_t ttl = std::chrono::duration_cast<std::chrono::milliseconds>(settings_.inbox_ttl).count();
  if (o.ttl_ms >= 0) ttl = std::min(ttl, o.ttl_ms);
  return now + ttl;
}

void hub::note_ticket(uint64_t t, bool persistent) {
  written_ticket_ = std::max(written_ticket_, t);
  // The publish in progress (AMQP with confirms, or the HTTP API) waits for it.
  if (persistent) vhost_.external_stored(t);
}

void hub::push(const std::string& user, inbox& box, const event_tail& tail, const send_options& o) {
  live* on = live_of(user, box);
  auto deliver = [&](const event& e) {
    if (!on || on->sessions.empty()) return;
    if (!outgoing_since_) outgoing_since_ = std::chrono::steady_clock::now();
    for (const auto& l : on->sessions) outgoing_[l->worker->index()].emplace_back(l, e);
  };
  if (o.transient) {
    deliver(event{box.last_seq(), tail, 0, true});
    return;
  }
  int64_t expires = expiry(o, now_ms());
  held_events_ -= box.held();
  event e{box.take_seq(settings_.inbox_size), tail, expires, false};
  held_events_ += box.held();
  if (store_) {
    write_event(user, box, e);
    if (o.persistent) vhost_.external_stored(written_ticket_);
  }
  box.hold_until(expires);
  deliver(e);
  if (on) on->cache.push(std::move(e), settings_.inbox_size);
}

void hub::write_event(const std::string& user, inbox& box, const event& e) {
  store::inbox_location prev = box.newest();
  std::string body;
  body.reserve(40 + user.size() + e.tail->size());
  common::byte_writer w(body);
  w.u64(e.seq);
  w.u32(prev.segment);
  w.u32(prev.offset);
  w.u32(prev.length);
  put_str(w, user);
  put_str(w, *e.tail);
  store::inbox_location at;
  note_ticket(store_->write_inbox(store::inbox_event, e.expires_ms, body, at), false);
  box.set_newest(at);
}

std::vector<event> hub::held_from(inbox& box, live* on, uint64_t from, size_t limit, bool& more) {
  int64_t now = now_ms();
  std::vector<event> out;
  more = false;
  from = std::max(from, box.first_seq());
  if (from >= box.next_seq()) return out;
  uint64_t cache_first = on ? box.next_seq() - on->cache.size() : box.next_seq();
  if (from < cache_first && store_) {
    // Older than the cache: follow the user's chain of records back from the newest not cached.
    store::inbox_location at = on ? on->before_cache : box.newest();
    store::inbox_kind kind;
    int64_t expires;
    std::string body;
    event_record r;
    while (at && store_->read_inbox(at, kind, expires, body)) {
      if (kind != store::inbox_event || !decode_event_record(body, r)) {
        spdlog::error("web gateway: unreadable inbox record in segment {} at {}", at.segment,
                      at.offset);
        break;
      }
      if (r.seq < from) break;
      if (r.seq < cache_first && expires > now)
        out.push_back(event{r.seq, std::make_shared<const std::string>(r.tail), expires, false});
      at = r.prev;
    }
    std::reverse(out.begin(), out.end());
  }
  if (on)
    for (size_t i = 0; i < on->cache.size(); ++i) {
      const event& e = on->cache.at(i);
      if (e.seq >= from && !expired(e, now)) out.push_back(e);
    }
  if (out.size() > limit) {
    out.resize(limit);
    more = true;
  }
  return out;
}

std::vector<event> hub::replay(inbox& box, live* on, uint64_t since) {
  std::vector<event> out;
  uint64_t last = box.last_seq();
  if (since == last) return out;  // nothing newer
  if (since > last) {
    // A number this inbox never gave out (from an inbox erased or expired since, or another
    // server): say the position is unknown here, then go on from this inbox's.
    out.push_back(reset_event(last, "new-inbox", since));
    return out;
  }
  if (since != 0 && since + 1 < box.first_seq()) {
    // Something after `since` is gone (the count limit): say so before what follows.
    out.push_back(reset_event(box.first_seq() - 1, "dropped", since));
  }
  bool more;
  auto held = held_from(box, on, since + 1, std::numeric_limits<size_t>::max(), more);
  out.insert(out.end(), std::make_move_iterator(held.begin()), std::make_move_iterator(held.end()));
  return out;
}

void hub::recover() {
  if (!store_) return;
  size_t events = 0, reads = 0, erased = 0, history = 0;
  store_->recover_inbox(now_ms(), [&](store::inbox_kind kind, int64_t expires,
                                      std::string_view body, const store::inbox_location& at) {
    common::byte_reader r(body.data(), body.size());
    switch (kind) {
      case store::inbox_event: {
        event_record e;
        if (!decode_event_record(body, e)) break;
        auto [slot, fresh] = inboxes_.try_emplace(e.user);
        inbox& box = *slot;
        if (fresh) box.start(e.seq);
        if (!box.recovered(e.seq, settings_.inbox_size)) break;  // not after what is known
        box.set_newest(at);
        box.hold_until(expires);
        ++events;
        break;
      }
      case store::room_event: {
        std::string room(get_str(r));
        std::string_view tail = get_str(r);
        if (!r.ok() || settings_.room_history == 0) break;
        auto& slot = rooms_[room];
        if (!slot) {
          slot = std::make_unique<hub::room>();
          slot->name = room;
        }
        auto& h = slot->history;
        if (h.size() >= settings_.room_history)
          h.erase(h.begin(), h.begin() + long(h.size() - settings_.room_history + 1));
        h.push_back(room_entry{std::make_shared<const std::string>(tail), expires});
        ++history;
        break;
      }
      case store::inbox_read: {
        uint64_t seq = r.u64();
        std::string user(get_str(r));
        if (!r.ok()) break;
        if (inbox* box = find_inbox(user)) box->set_read(std::min(seq, box->last_seq()));
        ++reads;
        break;
      }
      case store::inbox_erase: {
        std::string user(get_str(r));
        if (r.ok()) inboxes_.erase(user);
        ++erased;
        break;
      }
    }
  });
  held_events_ = 0;
  inboxes_.for_each([&](std::string_view, const inbox& box) { held_events_ += box.held(); });
  spdlog::info(
      "web gateway: {} inboxes holding {} events, {} rooms with history recovered ({} event, {} "
      "history, {} read and {} erase records)",
      inboxes_.size(), held_events_, rooms_.size(), events, history, reads, erased);
}

void hub::sweep(int64_t now) {
  // A slice of the entries per tick, so that a million inboxes cost no pause: an inbox that is
  // not live and whose events have all expired (or that never held one) is forgotten.
  constexpr size_t slice = 16384;
  std::vector<std::string> gone;
  inboxes_.visit_some(sweep_cursor_, slice, [&](std::string_view user, const inbox& box) {
    if (!box.live() && box.expires_max() <= now) gone.emplace_back(user);
  });
  for (const auto& u : gone) {
    inbox* box = inboxes_.find(u);
    held_events_ -= box->held();
    inboxes_.erase(u);
  }
}

inbox_page hub::read_inbox(const std::string& user, uint64_t since, size_t limit) {
  inbox_page p;
  inbox* box = find_inbox(user);
  if (!box) return p;
  p.last_seq = box->last_seq();
  p.first_seq = box->held() > 0 ? box->first_seq() : 0;
  p.read_seq = box->read_seq();
  uint64_t read_to = std::max(box->read_seq(), box->first_seq() - 1);
  p.unread = box->last_seq() > read_to ? box->last_seq() - read_to : 0;
  p.events = held_from(*box, live_of(user, *box), since + 1, limit, p.more);
  return p;
}

std::optional<uint64_t> hub::set_read(const std::string& user, uint64_t seq) {
  inbox* box = find_inbox(user);
  if (!box) return std::nullopt;
  box->set_read(std::min(seq, box->last_seq()));
  if (store_) {
    std::string body;
    common::byte_writer w(body);
    w.u64(box->read_seq());
    put_str(w, user);
    store::inbox_location at;
    note_ticket(store_->write_inbox(store::inbox_read, expiry(send_options{}, now_ms()), body, at),
                false);
  }
  uint64_t read_to = std::max(box->read_seq(), box->first_seq() - 1);
  return box->last_seq() > read_to ? box->last_seq() - read_to : 0;
}

uint64_t hub::erase(const std::string& user) {
  inbox* box = find_inbox(user);
  if (!box) return 0;
  held_events_ -= box->held();
  uint64_t ticket = 0;
  if (store_) {
    std::string body;
    common::byte_writer w(body);
    put_str(w, user);
    store::inbox_location at;
    ticket = store_->write_inbox(store::inbox_erase, expiry(send_options{}, now_ms()), body, at);
    note_ticket(ticket, false);
  }
  live* on = live_of(user, *box);
  if (!on) {
    inboxes_.erase(user);
    return ticket;
  }
  // Connected: the connections stay, and the numbering goes on from where it was.
  box->drop_all();
  on->cache.clear();
  on->before_cache = {};
  return ticket;
}

}  // namespace warren::web
