// The table in utf8.hpp as a transition table built at compile time, with a fast path that
// skips eight ASCII bytes at a time (chat text is mostly ASCII).
#include "common/utf8.hpp"

#include <array>
#include <cstring>

namespace warren::common {
namespace {

using st = utf8_validator::state;

constexpr st next(st s, uint8_t b) {
  const bool cont = b >= 0x80 && b <= 0xbf;
  switch (s) {
    case st::accept:
      if (b <= 0x7f) return st::accept;
      if (b >= 0xc2 && b <= 0xdf) return st::tail1;
      if (b == 0xe0) return st::after_e0;
      if (b == 0xed) return st::after_ed;
      if (b >= 0xe1 && b <= 0xef) return st::tail2;
      if (b == 0xf0) return st::after_f0;
      if (b >= 0xf1 && b <= 0xf3) return st::tail3;
      if (b == 0xf4) return st::after_f4;
      return st::reject;  // 80..C1 and F5..FF
    case st::tail1:
      return cont ? st::accept : st::reject;
    case st::tail2:
      return cont ? st::tail1 : st::reject;
    case st::tail3:
      return cont ? st::tail2 : st::reject;
    case st::after_e0:
      return b >= 0xa0 && b <= 0xbf ? st::tail1 : st::reject;
    case st::after_ed:
      return b >= 0x80 && b <= 0x9f ? st::tail1 : st::reject;
    case st::after_f0:
      return b >= 0x90 && b <= 0xbf ? st::tail2 : st::reject;
    case st::after_f4:
      return b >= 0x80 && b <= 0x8f ? st::tail2 : st::reject;
    case st::reject:
      return st::reject;
  }
  return st::reject;
}

constexpr size_t states = size_t(st::reject) + 1;

constexpr std::array<st, states * 256> build_table() {
  std::array<st, states * 256> t{};
  for (size_t s = 0; s < states; ++s)
    for (size_t b = 0; b < 256; ++b) t[s * 256 + b] = next(st(s), uint8_t(b));
  return t;
}

constexpr auto table = build_table();

}  // namespace

utf8_validator::state utf8_validator::step(state s, uint8_t b) {
  return table[size_t(s) * 256 + b];
}

bool utf8_validator::feed(const uint8_t* p, size_t n) {
  state s = state_;
  size_t i = 0;
  while (i < n) {
    if (s == st::accept) {
      // Eight ASCII bytes at a time while at a character boundary.
      while (n - i >= 8) {
        uint64_t w;
        std::memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull) break;
        i += 8;
      }
      if (i == n) break;
    }
    s = table[size_t(s) * 256 + p[i]];
    if (s == st::reject) break;
    ++i;
  }
  state_ = s;
  return s != st::reject;
}

bool is_valid_utf8(std::string_view s) {
  utf8_validator v;
  return v.feed(s) && v.complete();
}

}  // namespace warren::common
