// AMQP 0-9-1 frame parser and writers.
#include "amqp/protocol/frame.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace warren::amqp::protocol {

header_status check_protocol_header(std::span<const uint8_t> in) {
  size_t n = std::min(in.size(), protocol_header.size());
  for (size_t i = 0; i < n; ++i)
    if (in[i] != uint8_t(protocol_header[i])) return header_status::mismatch;
  return n == protocol_header.size() ? header_status::ok : header_status::need_more;
}

parse_result parse_frame(std::span<const uint8_t> in, uint32_t frame_max) {
  parse_result r;
  if (in.size() < frame_header_size) return r;
  common::byte_reader rd(in);
  uint8_t type = rd.u8();
  uint16_t channel = rd.u16();
  uint32_t size = rd.u32();
  if (type != frame_method && type != frame_header && type != frame_body &&
      type != frame_heartbeat) {
    r.status = parse_status::error;
    r.error_text = fmt::format("FRAME_ERROR - type {} is not a frame type", type);
    return r;
  }
  if (frame_max != 0 && uint64_t(size) + frame_overhead > frame_max) {
    r.status = parse_status::error;
    r.error_text = fmt::format("FRAME_ERROR - frame size {} exceeds frame_max {}",
                               uint64_t(size) + frame_overhead, frame_max);
    return r;
  }
  if (in.size() < frame_overhead + size_t(size)) return r;
  if (in[frame_header_size + size] != frame_end) {
    r.status = parse_status::error;
    r.error_text = fmt::format("FRAME_ERROR - frame end octet is {:#04x}, expected 0xce",
                               in[frame_header_size + size]);
    return r;
  }
  r.status = parse_status::frame;
  r.consumed = frame_overhead + size;
  r.frame = frame_view{type, channel, in.subspan(frame_header_size, size)};
  return r;
}

void write_method_frame(std::string& out, uint16_t channel, const method& m) {
  std::visit([&](const auto& x) { write_method(out, channel, x); }, m);
}

void write_content_header_frame(std::string& out, uint16_t channel, const content_header& h) {
  write_frame(out, frame_header, channel,
              [&](common::byte_writer& w) { encode_content_header(w, h); });
}

void write_body_frames(std::string& out, uint16_t channel, std::string_view body,
                       uint32_t frame_max) {
  size_t chunk = frame_max == 0 ? body.size() : frame_max - frame_overhead;
  common::byte_writer w(out);
  for (size_t off = 0; off < body.size(); off += chunk) {
    std::string_view part = body.substr(off, chunk);
    w.u8(frame_body);
    w.u16(channel);
    w.u32(uint32_t(part.size()));
    w.bytes(part);
    w.u8(frame_end);
  }
}

namespace {
void shortstr(common::byte_writer& w, std::string_view s) {
  s = s.substr(0, 255);
  w.u8(uint8_t(s.size()));
  w.bytes(s);
}
}  // namespace

void write_encoded_content_header_frame(std::string& out, uint16_t channel, uint64_t body_size,
                                        std::string_view encoded_properties) {
  write_frame(out, frame_header, channel, [&](common::byte_writer& w) {
    w.u16(basic_deliver::amqp_class_id);
    w.u16(0);  // weight
    w.u64(body_size);
    w.bytes(encoded_properties);
  });
}

void write_delivery(std::string& out, uint16_t channel, const delivery_view& d,
                    std::string_view encoded_properties, std::string_view body,
                    uint32_t frame_max) {
  write_delivery_head(out, channel, d, encoded_properties, body.size());
  write_body_frames(out, channel, body, frame_max);
}

void write_delivery_head(std::string& out, uint16_t channel, const delivery_view& d,
                         std::string_view encoded_properties, uint64_t body_size) {
  write_frame(out, frame_method, channel, [&](common::byte_writer& w) {
    w.u16(basic_deliver::amqp_class_id);
    w.u16(basic_deliver::amqp_method_id);
    shortstr(w, d.consumer_tag);
    w.u64(d.delivery_tag);
    w.u8(d.redelivered ? 1 : 0);
    shortstr(w, d.exchange);
    shortstr(w, d.routing_key);
  });
  write_encoded_content_header_frame(out, channel, body_size, encoded_properties);
}

void write_heartbeat_frame(std::string& out) {
  common::byte_writer w(out);
  w.u8(frame_heartbeat);
  w.u16(0);
  w.u32(0);
  w.u8(frame_end);
}

}  // namespace warren::amqp::protocol
