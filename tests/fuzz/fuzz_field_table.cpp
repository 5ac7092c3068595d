// Fuzzes the field-table decoder: no crash on any input, and whatever decodes re-encodes to
// bytes that decode to an equal table.
#include <string>

#include "amqp/protocol/field_table.hpp"
#include "fuzz_support.hpp"

using namespace warren::amqp::protocol;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  warren::common::byte_reader r(data, size);
  field_table t;
  if (!decode_table(r, t)) return 0;
  std::string wire;
  warren::common::byte_writer w(wire);
  encode_table(w, t);
  warren::common::byte_reader r2(wire.data(), wire.size());
  field_table back;
  bool ok = decode_table(r2, back);
  FUZZ_CHECK(ok && r2.at_end());
  // NaN payloads compare unequal to themselves; compare bytes instead of values.
  std::string again;
  warren::common::byte_writer w2(again);
  encode_table(w2, back);
  FUZZ_CHECK(again == wire);
  return 0;
}
