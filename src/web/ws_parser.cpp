// The frame loop of ws_parser: header checks as soon as the bytes that carry them are here,
// then the payload once the frame is whole (or, for text, its UTF-8 as far as it has arrived).
#include "web/ws_parser.hpp"

#include <string>

#include "web/ws_deflate.hpp"

namespace warren::web {
namespace {

bool known_opcode(uint8_t op) {
  switch (ws_opcode(op)) {
    case ws_opcode::continuation:
    case ws_opcode::text:
    case ws_opcode::binary:
    case ws_opcode::close:
    case ws_opcode::ping:
    case ws_opcode::pong:
      return true;
  }
  return false;
}

}  // namespace

ws_parser::ws_parser(const ws_parser_options& o)
    : inflater_(o.inflater),
      max_message_(o.max_message_size),
      deflate_(o.permessage_deflate && o.inflater != nullptr),
      masked_(!o.from_server) {}

ws_parse_result ws_parser::fail(uint16_t code, const char* why, size_t consumed) {
  finished_ = true;
  std::string().swap(message_);
  ws_parse_result r;
  r.event.kind = ws_event_kind::error;
  r.event.code = code;
  r.event.data = why;
  r.consumed = consumed;
  return r;
}

ws_parse_result ws_parser::finish_compressed(ws_opcode op, std::string_view payload,
                                             size_t consumed) {
  std::string out;
  switch (inflater_->decompress(payload, max_message_, out)) {
    case ws_deflate::inflate_status::ok:
      break;
    case ws_deflate::inflate_status::too_big:
      return fail(ws_close::message_too_big, "message too big once decompressed", consumed);
    case ws_deflate::inflate_status::invalid:
      return fail(ws_close::invalid_payload, "compressed data does not inflate", consumed);
  }
  if (op == ws_opcode::text && !is_valid_utf8(out))
    return fail(ws_close::invalid_payload, "text message is not valid UTF-8", consumed);
  message_.swap(out);  // kept until the next call, which releases it
  ws_parse_result r;
  r.event.kind = ws_event_kind::message;
  r.event.opcode = op;
  r.event.data = message_;
  r.consumed = consumed;
  return r;
}

ws_parse_result ws_parser::parse(std::span<uint8_t> data) {
  if (finished_) return {{}, data.size()};
  // The previous call may have returned a view into message_; it is done with now.
  if (!in_message() && message_.capacity() > std::string().capacity()) std::string().swap(message_);

  size_t used = 0;  // whole frames consumed in this call
  for (;;) {
    std::span<uint8_t> in = data.subspan(used);
    const size_t all = data.size();
    if (in.size() < 2) return {{}, used};

    // First two bytes: everything but the length and the key can be judged already.
    const uint8_t b0 = in[0], b1 = in[1];
    const bool fin = b0 & 0x80, rsv1 = b0 & 0x40;
    const uint8_t raw_op = b0 & 0x0f;
    if (!known_opcode(raw_op)) return fail(ws_close::protocol_error, "unknown opcode", all);
    const auto op = ws_opcode(raw_op);
    const bool control = ws_is_control(op);
    if (b0 & 0x30) return fail(ws_close::protocol_error, "reserved bit RSV2 or RSV3 set", all);
    if (rsv1 && !(deflate_ && (op == ws_opcode::text || op == ws_opcode::binary)))
      return fail(ws_close::protocol_error,
                  deflate_ ? "RSV1 set on a frame that does not start a message"
                           : "RSV1 set without permessage-deflate",
                  all);
    if (bool(b1 & 0x80) != masked_)
      return fail(ws_close::protocol_error,
                  masked_ ? "client frame not masked" : "server frame masked", all);
    uint64_t len = b1 & 0x7f;
    if (control) {
      if (!fin) return fail(ws_close::protocol_error, "fragmented control frame", all);
      if (len > ws_max_control_payload)
        return fail(ws_close::protocol_error, "control frame longer than 125 bytes", all);
    } else if (op == ws_opcode::continuation) {
      if (!in_message())
        return fail(ws_close::protocol_error, "continuation frame without a message", all);
    } else if (in_message()) {
      return fail(ws_close::protocol_error, "new data frame inside a fragmented message", all);
    }

    // Extended length, in its shortest form (RFC 6455 5.2: "the minimal number of bytes").
    size_t header = 2;
    if (len == 126) {
      if (in.size() < 4) return {{}, used};
      len = uint64_t(in[2]) << 8 | in[3];
      header = 4;
      if (len < 126) return fail(ws_close::protocol_error, "length not in shortest form", all);
    } else if (len == 127) {
      if (in.size() < 10) return {{}, used};
      len = 0;
      for (int i = 0; i < 8; ++i) len = len << 8 | in[2 + i];
      header = 10;
      if (len >> 63) return fail(ws_close::protocol_error, "64-bit length with top bit set", all);
      if (len <= 0xffff) return fail(ws_close::protocol_error, "length not in shortest form", all);
    }
    if (!control) {
      // Refused from the header alone: nobody buffers a frame that could never be accepted.
      const uint64_t so_far = op == ws_opcode::continuation ? message_.size() : 0;
      if (len > max_message_ - so_far)
        return fail(ws_close::message_too_big, "message too big", all);
    }
    if (masked_) header += 4;
    if (in.size() < header) return {{}, used};
    static constexpr uint8_t no_mask[4] = {0, 0, 0, 0};
    const uint8_t* key = masked_ ? in.data() + header - 4 : no_mask;
    uint8_t* payload = in.data() + header;
    const size_t avail = in.size() - header;

    const ws_opcode msg_op = op == ws_opcode::continuation ? message_op_ : op;
    const bool compressed = op == ws_opcode::continuation ? compressed_ : rsv1;
    const bool check_text = msg_op == ws_opcode::text && !compressed;

    if (avail < len) {
      // Fail fast on UTF-8 inside a partial frame, without unmasking in place: these bytes
      // will be offered again, and checked_ remembers how far they were read.
      if (check_text) {
        for (size_t i = checked_; i < avail; ++i)
          if (!utf8_.feed_byte(payload[i] ^ key[i & 3]))
            return fail(ws_close::invalid_payload, "text message is not valid UTF-8", all);
        checked_ = uint32_t(avail);
      }
      return {{}, used};
    }

    // The frame is whole.
    const size_t n = size_t(len);
    if (masked_) ws_mask(payload, n, key);
    used += header + n;
    const std::string_view body(reinterpret_cast<const char*>(payload), n);
    const uint32_t already = checked_;
    checked_ = 0;

    if (control) {
      ws_parse_result r;
      r.consumed = used;
      r.event.opcode = op;
      if (op == ws_opcode::ping) {
        r.event.kind = ws_event_kind::ping;
        r.event.data = body;
      } else if (op == ws_opcode::pong) {
        r.event.kind = ws_event_kind::pong;
        r.event.data = body;
      } else {
        if (n == 1) return fail(ws_close::protocol_error, "close payload of one byte", all);
        r.event.kind = ws_event_kind::close;
        r.event.code = ws_close::no_status;
        if (n >= 2) {
          r.event.code = uint16_t(payload[0] << 8 | payload[1]);
          if (!ws_close_code_valid(r.event.code))
            return fail(ws_close::protocol_error, "invalid close code", all);
          r.event.data = body.substr(2);
          if (!is_valid_utf8(r.event.data))
            return fail(ws_close::invalid_payload, "close reason is not valid UTF-8", all);
        }
        finished_ = true;
        std::string().swap(message_);
        r.consumed = all;  // nothing after a close frame is read
      }
      return r;
    }

    if (check_text) {
      if (!utf8_.feed(payload + already, n - already))
        return fail(ws_close::invalid_payload, "text message is not valid UTF-8", all);
      if (fin && !utf8_.complete())
        return fail(ws_close::invalid_payload, "text message ends inside a character", all);
    }

    if (op != ws_opcode::continuation) {
      if (fin) {
        if (compressed) return finish_compressed(op, body, used);
        ws_parse_result r;
        r.event.kind = ws_event_kind::message;
        r.event.opcode = op;
        r.event.data = body;
        r.consumed = used;
        return r;
      }
      // The first of several fragments.
      message_op_ = op;
      compressed_ = rsv1;
      message_.assign(body);
      continue;
    }

    message_.append(body);
    if (!fin) continue;
    message_op_ = ws_opcode::continuation;
    utf8_.reset();
    if (compressed_) {
      compressed_ = false;
      std::string z;
      z.swap(message_);
      return finish_compressed(msg_op, z, used);
    }
    ws_parse_result r;
    r.event.kind = ws_event_kind::message;
    r.event.opcode = msg_op;
    r.event.data = message_;
    r.consumed = used;
    return r;
  }
}

}  // namespace warren::web
