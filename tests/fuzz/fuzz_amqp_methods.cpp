// Fuzzes the generated method decoder on a method frame's payload (class id, method id,
// arguments), without the framing in front: no crash on any input, and whatever decodes has a
// name and a stable canonical encoding (encode(decode(encode(m))) == encode(m)).
#include <string>

#include "amqp/protocol/frame.hpp"
#include "fuzz_support.hpp"

using namespace warren::amqp::protocol;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  method m;
  decode_status st = decode_method({data, size}, m);
  if (st != decode_status::ok) return 0;
  FUZZ_CHECK(size >= 4);
  FUZZ_CHECK(!method_name(m).empty());
  FUZZ_CHECK(method_class_id(m) == uint16_t(data[0] << 8 | data[1]));
  FUZZ_CHECK(method_method_id(m) == uint16_t(data[2] << 8 | data[3]));
  std::string once;
  warren::common::byte_writer w(once);
  encode_method(w, m);
  method back;
  FUZZ_CHECK(decode_method({reinterpret_cast<const uint8_t*>(once.data()), once.size()}, back) ==
             decode_status::ok);
  std::string twice;
  warren::common::byte_writer w2(twice);
  encode_method(w2, back);
  FUZZ_CHECK(once == twice);
  // A whole frame around it parses back to the same payload.
  std::string frame;
  write_method_frame(frame, 1, m);
  parse_result r = parse_frame({reinterpret_cast<const uint8_t*>(frame.data()), frame.size()}, 0);
  FUZZ_CHECK(r.status == parse_status::frame && r.consumed == frame.size());
  FUZZ_CHECK(std::string_view(reinterpret_cast<const char*>(r.frame.payload.data()),
                              r.frame.payload.size()) == once);
  return 0;
}
