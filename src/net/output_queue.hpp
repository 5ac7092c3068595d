// What one connection has still to write: the bytes its protocol encoded, in one contiguous
// string, with slices of shared buffers (a message body every consumer of a fanout sends) spliced
// in between, so a shared body goes to each socket by a gather write instead of being copied into
// each connection. Pure bookkeeping: no sockets (connection.cpp writes what gather() lists).
// Owned by its connection, on the connection's worker.
#pragma once

#include <boost/asio/buffer.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace warren::net {

class output_queue {
 public:
  // Encoded bytes are appended here; a splice goes in at the string's end at the time.
  std::string& text() { return text_; }

  // Puts `data` on the stream at the current end of text() without copying it; `keep` holds its
  // bytes alive (and unchanged) until they are written or the queue is dropped. Empty data is
  // ignored.
  void append_shared(std::shared_ptr<const void> keep, std::string_view data);

  bool empty() const { return text_sent_ == text_.size() && head_ == splices_.size(); }
  // Bytes still to write, shared slices included.
  size_t size() const { return text_.size() - text_sent_ + shared_bytes_; }
  // Bytes of shared slices still to write (not held by this queue's memory).
  size_t shared_bytes() const { return shared_bytes_; }

  // Lists the front of the stream in order as at most `max` buffers totalling at most
  // `max_bytes` (a buffer may be cut); returns how many. The buffers stay valid until the next
  // call that changes the queue (text() appended to may move).
  size_t gather(boost::asio::const_buffer* out, size_t max, size_t max_bytes) const;
  // The front `n` bytes were written. A shared slice is released as soon as it is all written.
  void consume(size_t n);
  // Drops everything (the connection closed) and frees the memory.
  void clear();

  // Memory held by the queue itself (not the shared slices).
  size_t capacity() const { return text_.capacity() + splices_.capacity() * sizeof(splice); }
  // Once empty, gives back buffers a burst grew beyond a small size.
  void release_if_large();
  // Once empty, gives back all its memory (an idle connection's last small output).
  void release_all();

 private:
  struct splice {
    size_t at;  // offset in text_ before which the slice goes
    std::shared_ptr<const void> keep;
    const char* data;
    size_t len;
  };
  // Drops the written front of text_ and splices_ when it is worth the move.
  void compact();

  std::string text_;
  size_t text_sent_ = 0;  // bytes of text_ written
  std::vector<splice> splices_;
  size_t head_ = 0;          // first splice not completely written
  size_t head_sent_ = 0;     // bytes of splices_[head_] written
  size_t shared_bytes_ = 0;  // unwritten bytes of splices
};

}  // namespace warren::net
