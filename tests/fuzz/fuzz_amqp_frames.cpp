// Fuzzes the frame parser and every decoder behind it (methods, content headers). The first
// input byte picks a chunking: the stream is parsed whole and again fed in pieces, as a socket
// would deliver it (unconsumed bytes kept and offered again in front of new ones), and both must
// yield the same frames (resumption after "need more" is exact).
#include <string>
#include <vector>

#include "amqp/protocol/frame.hpp"
#include "fuzz_support.hpp"

using namespace warren::amqp::protocol;

namespace {

struct outcome {
  std::vector<std::string> frames;  // type, channel, payload
  bool error = false;
};

void decode_payload(const frame_view& f) {
  if (f.type == frame_method) {
    method m;
    if (decode_method(f.payload, m) == decode_status::ok) {
      // Non-canonical input (a bool octet of 2, unused bits set) may re-encode differently, but
      // the canonical form must be stable: encode(decode(encode(m))) == encode(m).
      std::string once;
      warren::common::byte_writer w(once);
      encode_method(w, m);
      method back;
      FUZZ_CHECK(decode_method({reinterpret_cast<const uint8_t*>(once.data()), once.size()},
                               back) == decode_status::ok);
      std::string twice;
      warren::common::byte_writer w2(twice);
      encode_method(w2, back);
      FUZZ_CHECK(once == twice);
    }
  } else if (f.type == frame_header) {
    content_header h;
    (void)decode_content_header(f.payload, h);
  }
}

outcome parse_all(const std::vector<std::string_view>& pieces) {
  outcome o;
  std::string buf;
  for (std::string_view piece : pieces) {
    buf.append(piece);
    for (;;) {
      parse_result r = parse_frame(
          std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(buf.data()), buf.size()),
          131072);
      if (r.status == parse_status::error) {
        o.error = true;
        return o;
      }
      if (r.status == parse_status::need_more) break;
      FUZZ_CHECK(r.consumed >= frame_overhead && r.consumed <= buf.size());
      decode_payload(r.frame);
      std::string rec(1, char(r.frame.type));
      rec += std::to_string(r.frame.channel) + ":";
      rec.append(reinterpret_cast<const char*>(r.frame.payload.data()), r.frame.payload.size());
      o.frames.push_back(std::move(rec));
      buf.erase(0, r.consumed);
    }
  }
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view in = warren::fuzz::as_text(data + 1, size - 1);
  (void)check_protocol_header({data + 1, size - 1});
  outcome whole = parse_all({in});
  outcome pieces = parse_all(warren::fuzz::split(in, data[0]));
  FUZZ_CHECK(whole.frames == pieces.frames);
  FUZZ_CHECK(whole.error == pieces.error);
  return 0;
}
