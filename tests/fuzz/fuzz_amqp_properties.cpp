// Fuzzes the content header decoder (class id, weight, body size, property flags in
// continuation words, then the present properties): no crash on any input; whatever decodes
// re-encodes to bytes that decode to equal properties, and the canonical encoding is stable.
// The broker's reading of the expiration property is fuzzed on the way, and so are the byte edits
// by which nodes of a cluster put their forward header into a property list and take it out
// (properties_edit.hpp): a header put in first comes out as it went in, leaving the bytes as they
// were.
#include <string>

#include "amqp/protocol/frame.hpp"
#include "amqp/protocol/properties_edit.hpp"
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

  std::string props(reinterpret_cast<const char*>(data) + 12, size - 12);
  std::string taken = props;
  if (auto v = take_first_header(taken, "x-warren-forward")) {
    FUZZ_CHECK(h.properties.headers && !h.properties.headers->entries.empty() &&
               h.properties.headers->entries.front().key == "x-warren-forward");
  } else {
    FUZZ_CHECK(taken == props);
  }
  std::string with = props;
  const field_value mark{int32_t(7)};
  if (props.size() >= 2 && (uint8_t(props[1]) & 1)) {  // a continuation word: never edited
    FUZZ_CHECK(!prepend_header(with, "x-warren-forward", mark) && with == props);
    return 0;
  }
  FUZZ_CHECK(prepend_header(with, "x-warren-forward", mark));
  auto back_out = take_first_header(with, "x-warren-forward");
  FUZZ_CHECK(back_out && *back_out == mark);
  bool empty_table = h.properties.headers && h.properties.headers->entries.empty();
  FUZZ_CHECK(with == props || empty_table);  // an empty table goes with the header
  return 0;
}
