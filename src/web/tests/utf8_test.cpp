// The UTF-8 validator against an independent definition: a sequence is valid iff decoding it by
// arithmetic gives code points that are not surrogates, not above U+10FFFF, and encode back to
// the same bytes (no overlong forms). Checked exhaustively up to three bytes.
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "web/utf8.hpp"

namespace warren::web {
namespace {

std::string encode(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xc0 | cp >> 6);
    s += char(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    s += char(0xe0 | cp >> 12);
    s += char(0x80 | (cp >> 6 & 0x3f));
    s += char(0x80 | (cp & 0x3f));
  } else {
    s += char(0xf0 | cp >> 18);
    s += char(0x80 | (cp >> 12 & 0x3f));
    s += char(0x80 | (cp >> 6 & 0x3f));
    s += char(0x80 | (cp & 0x3f));
  }
  return s;
}

// The reference: decode by arithmetic, then demand the canonical re-encoding.
bool reference_valid(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    uint8_t b = uint8_t(s[i]);
    size_t n;
    uint32_t cp;
    if (b < 0x80) {
      n = 1, cp = b;
    } else if ((b & 0xe0) == 0xc0) {
      n = 2, cp = b & 0x1f;
    } else if ((b & 0xf0) == 0xe0) {
      n = 3, cp = b & 0x0f;
    } else if ((b & 0xf8) == 0xf0) {
      n = 4, cp = b & 0x07;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      uint8_t c = uint8_t(s[i + k]);
      if ((c & 0xc0) != 0x80) return false;
      cp = cp << 6 | (c & 0x3f);
    }
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    if (encode(cp) != s.substr(i, n)) return false;
    i += n;
  }
  return true;
}

TEST(Utf8, EveryCodePointIsValidExceptSurrogates) {
  utf8_validator v;
  for (uint32_t cp = 0; cp <= 0x10ffff; ++cp) {
    std::string s = encode(cp);
    bool surrogate = cp >= 0xd800 && cp <= 0xdfff;
    ASSERT_EQ(is_valid_utf8(s), !surrogate) << std::hex << cp;
  }
  // All of them in one stream, fed in uneven pieces.
  std::string all;
  for (uint32_t cp = 0; cp <= 0x10ffff; ++cp)
    if (cp < 0xd800 || cp > 0xdfff) all += encode(cp);
  for (size_t at = 0; at < all.size(); at += 7) ASSERT_TRUE(v.feed(all.substr(at, 7)));
  EXPECT_TRUE(v.complete());
}

TEST(Utf8, AllOneTwoAndThreeByteStringsMatchTheReference) {
  std::string s(3, '\0');
  for (uint32_t a = 0; a < 256; ++a) {
    s.resize(1);
    s[0] = char(a);
    ASSERT_EQ(is_valid_utf8(s), reference_valid(s)) << a;
    for (uint32_t b = 0; b < 256; ++b) {
      s.resize(2);
      s[1] = char(b);
      ASSERT_EQ(is_valid_utf8(s), reference_valid(s)) << a << " " << b;
      // Three bytes only where the first two can still start something (keeps it fast).
      utf8_validator v;
      if (!v.feed(s)) continue;
      s.resize(3);
      for (uint32_t c = 0; c < 256; ++c) {
        s[2] = char(c);
        ASSERT_EQ(is_valid_utf8(s), reference_valid(s)) << a << " " << b << " " << c;
      }
    }
  }
}

TEST(Utf8, FourByteLeadsWithEverySecondByte) {
  for (uint32_t a = 0xf0; a <= 0xff; ++a)
    for (uint32_t b = 0; b < 256; ++b)
      for (uint32_t c : {0x80u, 0xbfu, 0x41u})
        for (uint32_t d : {0x80u, 0xbfu, 0xc0u}) {
          std::string s{char(a), char(b), char(c), char(d)};
          ASSERT_EQ(is_valid_utf8(s), reference_valid(s)) << a << " " << b << " " << c << " " << d;
        }
}

TEST(Utf8, ClassicInvalidSequences) {
  for (std::string_view bad :
       {"\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xe0\x9f\xbf", "\xf0\x80\x80\x80",
        "\xf0\x8f\xbf\xbf",                                          // overlong
        "\xed\xa0\x80", "\xed\xbf\xbf", "\xed\xa0\x80\xed\xb0\x80",  // surrogates
        "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff",              // above U+10FFFF, never used
        "\x80", "\xbf", "\xc2", "\xe2\x82", "\xf0\x9f\x98"}) {       // stray and truncated
    EXPECT_FALSE(is_valid_utf8(bad)) << testing::PrintToString(bad);
  }
}

TEST(Utf8, StateCarriesAcrossPiecesSplitAtEveryByte) {
  std::string s = "a\xc2\xa9 b\xe2\x82\xac c\xf0\x9f\x98\x80 d\xf4\x8f\xbf\xbf";
  for (size_t k = 0; k <= s.size(); ++k) {
    utf8_validator v;
    EXPECT_TRUE(v.feed(s.substr(0, k)));
    EXPECT_TRUE(v.feed(s.substr(k)));
    EXPECT_TRUE(v.complete()) << k;
  }
}

TEST(Utf8, FailsAtTheFirstBadByte) {
  // The fast ASCII path must not skip past the error.
  std::string s = std::string(21, 'a') + "\xe0\x9f" + std::string(30, 'b');
  utf8_validator v;
  for (size_t i = 0; i < s.size(); ++i) {
    bool ok = v.feed_byte(uint8_t(s[i]));
    EXPECT_EQ(ok, i < 22) << i;
  }
  utf8_validator w;
  EXPECT_FALSE(w.feed(s));
  EXPECT_TRUE(w.failed());
  EXPECT_FALSE(w.feed("abc"));  // stays failed
}

TEST(Utf8, IncompleteIsNotFailed) {
  utf8_validator v;
  EXPECT_TRUE(v.feed("\xf0\x9f"));
  EXPECT_FALSE(v.complete());
  EXPECT_FALSE(v.failed());
  EXPECT_TRUE(v.feed("\x98\x80"));
  EXPECT_TRUE(v.complete());
}

}  // namespace
}  // namespace warren::web
