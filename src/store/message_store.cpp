// The message store: encoding of records, recovery, and the writer thread.
#include "store/message_store.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "amqp/protocol/field_table.hpp"
#include "broker/vhost.hpp"
#include "common/byte_io.hpp"
#include "store/record_file.hpp"

namespace warren::store {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view defs_magic = "WRNDEF01";
constexpr std::string_view seg_magic = "WRNSEG01";
constexpr std::string_view ack_magic = "WRNACK01";

// Definition record kinds (first byte of the payload).
enum : uint8_t {
  def_exchange = 1,
  def_exchange_delete = 2,
  def_queue = 3,
  def_queue_delete = 4,
  def_bind = 5,
  def_unbind = 6,
};
constexpr uint8_t msg_record = 1;    // for durable queues: recovered after a restart
constexpr uint8_t spool_record = 2;  // only paged out of transient queues: ignored on restart

void put_str(common::byte_writer& w, std::string_view s) {
  w.u32(uint32_t(s.size()));
  w.bytes(s);
}

std::string get_str(common::byte_reader& r) {
  uint32_t n = r.u32();
  return std::string(r.bytes(n));
}

void put_table(common::byte_writer& w, const common::field_table& t) {
  amqp::protocol::encode_table(w, t);
}

common::field_table get_table(common::byte_reader& r) {
  common::field_table t;
  if (!amqp::protocol::decode_table(r, t)) r.fail();
  return t;
}

// The basic properties: a presence mask, then the present ones in AMQP's order.
void put_properties(common::byte_writer& w, const broker::message_properties& p) {
  uint16_t mask = 0;
  int bit = 15;
  auto flag = [&](bool present) {
    if (present) mask |= uint16_t(1u << bit);
    --bit;
  };
  flag(p.content_type.has_value());
  flag(p.content_encoding.has_value());
  flag(p.headers.has_value());
  flag(p.delivery_mode.has_value());
  flag(p.priority.has_value());
  flag(p.correlation_id.has_value());
  flag(p.reply_to.has_value());
  flag(p.expiration.has_value());
  flag(p.message_id.has_value());
  flag(p.timestamp.has_value());
  flag(p.type.has_value());
  flag(p.user_id.has_value());
  flag(p.app_id.has_value());
  flag(p.cluster_id.has_value());
  w.u16(mask);
  if (p.content_type) put_str(w, *p.content_type);
  if (p.content_encoding) put_str(w, *p.content_encoding);
  if (p.headers) put_table(w, *p.headers);
  if (p.delivery_mode) w.u8(*p.delivery_mode);
  if (p.priority) w.u8(*p.priority);
  if (p.correlation_id) put_str(w, *p.correlation_id);
  if (p.reply_to) put_str(w, *p.reply_to);
  if (p.expiration) put_str(w, *p.expiration);
  if (p.message_id) put_str(w, *p.message_id);
  if (p.timestamp) w.u64(*p.timestamp);
  if (p.type) put_str(w, *p.type);
  if (p.user_id) put_str(w, *p.user_id);
  if (p.app_id) put_str(w, *p.app_id);
  if (p.cluster_id) put_str(w, *p.cluster_id);
}

void get_properties(common::byte_reader& r, broker::message_properties& p) {
  uint16_t mask = r.u16();
  auto has = [&](int bit) { return (mask >> bit) & 1u; };
  if (has(15)) p.content_type = get_str(r);
  if (has(14)) p.content_encoding = get_str(r);
  if (has(13)) p.headers = get_table(r);
  if (has(12)) p.delivery_mode = r.u8();
  if (has(11)) p.priority = r.u8();
  if (has(10)) p.correlation_id = get_str(r);
  if (has(9)) p.reply_to = get_str(r);
  if (has(8)) p.expiration = get_str(r);
  if (has(7)) p.message_id = get_str(r);
  if (has(6)) p.timestamp = r.u64();
  if (has(5)) p.type = get_str(r);
  if (has(4)) p.user_id = get_str(r);
  if (has(3)) p.app_id = get_str(r);
  if (has(2)) p.cluster_id = get_str(r);
}

// Acks are matched to messages by (record offset in the segment, queue id), kept while a
// segment is recovered as a sorted vector of offset << 32 | queue (8 bytes per ack).
uint64_t ack_key(uint32_t offset, uint32_t queue) {
  return uint64_t(offset) << 32 | queue;
}

// What recovery needs of a message record without building the message: its kind, id and
// queues, and what a paging queue keeps (body size, priority, TTL). False if unreadable.
struct record_head {
  uint8_t kind = 0;
  uint64_t id = 0;
  uint32_t body_size = 0;
  uint8_t priority = 0;
  std::optional<int64_t> ttl_ms;
};

bool peek_message(std::string_view p, record_head& h, std::vector<uint32_t>& queues) {
  common::byte_reader rd(p.data(), p.size());
  h = {};
  h.kind = rd.u8();
  h.id = rd.u64();
  uint32_t nq = rd.u32();
  queues.clear();
  for (uint32_t i = 0; i < nq && rd.ok(); ++i) queues.push_back(rd.u32());
  auto skip_str = [&] { rd.bytes(rd.u32()); };
  skip_str();  // exchange
  skip_str();  // routing key
  uint16_t mask = rd.u16();
  auto has = [&](int bit) { return (mask >> bit) & 1u; };
  // The properties in put_properties' order: strings and the headers table are u32-sized.
  for (int bit = 15; bit >= 2 && rd.ok(); --bit) {
    if (!has(bit)) continue;
    switch (bit) {
      case 12:  // delivery mode
        rd.u8();
        break;
      case 11:
        h.priority = rd.u8();
        break;
      case 8: {  // expiration
        std::string_view e = rd.bytes(rd.u32());
        int64_t ms = 0;
        if (rd.ok() && broker::parse_expiration(std::string(e), ms)) h.ttl_ms = ms;
        break;
      }
      case 6:  // timestamp
        rd.u64();
        break;
      default:
        skip_str();
    }
  }
  h.body_size = rd.u32();
  rd.bytes(h.body_size);
  return rd.ok();
}

// A message record's payload; null for anything else (and for a spool record unless
// `any_kind`: those matter only for paging, not after a restart).
std::shared_ptr<broker::message> decode_message(std::string_view p, uint32_t seg, uint32_t offset,
                                                std::vector<uint32_t>& queues,
                                                bool any_kind = false) {
  common::byte_reader rd(p.data(), p.size());
  uint8_t kind = rd.u8();
  if (kind != msg_record && !(any_kind && kind == spool_record)) return nullptr;
  uint64_t id = rd.u64();
  uint32_t nq = rd.u32();
  queues.clear();
  for (uint32_t i = 0; i < nq && rd.ok(); ++i) queues.push_back(rd.u32());
  auto m = std::make_shared<broker::message>();
  m->exchange = get_str(rd);
  m->routing_key = get_str(rd);
  get_properties(rd, m->properties);
  m->body = get_str(rd);
  if (!rd.ok()) return nullptr;
  if (m->properties.expiration) {
    int64_t ms = 0;
    if (broker::parse_expiration(*m->properties.expiration, ms)) m->ttl_ms = ms;
  }
  m->store_id = id;
  m->store_segment = seg;
  m->store_offset = offset;
  m->store_length = uint32_t(p.size() + 8);
  return m;
}

}  // namespace

message_store::message_store(fs::path dir, store_options opts)
    : dir_(std::move(dir)),
      msg_dir_(dir_ / "msgs"),
      opts_(opts),
      spool_(std::make_shared<broker::index_spool>(dir_)) {
  fs::create_directories(msg_dir_);
}

message_store::~message_store() {
  {
    std::lock_guard lk(m_);
    stop_ = true;
  }
  writer_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  close_files();
}

fs::path message_store::segment_path(uint32_t seg, bool acks) const {
  return msg_dir_ / fmt::format("{:08}.{}", seg, acks ? "ack" : "seg");
}

// ----------------------------------------------------------------------------- recovery

recovery_stats message_store::recover(broker::vhost& v) {
  auto started = std::chrono::steady_clock::now();
  recovery_stats st;
  v.set_journal(this);
  v.set_restoring(true);

  fs::path defs_path = dir_ / "definitions.log";
  std::string data;
  if (read_whole_file(defs_path, data)) {
    st.bytes += data.size();
    auto r = scan_records(data, defs_magic, [&](std::string_view p) {
      replay_definition(v, p);
      ++st.definitions;
    });
    if (r.torn) {
      ++st.torn_files;
      spdlog::warn(
          "vhost '{}': definitions log torn after {} records (a crash while writing); "
          "the rest is ignored",
          v.name(), r.records);
    }
  }
  recover_segments(v, st);
  v.set_restoring(false);

  // The log is rewritten as a snapshot of what is defined now, so it does not grow with churn
  // from one start to the next.
  std::string snapshot(defs_magic);
  capture_ = &snapshot;
  v.snapshot(*this);
  capture_ = nullptr;
  replace_file(defs_path, snapshot);

  writer_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "store-writer");
    writer_loop();
  });
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return st;
}

void message_store::replay_definition(broker::vhost& v, std::string_view payload) {
  common::byte_reader r(payload.data(), payload.size());
  uint8_t kind = r.u8();
  broker::maybe_error err;
  switch (kind) {
    case def_exchange: {
      broker::exchange_settings s;
      s.name = get_str(r);
      s.type = get_str(r);
      uint8_t flags = r.u8();
      s.durable = true;
      s.auto_delete = flags & 2;
      s.internal = flags & 4;
      s.arguments = get_table(r);
      if (r.ok()) err = v.declare_exchange(s, false);
      break;
    }
    case def_exchange_delete: {
      std::string name = get_str(r);
      if (r.ok()) err = v.delete_exchange(name, false);
      break;
    }
    case def_queue: {
      broker::queue_declare_request q;
      q.name = get_str(r);
      q.store_id = r.u32();
      uint8_t flags = r.u8();
      q.durable = true;
      q.auto_delete = flags & 2;
      q.arguments = get_table(r);
      if (r.ok())
        if (auto res = v.declare_queue(q); auto* e = std::get_if<broker::error>(&res)) err = *e;
      break;
    }
    case def_queue_delete: {
      std::string name = get_str(r);
      if (r.ok())
        if (auto res = v.delete_queue(name, false, false, 0);
            auto* e = std::get_if<broker::error>(&res))
          err = *e;
      break;
    }
    case def_bind:
    case def_unbind: {
      std::string source = get_str(r);
      bool to_queue = r.u8() != 0;
      std::string dest = get_str(r);
      std::string key = get_str(r);
      common::field_table args = get_table(r);
      if (!r.ok()) break;
      auto d = to_queue ? v.queue_dest(dest, 0, false) : v.exchange_dest(dest);
      if (auto* e = std::get_if<broker::error>(&d)) {
        err = *e;
        break;
      }
      auto id = std::get<broker::dest_id>(d);
      err = kind == def_bind ? v.bind(source, id, key, args) : v.unbind(source, id, key, args);
      break;
    }
    default:
      r.fail();
  }
  if (!r.ok())
    spdlog::warn("vhost '{}': unreadable definitions record (kind {}) skipped", v.name(), kind);
  else if (err)
    spdlog::warn("vhost '{}': stored definition not restored: {}", v.name(), err->text);
}

void message_store::recover_segments(broker::vhost& v, recovery_stats& st) {
  std::vector<uint32_t> segs;
  for (const auto& e : fs::directory_iterator(msg_dir_)) {
    const auto& p = e.path();
    if (p.extension() != ".seg") continue;
    try {
      segs.push_back(uint32_t(std::stoul(p.stem().string())));
    } catch (const std::exception&) {
      spdlog::warn("ignoring unexpected file {}", p.string());
    }
  }
  std::sort(segs.begin(), segs.end());
  std::string data, ack_data;
  std::vector<uint32_t> queues, queues_scratch;
  std::vector<uint64_t> acked;
  int64_t inbox_now = inbox_now_ms();  // inbox expiry is wall-clock time
  for (uint32_t seg : segs) {
    ++st.segments;
    acked.clear();
    fs::path ack_path = segment_path(seg, true);
    if (read_whole_file(ack_path, ack_data)) {
      st.bytes += ack_data.size();
      auto r = scan_records(ack_data, ack_magic, [&](std::string_view p) {
        common::byte_reader a(p.data(), p.size());
        uint32_t offset = a.u32(), queue = a.u32();
        if (a.ok()) acked.push_back(ack_key(offset, queue));
      });
      if (r.torn) {
        ++st.torn_files;
        fs::resize_file(ack_path, r.bad_magic ? 0 : r.good_bytes);
      }
    }
    std::sort(acked.begin(), acked.end());
    fs::path seg_path = segment_path(seg, false);
    if (!read_whole_file(seg_path, data)) continue;
    st.bytes += data.size();
    live_[seg] = 0;
    record_head head;
    int64_t now = broker::now_ms();  // per segment: TTLs restart from the moment of recovery
    auto r = scan_records(data, seg_magic, [&](std::string_view p) {
      uint32_t offset = uint32_t(p.data() - data.data()) - 8;
      if (!peek_message(p, head, queues) || head.kind != msg_record) {
        if (note_inbox_record(p, seg, inbox_now)) return;
        if (!p.empty() && uint8_t(p[0]) == msg_record)
          spdlog::warn("vhost '{}': unreadable message record at {} in segment {} skipped",
                       v.name(), offset, seg);
        return;  // or a spool record: paging only, over with the restart
      }
      next_id_ = std::max(next_id_, head.id + 1);
      // A queue that pages it takes only its place; the message is decoded (once for all its
      // queues) only for a queue that keeps it in memory.
      broker::queue::stored_ref ref{
          seg, offset, uint32_t(p.size() + 8), head.body_size, head.priority, head.ttl_ms};
      broker::message_ptr shared;
      for (uint32_t q : queues) {
        if (std::binary_search(acked.begin(), acked.end(), ack_key(offset, q))) continue;
        ++live_[seg];  // before restoring: the queue may release it (or an older one) at once
        bool paged = false;
        bool restored = v.restore_paged(q, ref, now, paged);
        if (restored && !paged) {
          if (!shared) shared = decode_message(p, seg, offset, queues_scratch);
          restored = shared && v.restore_message(q, shared);
        }
        if (restored)
          ++st.messages;
        else
          --live_[seg];  // its queue is gone
      }
    });
    if (r.torn) {
      ++st.torn_files;
      spdlog::warn(
          "vhost '{}': segment {} torn after {} records (a crash while writing it); "
          "cut back to {} bytes",
          v.name(), seg, r.records, r.good_bytes);
      if (r.bad_magic)
        fs::remove(seg_path);
      else
        fs::resize_file(seg_path, r.good_bytes);
    }
  }
  hold_inbox_segments();
  // New messages go to a new segment; segments with nothing left in them go now.
  active_seg_ = segs.empty() ? 1 : segs.back() + 1;
  active_bytes_ = magic_size;
  for (auto it = live_.begin(); it != live_.end();) {
    if (it->second == 0) {
      std::error_code ec;
      fs::remove(segment_path(it->first, false), ec);
      fs::remove(segment_path(it->first, true), ec);
      it = live_.erase(it);
    } else {
      ++it;
    }
  }
  // Releases made while restoring (limits) are in the pending batch; they name live segments.
}

// ----------------------------------------------------------------------------- journal

void message_store::add_definition(const std::function<void(std::string&)>& encode) {
  if (capture_) {
    size_t at = begin_record(*capture_);
    encode(*capture_);
    end_record(*capture_, at);
    return;
  }
  std::lock_guard lk(m_);
  size_t at = begin_record(pending_.defs);
  encode(pending_.defs);
  end_record(pending_.defs, at);
  wake_writer();
}

void message_store::exchange_declared(const broker::exchange_settings& s) {
  add_definition([&](std::string& out) {
    common::byte_writer w(out);
    w.u8(def_exchange);
    put_str(w, s.name);
    put_str(w, s.type);
    w.u8(uint8_t((s.auto_delete ? 2 : 0) | (s.internal ? 4 : 0)));
    put_table(w, s.arguments);
  });
}

void message_store::exchange_deleted(std::string_view name) {
  add_definition([&](std::string& out) {
    common::byte_writer w(out);
    w.u8(def_exchange_delete);
    put_str(w, name);
  });
}

void message_store::queue_declared(const broker::queue_settings& s, uint32_t store_id) {
  add_definition([&](std::string& out) {
    common::byte_writer w(out);
    w.u8(def_queue);
    put_str(w, s.name);
    w.u32(store_id);
    w.u8(uint8_t(s.auto_delete ? 2 : 0));
    put_table(w, s.arguments);
  });
}

void message_store::queue_deleted(std::string_view name) {
  add_definition([&](std::string& out) {
    common::byte_writer w(out);
    w.u8(def_queue_delete);
    put_str(w, name);
  });
}

void message_store::binding_changed(bool added, std::string_view source, bool dest_is_queue,
                                    std::string_view dest, std::string_view key,
                                    const common::field_table& args) {
  add_definition([&](std::string& out) {
    common::byte_writer w(out);
    w.u8(added ? def_bind : def_unbind);
    put_str(w, source);
    w.u8(dest_is_queue ? 1 : 0);
    put_str(w, dest);
    put_str(w, key);
    put_table(w, args);
  });
}

void message_store::unref_segment(uint32_t seg, uint64_t n) {
  auto it = live_.find(seg);
  if (it == live_.end()) return;
  it->second -= std::min(it->second, n);
  if (it->second == 0 && seg != active_seg_) {
    // Every message in it is released everywhere: the files go (after what is pending).
    live_.erase(it);
    read_fds_.erase(seg);  // closed once no reader holds it
    std::lock_guard lk(m_);
    pending_.deletes.push_back(seg);
    wake_writer();
  }
}

void message_store::roll_segment() {
  uint32_t old = active_seg_++;
  active_bytes_ = magic_size;
  if (auto it = live_.find(old); it != live_.end() && it->second == 0) {
    live_.erase(it);
    std::lock_guard lk(m_);
    pending_.deletes.push_back(old);
    wake_writer();
  }
}

std::string& message_store::record_chunk(size_t reserve) {
  // m_ held. Records gather in chunks of about 1 MiB, each reserved once: one growing string
  // would double its capacity (and copy itself) while a flood pages out, holding up to twice
  // what waits for the writer, at the moment memory is shortest.
  constexpr size_t chunk_bytes = 1 << 20;
  auto& segs = pending_.segs;
  if (segs.empty() || segs.back().first != active_seg_ ||
      segs.back().second.size() >= chunk_bytes) {
    segs.emplace_back(active_seg_, "");
    segs.back().second.reserve(chunk_bytes + reserve + 1024);
  }
  return segs.back().second;
}

void message_store::wait_for_writer(std::unique_lock<std::mutex>& lk) {
  // Backpressure: when records arrive faster than the disk takes them (a flood of large
  // messages paging out, the acks of a purge of a deep durable queue), the worker waits for the
  // writer to take the batch, so that what waits in RAM stays within two batches of
  // max_pending_bytes. Not while the writer is retrying a failed write (a full disk): the memory
  // alarm holds publishers back then.
  if (pending_.record_bytes <= max_pending_bytes) return;
  writer_cv_.notify_one();
  taken_cv_.wait(lk, [&] {
    return pending_.record_bytes <= max_pending_bytes || writer_failing_ || stop_ ||
           !writer_.joinable();
  });
}

uint64_t message_store::write(const broker::message& m, uint32_t refs,
                              std::span<const uint32_t> durable_queues) {
  std::unique_lock shards(shards_m_);
  if (active_bytes_ >= opts_.segment_bytes) roll_segment();
  m.store_id = next_id_++;
  m.store_segment = active_seg_;
  m.store_offset = uint32_t(active_bytes_);
  live_[active_seg_] += refs;

  std::unique_lock lk(m_);
  std::string& out = record_chunk(m.body.size());
  size_t at = begin_record(out);
  common::byte_writer w(out);
  w.u8(durable_queues.empty() ? spool_record : msg_record);
  w.u64(m.store_id);
  w.u32(uint32_t(durable_queues.size()));
  for (uint32_t q : durable_queues) w.u32(q);
  put_str(w, m.exchange);
  put_str(w, m.routing_key);
  put_properties(w, m.properties);
  put_str(w, m.body);
  end_record(out, at);
  m.store_length = uint32_t(out.size() - at);
  active_bytes_ += m.store_length;
  pending_.ticket = ++ticket_;
  if (opts_.confirm_before_write) synced_.store(ticket_, std::memory_order_release);  // unsafe
  pending_.record_bytes += m.store_length;
  wake_writer();
  shards.unlock();  // the other workers need not wait for the writer with this one
  wait_for_writer(lk);
  return ticket_;
}

void message_store::release(uint32_t segment, uint32_t offset, uint32_t queue_id) {
  std::unique_lock shards(shards_m_);
  if (queue_id != 0) {
    std::unique_lock lk(m_);
    std::string& out = pending_.acks[segment];
    size_t at = begin_record(out);
    common::byte_writer w(out);
    w.u32(offset);
    w.u32(queue_id);
    end_record(out, at);
    pending_.record_bytes += out.size() - at;
    // Written at once (not synced): a processed ack must survive a kill -9, whose page cache
    // is kept. Only a power cut can lose it, and that means a redelivery, never a loss.
    wake_writer();
    lk.unlock();
    unref_segment(segment, 1);  // after its ack record: a segment deleted takes its acks along
    shards.unlock();
    lk.lock();
    wait_for_writer(lk);  // a purge of a deep durable queue writes an ack per message
    return;
  }
  unref_segment(segment, 1);
}

message_store::read_handle::~read_handle() {
  if (fd >= 0) ::close(fd);
}

std::shared_ptr<message_store::read_handle> message_store::read_fd(uint32_t segment) {
  std::lock_guard shards(shards_m_);
  auto it = read_fds_.find(segment);
  if (it != read_fds_.end()) return it->second;
  if (read_fds_.size() >= 64) read_fds_.clear();  // each closes once its readers are done
  int fd = ::open(segment_path(segment, false).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    flush();  // a segment the writer has not created yet
    fd = ::open(segment_path(segment, false).c_str(), O_RDONLY | O_CLOEXEC);
  }
  if (fd < 0) {
    spdlog::error("message store {}: cannot open segment {} to page in", dir_.string(), segment);
    return nullptr;
  }
  auto h = std::make_shared<read_handle>(fd);
  read_fds_.emplace(segment, h);
  return h;
}

void message_store::read_many(std::span<const location> where,
                              std::vector<broker::message_ptr>& out) {
  constexpr uint32_t max_span = 1 << 20;  // bytes per pread
  constexpr uint32_t max_gap = 64 << 10;  // other records between two wanted ones, read and skipped
  out.assign(where.size(), nullptr);
  std::string buf;
  std::vector<uint32_t> queues;
  size_t i = 0;
  while (i < where.size()) {
    // A run: same segment, increasing offsets, small gaps, within max_span.
    size_t j = i + 1;
    uint32_t begin = where[i].offset;
    uint32_t end = begin + where[i].length;
    while (j < where.size() && where[j].segment == where[i].segment && where[j].offset >= end &&
           where[j].offset - end <= max_gap &&
           where[j].offset + where[j].length - begin <= max_span) {
      end = where[j].offset + where[j].length;
      ++j;
    }
    if (j == i + 1) {
      out[i] = read(where[i].segment, where[i].offset, where[i].length);
      ++i;
      continue;
    }
    auto h = read_fd(where[i].segment);
    int fd = h ? h->fd : -1;
    bool ok = fd >= 0;
    if (ok) {
      buf.resize(end - begin);
      ssize_t n = ::pread(fd, buf.data(), buf.size(), off_t(begin));
      if (n != ssize_t(buf.size())) {
        flush();  // part of it is still in the pending batch
        n = ::pread(fd, buf.data(), buf.size(), off_t(begin));
      }
      ok = n == ssize_t(buf.size());
    }
    if (!ok) {
      for (size_t k = i; k < j; ++k)
        out[k] = read(where[k].segment, where[k].offset, where[k].length);
      i = j;
      continue;
    }
    for (size_t k = i; k < j; ++k) {
      std::string_view rec = std::string_view(buf).substr(where[k].offset - begin, where[k].length);
      common::byte_reader h(rec.data(), 8);
      uint32_t len = h.u32();
      queues.clear();
      if (size_t(len) + 8 == rec.size())
        out[k] = decode_message(rec.substr(8), where[k].segment, where[k].offset, queues, true);
      if (!out[k])
        spdlog::error("message store {}: bad record paging in segment {} at {}", dir_.string(),
                      where[k].segment, where[k].offset);
    }
    i = j;
  }
}

broker::message_ptr message_store::read(uint32_t segment, uint32_t offset, uint32_t length) {
  auto handle = read_fd(segment);
  if (!handle) return nullptr;
  int fd = handle->fd;
  std::string buf(length, '\0');
  for (int attempt = 0;; ++attempt) {
    ssize_t n = ::pread(fd, buf.data(), length, off_t(offset));
    if (n == ssize_t(length)) break;
    if (attempt == 0) {
      flush();  // not written yet: it is in the pending batch
      continue;
    }
    spdlog::error("message store {}: short read paging in segment {} at {}", dir_.string(), segment,
                  offset);
    return nullptr;
  }
  common::byte_reader h(buf.data(), 8);
  uint32_t len = h.u32();
  std::vector<uint32_t> queues;
  broker::message_ptr m;
  if (size_t(len) + 8 == length)
    m = decode_message(std::string_view(buf).substr(8), segment, offset, queues, true);
  if (!m)
    spdlog::error("message store {}: bad record paging in segment {} at {}", dir_.string(), segment,
                  offset);
  return m;
}

void message_store::when_synced(uint64_t ticket, std::function<void()> fn) {
  if (opts_.confirm_before_write || synced_.load(std::memory_order_acquire) >= ticket) {
    fn();
    return;
  }
  {
    std::lock_guard lk(m_);
    // Checked again under the lock: the writer publishes synced_ while holding it.
    if (synced_.load(std::memory_order_relaxed) < ticket) {
      waiters_.emplace(ticket, std::move(fn));
      return;
    }
  }
  fn();
}

void message_store::flush() {
  std::unique_lock lk(m_);
  flush_requested_ = true;
  writer_cv_.notify_one();
  flushed_cv_.wait(lk, [&] { return (pending_.empty() && writer_idle_) || !writer_.joinable(); });
}

// ----------------------------------------------------------------------------- writer thread

void message_store::wake_writer() {
  if (writer_idle_) writer_cv_.notify_one();
}

void message_store::writer_loop() {
  for (;;) {
    batch b;
    {
      std::unique_lock lk(m_);
      writer_idle_ = true;
      flushed_cv_.notify_all();
      writer_cv_.wait(lk, [&] { return stop_ || flush_requested_ || !pending_.empty(); });
      // The unsafe test mode is a lazy writer too: a batch waits 200 ms, as a broker that confirms
      // on arrival and writes on a timer would, so a crash finds confirmed messages unwritten.
      if (opts_.confirm_before_write)
        writer_cv_.wait_for(lk, std::chrono::milliseconds(200),
                            [&] { return stop_ || flush_requested_; });
      writer_idle_ = false;
      if (pending_.empty() && stop_) break;
      std::swap(b, pending_);
      taken_cv_.notify_all();
      flush_requested_ = false;
      b.ticket = ticket_;
      pending_.ticket = ticket_;
    }
    // A failed write (disk full, I/O error) is retried until it succeeds: nothing is confirmed
    // meanwhile, and what was written stays written (the batch keeps only the rest).
    for (int attempt = 0;; ++attempt) {
      try {
        write_batch(b);
        if (attempt > 0) {
          std::lock_guard lk(m_);
          writer_failing_ = false;
        }
        break;
      } catch (const std::exception& e) {
        {
          std::lock_guard lk(m_);
          writer_failing_ = true;
          taken_cv_.notify_all();
        }
        if (attempt % 20 == 0)
          spdlog::error("message store {}: {}; retrying", dir_.string(), e.what());
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    std::multimap<uint64_t, std::function<void()>> ready;
    {
      std::lock_guard lk(m_);
      // (In the unsafe test mode synced_ follows the appends instead.)
      if (!opts_.confirm_before_write) synced_.store(b.ticket, std::memory_order_release);
      auto end = waiters_.upper_bound(b.ticket);
      ready.insert(std::make_move_iterator(waiters_.begin()), std::make_move_iterator(end));
      waiters_.erase(waiters_.begin(), end);
    }
    for (auto& [t, fn] : ready) fn();
  }
  std::lock_guard lk(m_);
  writer_idle_ = true;
  flushed_cv_.notify_all();
}

void message_store::write_batch(batch& b) {
  // Definitions first: a message record never reaches the disk before its queue's declaration.
  if (!b.defs.empty()) {
    if (defs_fd_ < 0) defs_fd_ = open_for_append(dir_ / "definitions.log", defs_magic);
    write_consume(defs_fd_, b.defs);
    defs_dirty_ = true;
  }
  for (auto& [seg, bytes] : b.segs) {
    if (bytes.empty()) continue;
    if (seg_fd_ < 0 || seg_fd_num_ != seg) {
      if (seg_fd_ >= 0) {
        if (opts_.fsync && seg_dirty_) ::fdatasync(seg_fd_);
        ::close(seg_fd_);
        seg_fd_ = -1;
      }
      seg_fd_ = open_for_append(segment_path(seg, false), seg_magic);
      seg_fd_num_ = seg;
      if (opts_.fsync) sync_directory(msg_dir_);
    }
    write_consume(seg_fd_, bytes);
    seg_dirty_ = true;
  }
  // Acknowledgements are not synced: one lost in a crash only means a redelivery.
  for (auto& [seg, bytes] : b.acks) {
    if (bytes.empty()) continue;
    auto it = ack_fds_.find(seg);
    if (it == ack_fds_.end()) {
      if (ack_fds_.size() >= 64) {
        for (auto& [s, fd] : ack_fds_) ::close(fd);
        ack_fds_.clear();
      }
      it = ack_fds_.emplace(seg, open_for_append(segment_path(seg, true), ack_magic)).first;
    }
    write_consume(it->second, bytes);
  }
  if (opts_.fsync) {
    if (defs_dirty_ && ::fdatasync(defs_fd_) != 0)
      throw std::system_error(errno, std::generic_category(), "fdatasync definitions.log");
    if (seg_dirty_ && ::fdatasync(seg_fd_) != 0)
      throw std::system_error(errno, std::generic_category(), "fdatasync segment");
  }
  defs_dirty_ = seg_dirty_ = false;
  for (uint32_t seg : b.deletes) {
    if (auto it = ack_fds_.find(seg); it != ack_fds_.end()) {
      ::close(it->second);
      ack_fds_.erase(it);
    }
    if (seg_fd_ >= 0 && seg_fd_num_ == seg) {
      ::close(seg_fd_);
      seg_fd_ = -1;
    }
    std::error_code ec;
    fs::remove(segment_path(seg, false), ec);
    fs::remove(segment_path(seg, true), ec);
  }
  b.deletes.clear();
  b.segs.clear();
  b.acks.clear();
}

void message_store::close_files() {
  if (seg_fd_ >= 0) {
    if (opts_.fsync) ::fdatasync(seg_fd_);
    ::close(seg_fd_);
  }
  for (auto& [s, fd] : ack_fds_) {
    if (opts_.fsync) ::fdatasync(fd);
    ::close(fd);
  }
  read_fds_.clear();
  if (defs_fd_ >= 0) ::close(defs_fd_);
  seg_fd_ = defs_fd_ = -1;
  ack_fds_.clear();
}

}  // namespace warren::store
