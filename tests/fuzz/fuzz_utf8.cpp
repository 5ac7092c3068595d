// Fuzzes UTF-8 validation (web/utf8) against a plain reference decoder written from RFC 3629:
// whole-string validity must agree, and the incremental validator fed in pieces (split anywhere,
// even inside a character, as WebSocket fragments are) must agree with it whole, fail at the same
// byte, and say "complete" only at a character boundary.
#include <string>

#include "fuzz_support.hpp"
#include "web/utf8.hpp"

using namespace warren::web;

namespace {

// The length of the well-formed prefix of s, and whether it ends inside a character there.
size_t reference_prefix(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    uint8_t b = uint8_t(s[i]);
    uint32_t cp;
    size_t n;
    if (b < 0x80) {
      ++i;
      continue;
    } else if (b >= 0xc2 && b <= 0xdf) {
      n = 2, cp = b & 0x1f;
    } else if (b >= 0xe0 && b <= 0xef) {
      n = 3, cp = b & 0x0f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      n = 4, cp = b & 0x07;
    } else {
      return i;
    }
    size_t k = 1;
    for (; k < n && i + k < s.size(); ++k) {
      uint8_t c = uint8_t(s[i + k]);
      if ((c & 0xc0) != 0x80) return i;
      cp = cp << 6 | (c & 0x3f);
      // Refuse as soon as the prefix cannot start a valid character (RFC 3629's table).
      if (k == 1) {
        if (b == 0xe0 && c < 0xa0) return i;
        if (b == 0xed && c > 0x9f) return i;
        if (b == 0xf0 && c < 0x90) return i;
        if (b == 0xf4 && c > 0x8f) return i;
      }
    }
    if (k < n) return i;  // truncated: valid so far, not complete
    FUZZ_CHECK(cp >= 0x80 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff));
    i += n;
  }
  return i;
}

// Whether the bytes from `at` on are a proper prefix of some well-formed character: some
// continuation bytes complete them (these four values meet every second-byte range of the table).
bool completes(std::string& rest, int more) {
  if (reference_prefix(rest) == rest.size()) return true;
  if (more == 0) return false;
  for (uint8_t c : {0x80, 0x90, 0xa0, 0xbf}) {
    rest.push_back(char(c));
    bool ok = completes(rest, more - 1);
    rest.pop_back();
    if (ok) return true;
  }
  return false;
}

bool truncated_ok(std::string_view s, size_t at) {
  std::string rest(s.substr(at));
  if (rest.empty() || rest.size() >= 4) return false;
  return completes(rest, int(4 - rest.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view in = warren::fuzz::as_text(data + 1, size - 1);
  size_t good = reference_prefix(in);
  const bool valid = good == in.size();
  FUZZ_CHECK(is_valid_utf8(in) == valid);

  // Byte at a time: fails exactly at the first byte that cannot belong to a well-formed sequence.
  utf8_validator v;
  size_t failed_at = in.size();
  for (size_t i = 0; i < in.size(); ++i)
    if (!v.feed_byte(uint8_t(in[i]))) {
      failed_at = i;
      break;
    }
  if (failed_at < in.size()) {
    FUZZ_CHECK(!valid);
    FUZZ_CHECK(v.failed());
  } else {
    // Never failed: everything after the last whole character is a valid beginning.
    FUZZ_CHECK(v.complete() == valid);
    if (!valid) FUZZ_CHECK(truncated_ok(in, good));
  }

  // In pieces: the same verdict, and failure from the same byte on.
  utf8_validator w;
  size_t fed = 0;
  bool ok = true;
  for (std::string_view piece : warren::fuzz::split(in, data[0])) {
    bool now_ok = w.feed(piece);
    if (ok && !now_ok) FUZZ_CHECK(failed_at >= fed && failed_at < fed + piece.size());
    ok = now_ok;
    fed += piece.size();
  }
  FUZZ_CHECK(ok == (failed_at == in.size()));
  FUZZ_CHECK(w.complete() == valid);
  return 0;
}
