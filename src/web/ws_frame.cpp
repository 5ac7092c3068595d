// The server's frame writer: headers in their shortest form, no mask (RFC 6455 5.1: a server
// must not mask).
#include "web/ws_frame.hpp"

#include <algorithm>
#include <cstring>

#include "web/utf8.hpp"
#include "web/ws_deflate.hpp"

namespace warren::web {

bool ws_close_code_valid(uint16_t code) {
  if (code >= 3000 && code <= 4999) return true;
  switch (code) {
    case 1000:
    case 1001:
    case 1002:
    case 1003:
    case 1007:
    case 1008:
    case 1009:
    case 1010:
    case 1011:
      return true;
    default:
      return false;
  }
}

size_t ws_header_size(size_t payload_size) {
  if (payload_size < 126) return 2;
  if (payload_size <= 0xffff) return 4;
  return 10;
}

void ws_append_header(std::string& out, ws_opcode op, size_t payload_size, bool fin, bool rsv1) {
  char h[10];
  h[0] = char((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | uint8_t(op));
  size_t n;
  if (payload_size < 126) {
    h[1] = char(payload_size);
    n = 2;
  } else if (payload_size <= 0xffff) {
    h[1] = 126;
    h[2] = char(payload_size >> 8);
    h[3] = char(payload_size);
    n = 4;
  } else {
    h[1] = 127;
    uint64_t v = payload_size;
    for (int i = 0; i < 8; ++i) h[2 + i] = char(v >> (56 - 8 * i));
    n = 10;
  }
  out.append(h, n);
}

void ws_append_frame(std::string& out, ws_opcode op, std::string_view payload, bool fin,
                     bool rsv1) {
  ws_append_header(out, op, payload.size(), fin, rsv1);
  out.append(payload);
}

void ws_append_message(std::string& out, ws_opcode op, std::string_view payload,
                       size_t fragment_size, bool compressed) {
  if (fragment_size == 0 || payload.size() <= fragment_size) {
    ws_append_frame(out, op, payload, true, compressed);
    return;
  }
  bool first = true;
  while (!payload.empty()) {
    std::string_view part = payload.substr(0, fragment_size);
    payload.remove_prefix(part.size());
    ws_append_frame(out, first ? op : ws_opcode::continuation, part, payload.empty(),
                    first && compressed);
    first = false;
  }
}

void ws_append_close(std::string& out, uint16_t code, std::string_view reason) {
  if (!ws_close_code_valid(code)) {
    ws_append_header(out, ws_opcode::close, 0);
    return;
  }
  // Cut the reason at a character boundary: back off while the cut lands on a continuation byte.
  size_t n = std::min(reason.size(), ws_max_control_payload - 2);
  if (n < reason.size())
    while (n > 0 && (uint8_t(reason[n]) & 0xc0) == 0x80) --n;
  reason = reason.substr(0, n);
  ws_append_header(out, ws_opcode::close, 2 + reason.size());
  out += char(code >> 8);
  out += char(code & 0xff);
  out.append(reason);
}

void ws_mask(uint8_t* p, size_t n, const uint8_t key[4], size_t offset) {
  uint8_t k[4];
  for (size_t i = 0; i < 4; ++i) k[i] = key[(offset + i) & 3];
  size_t i = 0;
  // Eight bytes at a time with the key repeated twice.
  if (n >= 8) {
    uint8_t k8[8] = {k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]};
    uint64_t m;
    std::memcpy(&m, k8, 8);
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      w ^= m;
      std::memcpy(p + i, &w, 8);
    }
  }
  for (; i < n; ++i) p[i] ^= k[i & 3];
}

void ws_append_client_frame(std::string& out, ws_opcode op, std::string_view payload,
                            const uint8_t key[4], bool fin, bool rsv1, int length_bytes) {
  size_t n = payload.size();
  if (length_bytes == 0) length_bytes = n < 126 ? 1 : n <= 0xffff ? 2 : 8;
  out += char((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | uint8_t(op));
  if (length_bytes == 1) {
    out += char(0x80 | n);
  } else if (length_bytes == 2) {
    out += char(0x80 | 126);
    out += char(n >> 8);
    out += char(n);
  } else {
    out += char(0x80 | 127);
    for (int i = 0; i < 8; ++i) out += char(uint64_t(n) >> (56 - 8 * i));
  }
  out.append(reinterpret_cast<const char*>(key), 4);
  size_t at = out.size();
  out.append(payload);
  ws_mask(reinterpret_cast<uint8_t*>(out.data() + at), n, key);
}

ws_prepared_message::ws_prepared_message(ws_opcode op, std::string_view payload) {
  plain_.reserve(ws_header_size(payload.size()) + payload.size());
  ws_append_frame(plain_, op, payload);
}

ws_prepared_message::ws_prepared_message(ws_opcode op, std::string_view payload,
                                         ws_deflate& compressor)
    : ws_prepared_message(op, payload) {
  std::string z;
  compressor.compress(payload, z);
  // A message that does not shrink goes uncompressed to everyone (RSV1 clear is always allowed).
  if (z.size() < payload.size()) {
    compressed_.reserve(ws_header_size(z.size()) + z.size());
    ws_append_frame(compressed_, op, z, true, true);
  }
}

}  // namespace warren::web
