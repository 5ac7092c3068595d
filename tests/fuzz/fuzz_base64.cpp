// Fuzzes base64 (web/base64), both alphabets. Decoding is documented as strict, so that each byte
// string has exactly one accepted encoding: whatever decodes must encode back to the very input,
// and the input's bytes must round-trip through encode and decode. Cross-checked against
// OpenSSL's decoder for the standard alphabet.
#include <openssl/evp.h>

#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "web/base64.hpp"

using namespace warren::web;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in = warren::fuzz::as_text(data, size);
  std::string out;
  if (base64_decode(in, out)) {
    FUZZ_CHECK(base64_encode(out) == in);
    // OpenSSL agrees on the bytes (it is lenient where we are strict, not the other way).
    std::vector<unsigned char> ssl(in.size() / 4 * 3 + 3);
    int n = EVP_DecodeBlock(ssl.data(), reinterpret_cast<const unsigned char*>(in.data()),
                            int(in.size()));
    FUZZ_CHECK(n >= 0);
    size_t pad = in.size() - in.find_last_not_of('=') - 1;
    if (in.empty()) pad = 0;
    FUZZ_CHECK(size_t(n) - pad == out.size());
    FUZZ_CHECK(std::string_view(reinterpret_cast<char*>(ssl.data()), out.size()) == out);
  }
  if (base64url_decode(in, out)) FUZZ_CHECK(base64url_encode(out) == in);
  std::string back;
  FUZZ_CHECK(base64_decode(base64_encode(in), back) && back == in);
  FUZZ_CHECK(base64url_decode(base64url_encode(in), back) && back == in);
  return 0;
}
