// permessage-deflate without context takeover: the RFC 7692 examples, round trips, the size
// limit (zip bombs), corrupt data, and independence of successive messages.
#include <gtest/gtest.h>

#include <random>

#include "web/ws_deflate.hpp"

namespace warren::web {
namespace {

using status = ws_deflate::inflate_status;

TEST(WsDeflate, Rfc7692Examples) {
  ws_deflate z;
  std::string out;
  // 7.2.3.1: "Hello" compressed.
  EXPECT_EQ(z.decompress(std::string("\xf2\x48\xcd\xc9\xc9\x07\x00", 7), 100, out), status::ok);
  EXPECT_EQ(out, "Hello");
  // 7.2.3.3: "Hello" in a stored (uncompressed) block.
  EXPECT_EQ(z.decompress(std::string("\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00", 11), 100, out),
            status::ok);
  EXPECT_EQ(out, "Hello");
  // 7.2.3.4: a block with BFINAL set, then the 0x00 that starts an empty stored block.
  EXPECT_EQ(z.decompress(std::string("\xf3\x48\xcd\xc9\xc9\x07\x00\x00", 8), 100, out), status::ok);
  EXPECT_EQ(out, "Hello");
  // The same without the 0x00: the tail is then not needed.
  EXPECT_EQ(z.decompress(std::string("\xf3\x48\xcd\xc9\xc9\x07\x00", 7), 100, out), status::ok);
  EXPECT_EQ(out, "Hello");
  // 7.2.3.5: two DEFLATE blocks in one message ("He", a sync flush, then "llo").
  EXPECT_EQ(z.decompress(std::string("\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9\x07\x00", 13),
                         100, out),
            status::ok);
  EXPECT_EQ(out, "Hello");
  // 7.2.3.6: an empty message may be the single byte 0x00.
  EXPECT_EQ(z.decompress(std::string(1, '\0'), 100, out), status::ok);
  EXPECT_EQ(out, "");
  // Our compressor writes "Hello" as the RFC's first example does.
  std::string c;
  z.compress("Hello", c);
  EXPECT_EQ(c, std::string("\xf2\x48\xcd\xc9\xc9\x07\x00", 7));
  c.clear();
  z.compress("", c);
  EXPECT_EQ(c, std::string(1, '\0'));
}

TEST(WsDeflate, RoundTripsOfManySizes) {
  ws_deflate z;
  std::mt19937 rng(7);
  for (size_t n : {0, 1, 2, 100, 1000, 32768, 65536, 100000, 1 << 20}) {
    for (bool random : {false, true}) {
      std::string msg(n, 'a');
      for (size_t i = 0; i < n; ++i) msg[i] = random ? char(rng()) : char('a' + i % 13);
      std::string c, back;
      z.compress(msg, c);
      ASSERT_GE(c.size(), 1u);
      ASSERT_EQ(z.decompress(c, n, back), status::ok) << n;
      EXPECT_EQ(back, msg);
    }
  }
}

TEST(WsDeflate, NoContextTakeover) {
  // The same message compresses to the same bytes every time: no window from earlier messages.
  ws_deflate z;
  std::string a, b, other;
  z.compress("the same message, the same message", a);
  z.compress("something else entirely", other);
  z.compress("the same message, the same message", b);
  EXPECT_EQ(a, b);
  // And each compressed message inflates on a fresh decompressor.
  ws_deflate fresh;
  std::string out;
  EXPECT_EQ(fresh.decompress(b, 1000, out), status::ok);
  EXPECT_EQ(out, "the same message, the same message");
}

TEST(WsDeflate, LimitStopsZipBombs) {
  ws_deflate z;
  std::string bomb;
  z.compress(std::string(50u << 20, '\0'), bomb);  // 50 MB of zeros
  EXPECT_LT(bomb.size(), 100000u);
  std::string out;
  EXPECT_EQ(z.decompress(bomb, 1 << 20, out), status::too_big);
  EXPECT_LE(out.size(), (1u << 20) + 1);  // work stopped at the limit
  // Exactly at the limit, and one byte over.
  std::string exact;
  z.compress(std::string(5000, 'x'), exact);
  EXPECT_EQ(z.decompress(exact, 5000, out), status::ok);
  EXPECT_EQ(out.size(), 5000u);
  EXPECT_EQ(z.decompress(exact, 4999, out), status::too_big);
  EXPECT_EQ(z.decompress(exact, 0, out), status::too_big);
}

TEST(WsDeflate, CorruptData) {
  ws_deflate z;
  std::string out;
  EXPECT_EQ(z.decompress(std::string("\xff\xff\xff", 3), 1000, out), status::invalid);
  // Bad data after a final block (a reserved block type).
  EXPECT_EQ(z.decompress(std::string("\xf3\x48\xcd\xc9\xc9\x07\x00\xff", 8), 1000, out),
            status::invalid);
  // A stored block whose length check (NLEN) is wrong.
  EXPECT_EQ(z.decompress(std::string("\x00\x05\x00\xfb\xff\x48\x65\x6c\x6c\x6f", 10), 100, out),
            status::invalid);
  // The decompressor recovers for the next message.
  std::string c;
  z.compress("fine", c);
  EXPECT_EQ(z.decompress(c, 100, out), status::ok);
  EXPECT_EQ(out, "fine");
}

}  // namespace
}  // namespace warren::web
