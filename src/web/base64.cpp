// Hand-written rather than OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock: those know only the
// standard alphabet and decode leniently (whitespace, padding counted as zero bytes).
#include "web/base64.hpp"

#include <array>
#include <cstdint>

namespace warren::web {
namespace {

constexpr std::string_view std_alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view url_alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

constexpr uint8_t invalid = 0xff;

constexpr std::array<uint8_t, 256> reverse(std::string_view alphabet) {
  std::array<uint8_t, 256> r{};
  for (auto& v : r) v = invalid;
  for (size_t i = 0; i < alphabet.size(); ++i) r[uint8_t(alphabet[i])] = uint8_t(i);
  return r;
}

constexpr auto std_reverse = reverse(std_alphabet);
constexpr auto url_reverse = reverse(url_alphabet);

std::string encode(std::string_view in, std::string_view alphabet, bool pad) {
  std::string out;
  out.reserve(4 * ((in.size() + 2) / 3));
  size_t i = 0;
  auto at = [&](size_t k) { return uint32_t(uint8_t(in[k])); };
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t v = at(i) << 16 | at(i + 1) << 8 | at(i + 2);
    out += alphabet[v >> 18 & 63];
    out += alphabet[v >> 12 & 63];
    out += alphabet[v >> 6 & 63];
    out += alphabet[v & 63];
  }
  size_t rest = in.size() - i;
  if (rest == 1) {
    uint32_t v = at(i) << 16;
    out += alphabet[v >> 18 & 63];
    out += alphabet[v >> 12 & 63];
    if (pad) out += "==";
  } else if (rest == 2) {
    uint32_t v = at(i) << 16 | at(i + 1) << 8;
    out += alphabet[v >> 18 & 63];
    out += alphabet[v >> 12 & 63];
    out += alphabet[v >> 6 & 63];
    if (pad) out += '=';
  }
  return out;
}

// Decodes unpadded input (the padding, if any, already removed and checked by the caller).
bool decode(std::string_view in, const std::array<uint8_t, 256>& rev, std::string& out) {
  if (in.size() % 4 == 1) return false;  // 6 bits cannot end a byte string
  out.clear();
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    uint8_t v = rev[uint8_t(c)];
    if (v == invalid) return false;
    acc = acc << 6 | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += char(acc >> bits & 0xff);
    }
  }
  // What is left are the unused low bits of the last character: zero in a canonical encoding.
  return (acc & ((1u << bits) - 1)) == 0;
}

}  // namespace

std::string base64_encode(std::string_view in) {
  return encode(in, std_alphabet, true);
}
std::string base64url_encode(std::string_view in) {
  return encode(in, url_alphabet, false);
}

bool base64_decode(std::string_view in, std::string& out) {
  if (in.size() % 4 != 0) return false;
  size_t pad = 0;
  while (pad < 2 && pad < in.size() && in[in.size() - 1 - pad] == '=') ++pad;
  std::string_view body = in.substr(0, in.size() - pad);
  // With padding, the unpadded length must be exactly what the padding implies.
  if (pad > 0 && body.size() % 4 != 4 - pad) return false;
  return decode(body, std_reverse, out);
}

bool base64url_decode(std::string_view in, std::string& out) {
  return decode(in, url_reverse, out);
}

}  // namespace warren::web
