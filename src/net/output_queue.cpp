// A connection's output: encoded text with shared slices spliced in (see output_queue.hpp).
//
// The stream is text_[0, s0.at) s0 text_[s0.at, s1.at) s1 ... text_[sN.at, end): splice i comes
// after text_[0, si.at) and before the rest. The write position is (text_sent_, head_,
// head_sent_): when text_sent_ has reached splices_[head_].at, the next bytes are that splice's
// from head_sent_ on; otherwise they are text up to that splice (or to the end).
#include "net/output_queue.hpp"

#include <algorithm>

namespace warren::net {

namespace {
// Capacity kept once the queue is empty: an idle connection holds no more than this.
constexpr size_t keep_text_capacity = 4096;
constexpr size_t keep_splices = 16;
// The written front of text_ is erased once it is this large and more than half of the string.
constexpr size_t compact_text_from = 64 * 1024;
constexpr size_t compact_splices_from = 64;
}  // namespace

void output_queue::append_shared(std::shared_ptr<const void> keep, std::string_view data) {
  if (data.empty()) return;
  splices_.push_back(splice{text_.size(), std::move(keep), data.data(), data.size()});
  shared_bytes_ += data.size();
}

size_t output_queue::gather(boost::asio::const_buffer* out, size_t max, size_t max_bytes) const {
  size_t count = 0, bytes = 0;
  size_t t = text_sent_, h = head_, hs = head_sent_;
  while (count < max && bytes < max_bytes) {
    size_t next_at = h < splices_.size() ? splices_[h].at : text_.size();
    const char* p;
    size_t len;
    if (t < next_at) {
      p = text_.data() + t;
      len = next_at - t;
      t = next_at;
    } else if (h < splices_.size()) {
      p = splices_[h].data + hs;
      len = splices_[h].len - hs;
      ++h;
      hs = 0;
    } else {
      break;
    }
    len = std::min(len, max_bytes - bytes);
    out[count++] = boost::asio::const_buffer(p, len);
    bytes += len;
  }
  return count;
}

void output_queue::consume(size_t n) {
  while (n > 0) {
    size_t next_at = head_ < splices_.size() ? splices_[head_].at : text_.size();
    if (text_sent_ < next_at) {
      size_t k = std::min(n, next_at - text_sent_);
      text_sent_ += k;
      n -= k;
      continue;
    }
    if (head_ == splices_.size()) break;  // more than was queued: not expected
    splice& s = splices_[head_];
    size_t k = std::min(n, s.len - head_sent_);
    head_sent_ += k;
    shared_bytes_ -= k;
    n -= k;
    if (head_sent_ == s.len) {
      s.keep.reset();  // written: the body may go now
      ++head_;
      head_sent_ = 0;
    }
  }
  if (empty()) {
    text_.clear();
    text_sent_ = 0;
    splices_.clear();
    head_ = 0;
    return;
  }
  compact();
}

void output_queue::compact() {
  if (text_sent_ >= compact_text_from && text_sent_ * 2 > text_.size()) {
    text_.erase(0, text_sent_);
    for (size_t i = head_; i < splices_.size(); ++i) splices_[i].at -= text_sent_;
    text_sent_ = 0;
  }
  if (head_ >= compact_splices_from && head_ * 2 > splices_.size()) {
    splices_.erase(splices_.begin(), splices_.begin() + ptrdiff_t(head_));
    head_ = 0;
  }
}

void output_queue::clear() {
  std::string().swap(text_);
  std::vector<splice>().swap(splices_);
  text_sent_ = head_ = head_sent_ = shared_bytes_ = 0;
}

void output_queue::release_if_large() {
  if (!empty()) return;
  if (text_.capacity() > keep_text_capacity) std::string().swap(text_);
  if (splices_.capacity() > keep_splices) std::vector<splice>().swap(splices_);
}

void output_queue::release_all() {
  if (!empty()) return;
  std::string().swap(text_);
  std::vector<splice>().swap(splices_);
}

}  // namespace warren::net
