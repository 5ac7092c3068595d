// The index of a paged queue: where each paged-out message's record is, kept on disk in blocks
// of a spool file, so that a backlog of any depth costs a bounded amount of RAM (the block list,
// 4 bytes per 2048 messages, and two blocks' worth of buffers). Owned by a queue and used only on
// its vhost's worker.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

namespace warren::broker {

// A message paged out: where its record is, and what the queue must know of it before it is read
// back. 24 bytes, in RAM only at the two ends of the index.
struct paged {
  uint32_t segment;
  uint32_t offset;
  uint32_t length;
  uint32_t body_size : 31;
  uint32_t redelivered : 1;
  int64_t expires_at;
};
static_assert(sizeof(paged) == 24, "a paged entry is 24 bytes on disk");

// Fixed-size blocks in one unlinked spool file, shared by the paged indexes of a vhost's queues
// (its store creates it beside its segments). The file is created on first use and vanishes with
// the process: the indexes are rebuilt from the segments by recovery, so nothing here needs to
// survive a crash. A freed block's disk space is given back at once (a hole punched in the file)
// and its number reused. Any failure (no file, a full disk) is reported as false: the caller then
// keeps that block in RAM. Thread-safe: the queues of every worker's shard of a vhost share it
// (block allocation and freeing take a mutex, once per block of entries; reads are preads).
class index_spool {
 public:
  static constexpr size_t block_bytes = 48u << 10;
  explicit index_spool(std::filesystem::path dir) : dir_(std::move(dir)) {}
  ~index_spool();
  index_spool(const index_spool&) = delete;
  index_spool& operator=(const index_spool&) = delete;

  // Writes a new block of n <= block_bytes bytes; its number, or false.
  bool write(const void* data, size_t n, uint32_t& block);
  bool read(uint32_t block, void* data, size_t n);
  void free(uint32_t block) { free(std::span<const uint32_t>(&block, 1)); }
  void free(std::span<const uint32_t> blocks);
  size_t blocks_in_use() const {
    std::lock_guard lk(mutex_);
    return in_use_;
  }

 private:
  bool open();

  std::filesystem::path dir_;
  mutable std::mutex mutex_;
  std::atomic<int> fd_{-1};
  bool failed_ = false;  // could not create the file: logged once, everything stays in RAM
  uint32_t next_ = 0;    // blocks the file has room for
  size_t in_use_ = 0;
  std::vector<uint32_t> free_;
};

// A FIFO of paged entries (one per priority level of a queue):
//   front_ (entries put back at the head: page_out of what was in memory, bounded by the queue's
//   in-memory part) | head_ (a block read back, from head_pos_) | blocks_ (full blocks on disk) |
//   tail_ (the block being filled).
class paged_index {
 public:
  static constexpr size_t block_entries = index_spool::block_bytes / sizeof(paged);

  // spool null: blocks stay in RAM (a journal without a spool file).
  explicit paged_index(std::shared_ptr<index_spool> spool) : spool_(std::move(spool)) {}
  ~paged_index() { clear(); }
  paged_index(const paged_index&) = delete;
  paged_index& operator=(const paged_index&) = delete;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void push_back(const paged& p);
  void push_front(const paged& p);
  // The first entry; false if there is none (or none left after a block could not be read).
  bool pop_front(paged& p);
  void clear();

  // f(const paged&) for every entry in order (reads the blocks on disk back, one at a time).
  template <typename F>
  void for_each(F&& f) const {
    for (const auto& p : front_) f(p);
    for (size_t i = head_pos_; i < head_.size(); ++i) f(head_[i]);
    std::vector<paged> buf;
    for (const auto& b : blocks_)
      for (const auto& p : entries(b, buf)) f(p);
    for (const auto& p : tail_) f(p);
  }

  // RAM held for bookkeeping (entries, buffers, block list): what the deepest backlog costs.
  size_t ram_bytes() const;
  size_t blocks_on_disk() const;

 private:
  struct block {
    uint32_t id = 0;
    std::vector<paged> ram;  // its entries when the spool could not take them
    bool on_disk() const { return ram.empty(); }
  };
  void spill_tail();
  // A block's entries: read into buf if on disk (empty if unreadable: logged), else b.ram.
  const std::vector<paged>& entries(const block& b, std::vector<paged>& buf) const;

  std::shared_ptr<index_spool> spool_;
  std::deque<paged> front_;
  std::vector<paged> head_;
  size_t head_pos_ = 0;
  std::deque<block> blocks_;
  std::vector<paged> tail_;
  size_t size_ = 0;
};

}  // namespace warren::broker
