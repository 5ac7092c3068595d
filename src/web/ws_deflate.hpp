// permessage-deflate (RFC 7692) without context takeover: each message is compressed and
// decompressed on its own, so the zlib state is not kept per connection. With context
// takeover zlib keeps about 290 KB per connection (a 256 KB deflate state at windowBits 15 /
// memLevel 8, a 32 KB inflate window, and bookkeeping), more than a hundred times our budget
// of 2 KB for an idle WebSocket user. One ws_deflate per worker serves all its connections.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace warren::web {

// Owned by one worker (or one test); not thread-safe. The zlib streams are created on first
// use and reset before every message.
class ws_deflate {
 public:
  explicit ws_deflate(int level = 6);
  ~ws_deflate();
  ws_deflate(const ws_deflate&) = delete;
  ws_deflate& operator=(const ws_deflate&) = delete;

  // Appends to `out` the payload of a compressed message: raw DEFLATE ending in an empty
  // stored block whose 4-byte tail 00 00 ff ff is removed (RFC 7692 7.2.1).
  void compress(std::string_view message, std::string& out);

  enum class inflate_status { ok, too_big, invalid };
  // Decompresses a message's payload (the tail 00 00 ff ff is appended here) into `out`
  // (replacing its content). More than `limit` bytes of output: too_big, and work stops there,
  // so a small "zip bomb" costs at most `limit` bytes. Bad DEFLATE data: invalid. A block with
  // BFINAL set may end the data; what follows it is read as fresh DEFLATE data (RFC 7692 7.2.3.4).
  inflate_status decompress(std::string_view payload, size_t limit, std::string& out);

 private:
  struct streams;
  std::unique_ptr<streams> z_;
  int level_;
};

}  // namespace warren::web
