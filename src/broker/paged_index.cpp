// A paged queue's index on disk: the spool file's blocks, and the FIFO built on them.
#include "broker/paged_index.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

namespace warren::broker {

// ----------------------------------------------------------------------------- index_spool

index_spool::~index_spool() {
  if (fd_ >= 0) ::close(fd_);
}

bool index_spool::open() {
  if (fd_ >= 0) return true;
  if (failed_) return false;
  // Unlinked from the start where the filesystem allows it, so a crash leaves nothing behind.
  fd_ = ::open(dir_.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd_ < 0) {
    std::string name = (dir_ / "index-spool.XXXXXX").string();
    fd_ = ::mkostemp(name.data(), O_CLOEXEC);
    if (fd_ >= 0) ::unlink(name.c_str());
  }
  if (fd_ < 0) {
    failed_ = true;
    spdlog::error(
        "paged index: cannot create a spool file in {}: {}; paged queues keep their "
        "index in memory",
        dir_.string(), std::strerror(errno));
    return false;
  }
  return true;
}

bool index_spool::write(const void* data, size_t n, uint32_t& block) {
  std::lock_guard lk(mutex_);
  if (n > block_bytes || !open()) return false;
  uint32_t b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else {
    b = next_++;
  }
  const char* p = static_cast<const char*>(data);
  off_t at = off_t(b) * off_t(block_bytes);
  for (size_t done = 0; done < n;) {
    ssize_t w = ::pwrite(fd_, p + done, n - done, at + off_t(done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      spdlog::warn("paged index: spool write failed ({}); this block stays in memory",
                   std::strerror(w < 0 ? errno : ENOSPC));
      free_.push_back(b);
      return false;
    }
    done += size_t(w);
  }
  ++in_use_;
  block = b;
  return true;
}

bool index_spool::read(uint32_t block, void* data, size_t n) {
  if (fd_ < 0) return false;
  char* p = static_cast<char*>(data);
  off_t at = off_t(block) * off_t(block_bytes);
  for (size_t done = 0; done < n;) {
    ssize_t r = ::pread(fd_, p + done, n - done, at + off_t(done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    done += size_t(r);
  }
  return true;
}

void index_spool::free(std::span<const uint32_t> blocks) {
  if (blocks.empty()) return;
  std::lock_guard lk(mutex_);
  in_use_ -= blocks.size();
  if (in_use_ == 0) {
    // Empty: the file shrinks to nothing and numbering starts again.
    free_.clear();
    next_ = 0;
    if (::ftruncate(fd_, 0) != 0) spdlog::warn("paged index: truncating the spool failed");
    return;
  }
  // The disk space goes back now, one hole per run of neighbouring blocks (a purge frees
  // thousands, mostly in a row); a failure (a filesystem without holes) only delays that.
  std::vector<uint32_t> sorted(blocks.begin(), blocks.end());
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i + 1;
    while (j < sorted.size() && sorted[j] == sorted[j - 1] + 1) ++j;
    (void)::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      off_t(sorted[i]) * off_t(block_bytes), off_t(j - i) * off_t(block_bytes));
    i = j;
  }
  free_.insert(free_.end(), sorted.begin(), sorted.end());
}

// ----------------------------------------------------------------------------- paged_index

void paged_index::push_back(const paged& p) {
  if (tail_.capacity() == 0) tail_.reserve(std::min<size_t>(block_entries, 64));
  tail_.push_back(p);
  ++size_;
  if (tail_.size() == block_entries) spill_tail();
}

void paged_index::push_front(const paged& p) {
  front_.push_front(p);
  ++size_;
}

void paged_index::spill_tail() {
  if (blocks_.empty() && head_pos_ == head_.size()) {
    // Nothing between the head and the tail: the tail becomes the head, no disk needed.
    head_.swap(tail_);
    head_pos_ = 0;
    tail_.clear();
    return;
  }
  block b;
  if (!spool_ || !spool_->write(tail_.data(), tail_.size() * sizeof(paged), b.id)) {
    b.ram = std::move(tail_);
    tail_ = std::vector<paged>();
  } else {
    tail_.clear();
  }
  blocks_.push_back(std::move(b));
}

const std::vector<paged>& paged_index::entries(const block& b, std::vector<paged>& buf) const {
  if (!b.on_disk()) return b.ram;
  buf.resize(block_entries);
  if (!spool_->read(b.id, buf.data(), block_entries * sizeof(paged))) {
    spdlog::error(
        "paged index: a spool block cannot be read back; {} paged messages are lost "
        "to their queue",
        block_entries);
    buf.clear();
  }
  return buf;
}

bool paged_index::pop_front(paged& p) {
  if (!front_.empty()) {
    p = front_.front();
    front_.pop_front();
    --size_;
    return true;
  }
  while (head_pos_ == head_.size()) {
    if (size_ == 0) return false;
    head_pos_ = 0;
    if (!blocks_.empty()) {
      block& b = blocks_.front();
      if (b.on_disk()) {
        entries(b, head_);
        spool_->free(b.id);
        size_ -= block_entries - head_.size();  // what could not be read back
      } else {
        head_ = std::move(b.ram);
      }
      blocks_.pop_front();
    } else {
      head_.swap(tail_);
      tail_.clear();
    }
  }
  p = head_[head_pos_++];
  --size_;
  if (size_ == 0) clear();  // gives the buffers back
  return true;
}

void paged_index::clear() {
  std::vector<uint32_t> ids;
  for (const auto& b : blocks_)
    if (b.on_disk()) ids.push_back(b.id);
  if (!ids.empty()) spool_->free(ids);
  // (Assigning {} would keep the vectors' capacity.)
  blocks_ = std::deque<block>();
  front_ = std::deque<paged>();
  head_ = std::vector<paged>();
  tail_ = std::vector<paged>();
  head_pos_ = 0;
  size_ = 0;
}

size_t paged_index::ram_bytes() const {
  size_t n = sizeof(*this) + (head_.capacity() + tail_.capacity()) * sizeof(paged) +
             front_.size() * sizeof(paged) + blocks_.size() * sizeof(block);
  for (const auto& b : blocks_) n += b.ram.capacity() * sizeof(paged);
  return n;
}

size_t paged_index::blocks_on_disk() const {
  size_t n = 0;
  for (const auto& b : blocks_) n += b.on_disk();
  return n;
}

}  // namespace warren::broker
