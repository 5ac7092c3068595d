// Fuzzes the content header decoder (class id, weight, body size, property flags in
// continuation words, then the present properties): no crash on any input; whatever decodes
// re-encodes to bytes that decode to equal properties, and the canonical encoding is stable.
// The broker's reading of the expiration property is fuzzed on the way.
#include <string>

#include "amqp/protocol/frame.hpp"
#include "broker/message.hpp"
#include "fuzz_support.hpp"

using namespace warren::amqp::protocol;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  content_header h;
  if (!decode_content_header({data, size}, h)) return 0;
  FUZZ_CHECK(h.class_id == class_basic);
  if (h.properties.expiration) {
    int64_t ms = -1;
    if (warren::broker::parse_expiration(*h.properties.expiration, ms)) FUZZ_CHECK(ms >= 0);
  }
  std::string once;
  warren::common::byte_writer w(once);
  encode_content_header(w, h);
  content_header back;
  FUZZ_CHECK(
      decode_content_header({reinterpret_cast<const uint8_t*>(once.data()), once.size()}, back));
  FUZZ_CHECK(back.class_id == h.class_id && back.weight == h.weight &&
             back.body_size == h.body_size);
  std::string twice;
  warren::common::byte_writer w2(twice);
  encode_content_header(w2, back);
  FUZZ_CHECK(once == twice);
  return 0;
}
