// A vhost's persistent store: one ordered log of its durable definitions, and segment files of
// persistent messages with, beside each segment, a file of the acknowledgements of its messages.
// The on-disk format is documented in docs/storage.md.
//
// Threads: the journal calls come from the vhost's shards, one per worker (the home worker has
// the definitions), and only append to an in-memory batch; the store's own writer thread takes the
// batch, writes it, syncs it (one fsync for the whole batch: group commit) and then wakes whoever
// waits for it (publisher confirms). Files are written only by that thread once recovery is over.
// The shards' side (record numbering, segment references, the paging reads' descriptors) is under
// shards_m_, held only while it changes (not during a read, nor while waiting for the writer):
// shards on several workers write, release and read records of the same store.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "broker/journal.hpp"
#include "broker/paged_index.hpp"

namespace warren::broker {
class vhost;
}

namespace warren::store {

struct store_options {
  uint64_t segment_bytes = 64ull << 20;  // a new segment file starts after this many bytes
  bool fsync = true;                     // false only for tests that do not care about power cuts
  // Test-only and unsafe: a wait for a ticket is answered at once, and the writer lets a batch
  // wait 200 ms before writing it, so a publisher confirm no longer means "on disk". Set from the
  // environment variable WARREN_TEST_UNSAFE_CONFIRM=1 (never a flag or a configuration key); the
  // fault tests use it to show that their checker catches confirmed messages lost (docs/cluster.md,
  // "Faults, tested").
  bool confirm_before_write = false;
};

// Records of the web gateway's inboxes and room histories (docs/storage.md, "Inbox records"),
// kept in the same segments as messages: the same framing, checksums, group commit and
// recovery. The store knows only their kind and expiry; the gateway encodes the rest.
enum inbox_kind : uint8_t {
  inbox_event = 3,  // an event held in a user's inbox
  room_event = 4,   // a message kept in a room's recent history
  inbox_read = 5,   // a user's read position
  inbox_erase = 6,  // a user's inbox erased: records of that user before it are gone
};
struct inbox_location {
  uint32_t segment = 0, offset = 0, length = 0;  // segment 0: none
  explicit operator bool() const { return segment != 0; }
};

struct recovery_stats {
  size_t definitions = 0;  // records replayed
  size_t messages = 0;     // (message, queue) pairs put back
  size_t segments = 0;     // segment files read
  size_t torn_files = 0;   // files whose tail was cut off because a crash tore it
  uint64_t bytes = 0;      // bytes read
  double seconds = 0;
};

class message_store final : public broker::journal {
 public:
  message_store(std::filesystem::path dir, store_options opts = {});
  // Writes and syncs everything pending, then stops the writer thread.
  ~message_store() override;
  message_store(const message_store&) = delete;
  message_store& operator=(const message_store&) = delete;

  // Once, before the vhost is used, on the thread that owns it: replays the stored definitions
  // and messages into `v`, attaches itself as v's journal, rewrites the definitions log compactly,
  // deletes segments with nothing left in them, and starts the writer thread.
  recovery_stats recover(broker::vhost& v);

  // Blocks until everything journalled so far is written and synced.
  void flush();

  // Segment files that still hold unacknowledged messages (vhost's worker only).
  size_t live_segments() const {
    std::lock_guard lk(shards_m_);
    return live_.size();
  }

  // broker::journal (vhost's worker)
  void exchange_declared(const broker::exchange_settings& s) override;
  void exchange_deleted(std::string_view name) override;
  void queue_declared(const broker::queue_settings& s, uint32_t store_id) override;
  void queue_deleted(std::string_view name) override;
  void binding_changed(bool added, std::string_view source, bool dest_is_queue,
                       std::string_view dest, std::string_view key,
                       const common::field_table& args) override;
  uint64_t write(const broker::message& m, uint32_t refs,
                 std::span<const uint32_t> durable_queues) override;
  void release(uint32_t segment, uint32_t offset, uint32_t queue_id) override;
  bool retain(uint32_t segment) override {
    std::lock_guard lk(shards_m_);
    auto it = live_.find(segment);
    if (it == live_.end()) return false;
    ++it->second;
    return true;
  }
  broker::message_ptr read(uint32_t segment, uint32_t offset, uint32_t length) override;
  // Records close together in one segment (a paged queue's usually are: they were appended in
  // order) are read with one pread of up to 1 MB: one system call for hundreds of messages.
  void read_many(std::span<const location> where, std::vector<broker::message_ptr>& out) override;
  // --- inbox records (the web gateway, on the vhost's worker) ---
  // Appends `u8 kind | i64 expires_ms | body`; `at` receives its location. The segment keeps
  // it (and every segment after it, so that chains of records across segments stay whole)
  // until `expires_ms` has passed. Returns the ticket to wait for before answering "taken".
  uint64_t write_inbox(inbox_kind kind, int64_t expires_ms, std::string_view body,
                       inbox_location& at);
  // Reads back a record written by write_inbox: false if its segment is gone or it is
  // unreadable. `body` is what was given to write_inbox.
  bool read_inbox(const inbox_location& at, inbox_kind& kind, int64_t& expires_ms,
                  std::string& body);
  // Once after recover(), on the same thread: every inbox record whose expiry is after `now_ms`,
  // oldest first.
  void recover_inbox(int64_t now_ms,
                     const std::function<void(inbox_kind, int64_t expires_ms, std::string_view body,
                                              const inbox_location&)>& fn);
  // Drops, oldest first, the segments whose inbox records have all expired by `now_ms` (and
  // that hold no message still needed). Cheap when nothing is due: the hub calls it every second.
  void expire_inbox(int64_t now_ms);
  // Inbox segments on disk (tests, statistics).
  size_t inbox_segments() const { return inbox_expiry_.size(); }

  // One unlinked spool file in the vhost's directory for the paged queues' indexes.
  std::shared_ptr<broker::index_spool> paged_index_spool() override { return spool_; }
  // Any thread.
  void when_synced(uint64_t ticket, std::function<void()> fn) override;
  uint64_t synced() const override { return synced_.load(std::memory_order_acquire); }

 private:
  struct batch {
    std::string defs;  // definitions log records
    // Message records in order, in chunks (several consecutive chunks may share a segment).
    std::vector<std::pair<uint32_t, std::string>> segs;
    std::map<uint32_t, std::string> acks;  // ack records, by segment
    std::vector<uint32_t> deletes;         // segments to remove
    uint64_t ticket = 0;                   // message writes included so far
    uint64_t record_bytes = 0;             // bytes of message and ack records
    bool empty() const { return defs.empty() && segs.empty() && acks.empty() && deletes.empty(); }
  };

  std::filesystem::path segment_path(uint32_t seg, bool acks) const;
  void replay_definition(broker::vhost& v, std::string_view payload);
  void recover_segments(broker::vhost& v, recovery_stats& st);
  void add_definition(const std::function<void(std::string&)>& encode);
  void unref_segment(uint32_t seg, uint64_t n);
  void roll_segment();
  // Recovery: notes an unexpired inbox record's expiry for its segment (true if it was one).
  bool note_inbox_record(std::string_view payload, uint32_t seg, int64_t now_ms);
  // Recovery: each segment with inbox records waits for every earlier one (and holds a reference).
  void hold_inbox_segments();
  static int64_t inbox_now_ms();
  // Appends a record to the pending batch's chunk for the active segment; returns its offset.
  std::string& record_chunk(size_t reserve);
  // A segment's descriptor for paging reads, closed when the last reader lets go of it (the
  // segment may be deleted, or the cache of descriptors emptied, while another worker reads).
  struct read_handle {
    int fd = -1;
    explicit read_handle(int f) : fd(f) {}
    ~read_handle();
    read_handle(const read_handle&) = delete;
    read_handle& operator=(const read_handle&) = delete;
  };
  // Opened on first use; null if it cannot be (logged). Takes shards_m_ for the lookup only.
  std::shared_ptr<read_handle> read_fd(uint32_t segment);
  void wake_writer();                                      // m_ held
  void wait_for_writer(std::unique_lock<std::mutex>& lk);  // m_ held: bounds the batch
  void writer_loop();
  void write_batch(batch& b);
  void close_files();

  const std::filesystem::path dir_;
  const std::filesystem::path msg_dir_;
  const store_options opts_;

  // The shards' side: any worker, under shards_m_ (taken before m_, never after it).
  mutable std::mutex shards_m_;
  uint64_t next_id_ = 1;
  uint32_t active_seg_ = 1;
  uint64_t active_bytes_ = 0;  // = the offset of its next record
  std::unordered_map<uint32_t, std::shared_ptr<read_handle>> read_fds_;  // being paged in
  std::unordered_map<uint32_t, uint64_t> live_;  // segment -> references not yet released
  std::string* capture_ = nullptr;               // snapshotting definitions into a string
  // Segments holding inbox records -> when the last of them (and of every earlier one) expires,
  // ms since the epoch. Each holds one reference in live_ until then.
  std::map<uint32_t, int64_t> inbox_expiry_;
  std::shared_ptr<broker::index_spool> spool_;

  // shared, under m_
  std::mutex m_;
  std::condition_variable writer_cv_;
  std::condition_variable flushed_cv_;
  std::condition_variable taken_cv_;  // the writer took the pending batch (or is failing)
  static constexpr uint64_t max_pending_bytes = 64ull << 20;
  bool writer_failing_ = false;  // a write failed and is being retried
  batch pending_;
  uint64_t ticket_ = 0;
  bool writer_idle_ = false;
  bool flush_requested_ = false;
  bool stop_ = false;
  std::multimap<uint64_t, std::function<void()>> waiters_;
  std::atomic<uint64_t> synced_{0};

  // writer thread only
  int defs_fd_ = -1;
  int seg_fd_ = -1;
  uint32_t seg_fd_num_ = 0;
  bool seg_dirty_ = false;
  bool defs_dirty_ = false;
  std::map<uint32_t, int> ack_fds_;
  std::thread writer_;
};

}  // namespace warren::store
