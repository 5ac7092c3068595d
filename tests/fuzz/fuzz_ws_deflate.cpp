// Fuzzes permessage-deflate's inflation (web/ws_deflate) directly on a message payload, as a
// browser's compressed frame delivers it. The first byte picks the output limit. Checks: the
// output never exceeds the limit ("too big" is said instead, so a small zip bomb costs at most
// the limit); what inflates compresses and inflates back to the same bytes; the one inflater
// is reusable after any input (it is shared by every connection of a worker).
#include <string>

#include "fuzz_support.hpp"
#include "web/ws_deflate.hpp"

using namespace warren::web;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static ws_deflate z;
  static ws_deflate compressor;
  const size_t limits[] = {0, 1, 100, 4096, 65536, 1 << 20, 16 << 20, 64 << 20};
  size_t limit = limits[data[0] & 7];
  std::string_view payload = warren::fuzz::as_text(data + 1, size - 1);
  std::string out;
  auto st = z.decompress(payload, limit, out);
  if (st != ws_deflate::inflate_status::ok) return 0;
  FUZZ_CHECK(out.size() <= limit);
  std::string packed;
  compressor.compress(out, packed);
  std::string back;
  FUZZ_CHECK(z.decompress(packed, out.size(), back) == ws_deflate::inflate_status::ok);
  FUZZ_CHECK(back == out);
  return 0;
}
