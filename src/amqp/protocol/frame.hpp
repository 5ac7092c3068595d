// AMQP 0-9-1 framing: the protocol header, the frame parser (bytes in -> need more | frame | error)
// and frame writers. No sockets: the connection feeds whatever bytes it has.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "amqp/protocol/methods.hpp"

namespace warren::amqp::protocol {

// "AMQP" 0 0 9 1: the only protocol header Warren speaks.
inline constexpr std::string_view protocol_header{"AMQP\x00\x00\x09\x01", 8};

enum class header_status { need_more, ok, mismatch };
// Checks the first bytes a client sends. A mismatch is reported as soon as one byte differs.
header_status check_protocol_header(std::span<const uint8_t> in);

// Size of the frame header (type, channel, size) and of the frame-end octet.
inline constexpr size_t frame_header_size = 7;
inline constexpr size_t frame_overhead = 8;

struct frame_view {
  uint8_t type = 0;
  uint16_t channel = 0;
  std::span<const uint8_t> payload;
};

enum class parse_status { need_more, frame, error };

struct parse_result {
  parse_status status = parse_status::need_more;
  size_t consumed = 0;  // bytes of input the frame took (status == frame)
  frame_view frame;
  std::string error_text;  // status == error: always a FRAME_ERROR (501) on the connection
};

// Parses one frame from the front of `in`. frame_max bounds the whole frame, header and end octet
// included (0 = no limit); an oversized frame is reported as soon as its header is readable, before
// its payload is buffered.
parse_result parse_frame(std::span<const uint8_t> in, uint32_t frame_max);

// Frame writers: append a complete frame to `out`.
void write_method_frame(std::string& out, uint16_t channel, const method& m);
// Writes a frame whose payload `write_payload(byte_writer&)` produces, patching its size after.
template <typename F>
void write_frame(std::string& out, uint8_t type, uint16_t channel, F&& write_payload) {
  common::byte_writer w(out);
  w.u8(type);
  w.u16(channel);
  size_t at = w.size();
  w.u32(0);
  write_payload(w);
  w.patch_u32(at, uint32_t(w.size() - at - 4));
  w.u8(frame_end);
}
template <typename M>
void write_method(std::string& out, uint16_t channel, const M& m) {
  write_frame(out, frame_method, channel, [&](common::byte_writer& w) { encode_method(w, m); });
}
void write_content_header_frame(std::string& out, uint16_t channel, const content_header& h);
// Splits body into frames of at most frame_max bytes each (0 = one frame).
void write_body_frames(std::string& out, uint16_t channel, std::string_view body,
                       uint32_t frame_max);
void write_heartbeat_frame(std::string& out);

// The frames of one delivery (basic.deliver, its content header, its body) written from views:
// the broker's most frequent write, without building a basic_deliver (three strings) or a
// content_header per delivery. `encoded_properties` is a content header's property flags and
// property list, as encode_basic_properties writes them (or as a publisher sent them).
struct delivery_view {
  std::string_view consumer_tag;
  uint64_t delivery_tag = 0;
  bool redelivered = false;
  std::string_view exchange;
  std::string_view routing_key;
};
void write_delivery(std::string& out, uint16_t channel, const delivery_view& d,
                    std::string_view encoded_properties, std::string_view body, uint32_t frame_max);
// The frames of a delivery before its body: basic.deliver and the content header.
void write_delivery_head(std::string& out, uint16_t channel, const delivery_view& d,
                         std::string_view encoded_properties, uint64_t body_size);
// As write_body_frames, without copying the body: each body frame's header and end octet go into
// `out`, and between them `slice(part)` is called for the frame's part of the body, which the
// caller puts on the wire by reference (net::connection::append_shared). The bytes on the wire are
// write_body_frames's.
template <typename Slice>
void write_body_frames_by_reference(std::string& out, uint16_t channel, std::string_view body,
                                    uint32_t frame_max, Slice&& slice) {
  size_t chunk = frame_max == 0 ? body.size() : frame_max - frame_overhead;
  for (size_t off = 0; off < body.size(); off += chunk) {
    std::string_view part = body.substr(off, chunk);
    common::byte_writer w(out);
    w.u8(frame_body);
    w.u16(channel);
    w.u32(uint32_t(part.size()));
    slice(part);
    w.u8(frame_end);
  }
}
// A content header frame of class basic around properties already encoded.
void write_encoded_content_header_frame(std::string& out, uint16_t channel, uint64_t body_size,
                                        std::string_view encoded_properties);

}  // namespace warren::amqp::protocol
