// Fuzzes the WebSocket frame parser (and permessage-deflate behind it). The first input byte
// picks a chunking and the options; the stream is parsed whole and again fed in pieces the way
// net::connection delivers bytes (unconsumed bytes kept and offered again in front of new ones),
// and both must yield the same events. Every delivered text message and close reason must be
// UTF-8, and no message may exceed the limit.
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "web/utf8.hpp"
#include "web/ws_deflate.hpp"
#include "web/ws_parser.hpp"

using namespace warren::web;

namespace {

ws_deflate& inflater() {
  static ws_deflate z;
  return z;
}

struct outcome {
  std::vector<std::string> events;  // kind, opcode, code, data
};

outcome parse_all(const std::vector<std::string_view>& pieces, const ws_parser_options& o) {
  outcome out;
  ws_parser p(o);
  std::string pending;
  for (std::string_view piece : pieces) {
    pending.append(piece);
    for (;;) {
      ws_parse_result r = p.parse({reinterpret_cast<uint8_t*>(pending.data()), pending.size()});
      FUZZ_CHECK(r.consumed <= pending.size());
      const ws_event& e = r.event;
      if (e.kind == ws_event_kind::need_more) {
        pending.erase(0, r.consumed);
        break;
      }
      if (e.kind == ws_event_kind::message) {
        FUZZ_CHECK(e.data.size() <= o.max_message_size);
        if (e.opcode == ws_opcode::text) FUZZ_CHECK(is_valid_utf8(e.data));
      }
      if (e.kind == ws_event_kind::close) FUZZ_CHECK(is_valid_utf8(e.data));
      if (e.kind == ws_event_kind::error)
        FUZZ_CHECK(e.code == 1002 || e.code == 1007 || e.code == 1009);
      std::string rec(1, char('0' + int(e.kind)));
      rec += char('a' + int(e.opcode));
      rec += std::to_string(e.code) + ":";
      rec.append(e.data);
      out.events.push_back(std::move(rec));
      pending.erase(0, r.consumed);
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The whole byte: the chunking; bit 6: deflate negotiated; bit 7: a small message limit.
  ws_parser_options o;
  o.permessage_deflate = data[0] & 64;
  o.inflater = &inflater();
  o.max_message_size = (data[0] & 128) ? 200 : 1 << 20;
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  outcome whole = parse_all({in}, o);
  outcome pieces = parse_all(warren::fuzz::split(in, data[0]), o);
  FUZZ_CHECK(whole.events == pieces.events);
  return 0;
}
