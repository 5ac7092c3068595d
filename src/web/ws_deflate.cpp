// zlib in raw-DEFLATE mode (negative windowBits: no zlib header or checksum), as RFC 7692 uses.
#include "web/ws_deflate.hpp"

#include <zlib.h>

#include <algorithm>
#include <limits>
#include <stdexcept>

namespace warren::web {
namespace {

constexpr unsigned char tail[4] = {0x00, 0x00, 0xff, 0xff};
constexpr int window_bits = 15;

}  // namespace

struct ws_deflate::streams {
  z_stream def{};
  z_stream inf{};
  bool def_ready = false;
  bool inf_ready = false;
  ~streams() {
    if (def_ready) deflateEnd(&def);
    if (inf_ready) inflateEnd(&inf);
  }
};

ws_deflate::ws_deflate(int level) : z_(std::make_unique<streams>()), level_(level) {}
ws_deflate::~ws_deflate() = default;

void ws_deflate::compress(std::string_view message, std::string& out) {
  z_stream& s = z_->def;
  if (!z_->def_ready) {
    if (deflateInit2(&s, level_, Z_DEFLATED, -window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
      throw std::runtime_error("deflateInit2 failed");
    z_->def_ready = true;
  } else {
    deflateReset(&s);  // no context takeover: every message starts from an empty window
  }
  if (message.size() > std::numeric_limits<uInt>::max() / 2)
    throw std::length_error("message too large to compress");
  size_t start = out.size();
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(message.data()));
  s.avail_in = uInt(message.size());
  // deflateBound covers the compressed data; the sync flush adds an empty stored block.
  size_t room = deflateBound(&s, uLong(message.size())) + 16;
  for (;;) {
    size_t at = out.size();
    out.resize(at + room);
    s.next_out = reinterpret_cast<Bytef*>(out.data() + at);
    s.avail_out = uInt(room);
    int rc = deflate(&s, Z_SYNC_FLUSH);
    out.resize(out.size() - s.avail_out);
    if (rc != Z_OK && rc != Z_BUF_ERROR) throw std::runtime_error("deflate failed");
    // Done when all input is taken and the flush fitted (output space was left over).
    if (s.avail_in == 0 && s.avail_out != 0) break;
    room = 4096;
  }
  // A sync flush always ends in 00 00 ff ff; the receiver puts it back.
  if (out.size() - start >= 4 &&
      out.compare(out.size() - 4, 4, reinterpret_cast<const char*>(tail), 4) == 0)
    out.resize(out.size() - 4);
}

ws_deflate::inflate_status ws_deflate::decompress(std::string_view payload, size_t limit,
                                                  std::string& out) {
  z_stream& s = z_->inf;
  if (!z_->inf_ready) {
    if (inflateInit2(&s, -window_bits) != Z_OK) throw std::runtime_error("inflateInit2 failed");
    z_->inf_ready = true;
  } else {
    inflateReset(&s);
  }
  out.clear();
  limit = std::min<size_t>(limit, std::numeric_limits<uInt>::max() / 2);
  size_t chunk = std::min<size_t>(limit + 1, std::max<size_t>(payload.size() * 4, 1024));
  bool ended = false;  // a final block was seen: nothing may follow but our tail

  // Inflates one input. Loops while input is left or the output room was filled (zlib may hold
  // more output). Output room never goes past limit + 1 bytes.
  auto run = [&](std::string_view in) -> inflate_status {
    s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    s.avail_in = uInt(in.size());
    do {
      if (out.size() > limit) return inflate_status::too_big;
      size_t at = out.size();
      size_t room = std::min(chunk, limit + 1 - at);
      out.resize(at + room);
      s.next_out = reinterpret_cast<Bytef*>(out.data() + at);
      s.avail_out = uInt(room);
      int rc = inflate(&s, Z_SYNC_FLUSH);
      bool filled = s.avail_out == 0;
      out.resize(out.size() - s.avail_out);
      if (rc == Z_STREAM_END) {
        ended = true;
        break;
      }
      if (rc == Z_BUF_ERROR && !filled) break;  // no progress possible with room left
      if (rc != Z_OK && rc != Z_BUF_ERROR) return inflate_status::invalid;
      chunk = std::min(chunk * 2, limit + 1);
    } while (s.avail_in > 0 || s.avail_out == 0);
    return out.size() > limit ? inflate_status::too_big : inflate_status::ok;
  };

  std::string_view rest = payload;
  for (;;) {
    inflate_status st = run(rest);
    if (st != inflate_status::ok) return st;
    if (!ended) break;
    // A block with BFINAL set ended the DEFLATE data. A sender without a sync flush does that
    // and then starts an empty stored block (RFC 7692 7.2.3.4: 0x00, completed by our tail), so
    // what follows is read as new DEFLATE data; if nothing follows, the tail is not needed.
    size_t left = s.avail_in;
    if (left == 0) return inflate_status::ok;
    if (left >= rest.size()) return inflate_status::invalid;  // no progress
    rest = rest.substr(rest.size() - left);
    ended = false;
    inflateReset(&s);
  }
  if (s.avail_in != 0) return inflate_status::invalid;
  inflate_status st = run(std::string_view(reinterpret_cast<const char*>(tail), 4));
  // A final block inside the tail means the payload ended with a partial one: fine either way.
  return st;
}

}  // namespace warren::web
