// The message store's inbox records: the web gateway's inbox events, room history, read positions
// and erasures, in the message segments (docs/storage.md, "Inbox records"). A segment that holds
// inbox records keeps one reference in live_ until all of them, and all of every earlier such
// segment, have expired: segments go oldest first, so a user's chain of records (each points to
// the previous one) never crosses a hole.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>

#include <spdlog/spdlog.h>

#include "common/byte_io.hpp"
#include "store/message_store.hpp"
#include "store/record_file.hpp"

namespace warren::store {

namespace {

bool is_inbox_kind(uint8_t k) {
  return k >= inbox_event && k <= inbox_erase;
}

// `u8 kind | i64 expires_ms | body`
bool split(std::string_view payload, inbox_kind& kind, int64_t& expires, std::string_view& body) {
  if (payload.size() < 9 || !is_inbox_kind(uint8_t(payload[0]))) return false;
  common::byte_reader r(payload.data(), payload.size());
  kind = inbox_kind(r.u8());
  expires = int64_t(r.u64());
  body = payload.substr(9);
  return r.ok();
}

}  // namespace

int64_t message_store::inbox_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool message_store::note_inbox_record(std::string_view payload, uint32_t seg, int64_t) {
  inbox_kind kind;
  int64_t expires;
  std::string_view body;
  if (!split(payload, kind, expires, body)) return false;
  auto [it, fresh] = inbox_expiry_.emplace(seg, expires);
  if (!fresh) it->second = std::max(it->second, expires);
  return true;
}

void message_store::hold_inbox_segments() {
  int64_t now = inbox_now_ms();
  int64_t running = 0;
  for (auto it = inbox_expiry_.begin(); it != inbox_expiry_.end();) {
    running = std::max(running, it->second);
    it->second = running;
    if (running <= now) {
      it = inbox_expiry_.erase(it);  // everything in it (and before it) has expired
      continue;
    }
    ++live_[it->first];
    ++it;
  }
}

uint64_t message_store::write_inbox(inbox_kind kind, int64_t expires_ms, std::string_view body,
                                    inbox_location& at) {
  std::lock_guard shards(shards_m_);
  if (active_bytes_ >= opts_.segment_bytes) roll_segment();
  auto [it, fresh] = inbox_expiry_.emplace(active_seg_, expires_ms);
  if (fresh) {
    ++live_[active_seg_];
    // An earlier segment that outlives this one holds it back (segments go oldest first).
    if (it != inbox_expiry_.begin()) it->second = std::max(it->second, std::prev(it)->second);
  } else {
    it->second = std::max(it->second, expires_ms);
  }
  at.segment = active_seg_;
  at.offset = uint32_t(active_bytes_);

  std::lock_guard lk(m_);
  std::string& out = record_chunk(body.size());
  size_t start = begin_record(out);
  common::byte_writer w(out);
  w.u8(kind);
  w.u64(uint64_t(expires_ms));
  w.bytes(body);
  end_record(out, start);
  at.length = uint32_t(out.size() - start);
  active_bytes_ += at.length;
  pending_.ticket = ++ticket_;
  if (opts_.confirm_before_write) synced_.store(ticket_, std::memory_order_release);  // unsafe
  wake_writer();
  return ticket_;
}

bool message_store::read_inbox(const inbox_location& at, inbox_kind& kind, int64_t& expires_ms,
                               std::string& body) {
  {
    std::lock_guard shards(shards_m_);
    if (!at || !live_.count(at.segment) || at.length < 17) return false;
  }
  auto handle = read_fd(at.segment);
  if (!handle) return false;
  int fd = handle->fd;
  std::string buf(at.length, '\0');
  ssize_t n = ::pread(fd, buf.data(), buf.size(), off_t(at.offset));
  if (n != ssize_t(buf.size())) {
    flush();  // still in the pending batch
    n = ::pread(fd, buf.data(), buf.size(), off_t(at.offset));
  }
  if (n != ssize_t(buf.size())) return false;
  common::byte_reader h(buf.data(), 8);
  uint32_t len = h.u32();
  if (size_t(len) + 8 != buf.size()) return false;
  std::string_view b;
  if (!split(std::string_view(buf).substr(8), kind, expires_ms, b)) return false;
  body.assign(b);
  return true;
}

void message_store::recover_inbox(
    int64_t now_ms,
    const std::function<void(inbox_kind, int64_t, std::string_view, const inbox_location&)>& fn) {
  std::string data;
  for (const auto& entry : inbox_expiry_) {
    // Not a structured binding: clang 14 (the sanitizer builds) cannot capture one in a lambda.
    uint32_t seg = entry.first;
    if (seg == active_seg_) continue;  // nothing written yet since recovery
    if (!read_whole_file(segment_path(seg, false), data)) continue;
    scan_records(data, "WRNSEG01", [&](std::string_view p) {
      inbox_kind kind;
      int64_t expires;
      std::string_view body;
      if (!split(p, kind, expires, body) || expires <= now_ms) return;
      inbox_location at{seg, uint32_t(p.data() - data.data()) - 8, uint32_t(p.size() + 8)};
      fn(kind, expires, body, at);
    });
  }
}

void message_store::expire_inbox(int64_t now_ms) {
  std::lock_guard shards(shards_m_);
  while (!inbox_expiry_.empty() && inbox_expiry_.begin()->second <= now_ms) {
    uint32_t seg = inbox_expiry_.begin()->first;
    if (seg == active_seg_) {
      // Nothing but expired records in the segment being written: start a new one, so that
      // an idle gateway gives its space back too.
      if (live_[seg] != 1) break;  // messages in it: it goes once they are acked
      roll_segment();
    }
    inbox_expiry_.erase(inbox_expiry_.begin());
    unref_segment(seg, 1);
  }
}

}  // namespace warren::store
