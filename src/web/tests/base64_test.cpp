// Base64 and base64url: the RFC 4648 vectors, and the strictness the handshake and JWTs need.
#include <gtest/gtest.h>

#include "web/base64.hpp"

namespace warren::web {
namespace {

TEST(Base64, Rfc4648Vectors) {
  const std::pair<std::string, std::string> vectors[] = {{"", ""},
                                                         {"f", "Zg=="},
                                                         {"fo", "Zm8="},
                                                         {"foo", "Zm9v"},
                                                         {"foob", "Zm9vYg=="},
                                                         {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, enc] : vectors) {
    EXPECT_EQ(base64_encode(plain), enc);
    std::string back;
    ASSERT_TRUE(base64_decode(enc, back)) << enc;
    EXPECT_EQ(back, plain);
    std::string url = enc.substr(0, enc.find('='));
    EXPECT_EQ(base64url_encode(plain), url);
    ASSERT_TRUE(base64url_decode(url, back)) << url;
    EXPECT_EQ(back, plain);
  }
}

TEST(Base64, UrlAlphabet) {
  std::string bytes("\xfb\xff\xbf", 3);
  EXPECT_EQ(base64_encode(bytes), "+/+/");
  EXPECT_EQ(base64url_encode(bytes), "-_-_");
  std::string out;
  EXPECT_FALSE(base64url_decode("+/+/", out));
  EXPECT_FALSE(base64_decode("-_-_", out));
}

TEST(Base64, EveryByteValueRoundTrips) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += char(i);
  for (size_t n = 0; n <= all.size(); n += 37) {
    std::string s = all.substr(0, n), back;
    ASSERT_TRUE(base64_decode(base64_encode(s), back));
    EXPECT_EQ(back, s);
    ASSERT_TRUE(base64url_decode(base64url_encode(s), back));
    EXPECT_EQ(back, s);
  }
}

TEST(Base64, StrictDecoding) {
  std::string out;
  for (std::string_view bad : {"Zg", "Zg=", "Zg===", "Z===", "Zm9v YmFy", "Zm9v\n",
                               "Zh==", "Zm9=", "=Zm9", "Zm=v", "Zm9v!", "A"}) {
    EXPECT_FALSE(base64_decode(bad, out)) << bad;
  }
  for (std::string_view bad : {"Zg==", "Zg=", "Zh", "Zm9", "A", "Zm9v YmFy", "Zm.9"}) {
    EXPECT_FALSE(base64url_decode(bad, out)) << bad;
  }
}

}  // namespace
}  // namespace warren::web
