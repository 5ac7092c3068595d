// WebSocket frames (RFC 6455 section 5): opcodes, close codes, and the server's frame writer.
// Server frames are never masked. A message for many connections is encoded once
// (ws_prepared_message) and the same bytes are appended to each connection's output.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace warren::web {

class ws_deflate;

enum class ws_opcode : uint8_t {
  continuation = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xa,
};

inline bool ws_is_control(ws_opcode op) {
  return (uint8_t(op) & 0x8) != 0;
}

// Close status codes (RFC 6455 section 7.4.1).
namespace ws_close {
inline constexpr uint16_t normal = 1000;
inline constexpr uint16_t going_away = 1001;
inline constexpr uint16_t protocol_error = 1002;
inline constexpr uint16_t unsupported_data = 1003;
inline constexpr uint16_t no_status = 1005;  // reported locally for an empty close; never sent
inline constexpr uint16_t abnormal = 1006;   // reported locally for a lost connection; never sent
inline constexpr uint16_t invalid_payload = 1007;
inline constexpr uint16_t policy_violation = 1008;
inline constexpr uint16_t message_too_big = 1009;
inline constexpr uint16_t mandatory_extension = 1010;
inline constexpr uint16_t internal_error = 1011;
inline constexpr uint16_t tls_handshake = 1015;  // never sent
}  // namespace ws_close

// Codes a close frame may carry on the wire: 1000-1003, 1007-1011 (RFC 6455 7.4.1), and
// 3000-4999 (registered and private use). 1004 is reserved, 1005/1006/1015 are local-only, and
// everything else is refused, as Autobahn 7.9.x and 7.13.x expect; that includes 1012-1014,
// registered with IANA after the RFC, which browsers cannot send anyway (WebSocket.close()
// takes only 1000 and 3000-4999).
bool ws_close_code_valid(uint16_t code);

// Largest payload of a control frame, and so of a close reason plus its 2-byte code.
inline constexpr size_t ws_max_control_payload = 125;

// Size of the header of an unmasked frame with this payload size (2, 4 or 10 bytes).
size_t ws_header_size(size_t payload_size);

// Appends a frame header; the payload follows. rsv1 marks the first frame of a
// permessage-deflate compressed message.
void ws_append_header(std::string& out, ws_opcode op, size_t payload_size, bool fin = true,
                      bool rsv1 = false);
void ws_append_frame(std::string& out, ws_opcode op, std::string_view payload, bool fin = true,
                     bool rsv1 = false);

// A whole data message (text or binary) as one frame, or as fragments of at most
// `fragment_size` payload bytes when that is non-zero. `compressed`: the payload is already
// deflated (ws_deflate::compress), so the first frame carries RSV1.
void ws_append_message(std::string& out, ws_opcode op, std::string_view payload,
                       size_t fragment_size = 0, bool compressed = false);

// A close frame. A code that may not be sent (1005, 1006, 1015 or any invalid one) gives an
// empty close frame, which the peer reads as "no status". The reason is cut to fit 123 bytes,
// at a character boundary.
void ws_append_close(std::string& out, uint16_t code, std::string_view reason = {});

// XORs `n` bytes with the 4-byte masking key, starting at key position `offset` % 4 (RFC 6455
// 5.3). Masking and unmasking are the same operation.
void ws_mask(uint8_t* p, size_t n, const uint8_t key[4], size_t offset = 0);

// A client's frame (masked with `key`), for test clients and load tools; the server never
// sends these. Header forms can be forced longer than needed (`length_bytes` 0: shortest,
// else 1, 2 or 8 for the 7-bit, 16-bit and 64-bit forms) to test a peer's checks.
void ws_append_client_frame(std::string& out, ws_opcode op, std::string_view payload,
                            const uint8_t key[4], bool fin = true, bool rsv1 = false,
                            int length_bytes = 0);

// One message encoded once for any number of connections: the frame bytes as sent to a
// connection without compression and, if a compressor was given and compression shrinks the
// message, the compressed frame for connections that negotiated permessage-deflate. Immutable
// after construction: share it between workers with a shared_ptr<const ws_prepared_message>.
class ws_prepared_message {
 public:
  ws_prepared_message(ws_opcode op, std::string_view payload);
  ws_prepared_message(ws_opcode op, std::string_view payload, ws_deflate& compressor);

  // The bytes to append to a connection's output.
  std::string_view frame(bool deflate_negotiated) const {
    return deflate_negotiated && !compressed_.empty() ? std::string_view(compressed_)
                                                      : std::string_view(plain_);
  }
  bool has_compressed() const { return !compressed_.empty(); }

 private:
  std::string plain_;
  std::string compressed_;
};

}  // namespace warren::web
