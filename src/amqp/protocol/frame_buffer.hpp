// The received bytes of one outgoing AMQP connection, cut into frames: the broker's own client
// (amqp/client, federation and shovels) and the load generator (tools/warren-perf) read into it
// and drain it. (The server side keeps no buffer while idle: net::connection reads into its
// worker's scratch buffer instead.)
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "amqp/protocol/frame.hpp"
#include "common/byte_io.hpp"

namespace warren::amqp::protocol {

class frame_buffer {
 public:
  explicit frame_buffer(size_t chunk = 64 * 1024) : chunk_(chunk), in_(chunk) {}

  // Where the next read goes: at least a quarter of a chunk after the unparsed bytes.
  std::span<uint8_t> space() {
    if (in_.size() - len_ < chunk_ / 4) in_.resize(len_ + chunk_);
    return {in_.data() + len_, in_.size() - len_};
  }
  // `n` bytes were read into space().
  void commit(size_t n) { len_ += n; }

  // Hands each complete frame to `on_frame` (a frame_view into this buffer, valid during the
  // call), until one returns false (the connection closed). Keeps a partial frame for the next
  // read, and makes room for a frame larger than the buffer. Returns the parser's text on a
  // framing error (nothing more is read from it then).
  template <typename OnFrame>
  std::optional<std::string> drain(OnFrame&& on_frame) {
    size_t pos = 0;
    for (;;) {
      auto r = parse_frame({in_.data() + pos, len_ - pos}, 0);
      if (r.status == parse_status::need_more) break;
      if (r.status == parse_status::error) return r.error_text;
      pos += r.consumed;
      if (!on_frame(r.frame)) break;
    }
    if (pos > 0) {
      std::memmove(in_.data(), in_.data() + pos, len_ - pos);
      len_ -= pos;
    }
    if (len_ >= frame_header_size) {
      common::byte_reader h(in_.data() + 3, 4);
      size_t need = size_t(h.u32()) + frame_overhead;
      if (need > in_.size()) in_.resize(need + chunk_);
    }
    return std::nullopt;
  }

 private:
  size_t chunk_;
  std::vector<uint8_t> in_;
  size_t len_ = 0;  // [0, len_) received and not yet handed out
};

}  // namespace warren::amqp::protocol
