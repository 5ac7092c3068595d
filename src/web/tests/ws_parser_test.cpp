// The frame parser against the Autobahn TestSuite's case groups (the suite needs Python 2 and
// cannot run here): 1.x framing, 2.x ping/pong, 3.x reserved bits, 4.x opcodes,
// 5.x fragmentation, 6.x UTF-8, 7.x close, 9.x limits, 12.x/13.x permessage-deflate. Every
// input is also parsed one byte at a time and split in two at every offset.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "web/ws_deflate.hpp"
#include "web/ws_parser.hpp"
#include "ws_test_support.hpp"

namespace warren::web {
namespace {

using namespace test;
using events = std::vector<std::string>;

const ws_parser_options plain{};

std::string repeat(char c, size_t n) {
  return std::string(n, c);
}

// ---- 1.x framing --------------------------------------------------------------------------

TEST(WsFraming, TextAndBinaryOfEveryLengthForm) {  // 1.1.1-1.1.6, 1.2.1-1.2.6
  for (size_t n : {0, 1, 125, 126, 127, 128, 1000, 65535, 65536}) {
    std::string payload = repeat('*', n);
    EXPECT_EQ(parse_with(plain, text(payload), {payload.size() + 14}), events{"text:" + payload});
    std::string bin(n, '\xfe');
    EXPECT_EQ(parse_with(plain, binary(bin), {bin.size() + 14}), events{"binary:" + bin});
  }
}

TEST(WsFraming, EveryLengthFormAtEverySplit) {
  for (size_t n : {0, 125, 126, 300}) {
    std::string payload = repeat('x', n);
    expect_every_split(plain, text(payload), {"text:" + payload});
    expect_every_split(plain, binary(payload), {"binary:" + payload});
  }
}

TEST(WsFraming, LargeFrameInChunksOf997) {  // 1.1.8, 1.2.8
  std::string payload = repeat('*', 65536);
  EXPECT_EQ(parse_with(plain, text(payload), {997}), events{"text:" + payload});
  EXPECT_EQ(parse_with(plain, binary(payload), {997}), events{"binary:" + payload});
}

TEST(WsFraming, SeveralFramesInOneRead) {
  std::string wire = text("a") + binary("bc") + ping("p") + text("") + pong("q");
  expect_every_split(plain, wire, {"text:a", "binary:bc", "ping:p", "text:", "pong:q"});
}

TEST(WsFraming, PayloadIsUnmaskedWithTheFramesKey) {
  // The RFC 6455 5.7 example: a masked "Hello" with key 37 fa 21 3d.
  std::string wire("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11);
  expect_every_split(plain, wire, {"text:Hello"});
}

TEST(WsFraming, UnmaskedClientFrameIsAProtocolError) {
  std::string wire("\x81\x05Hello", 7);  // RFC 6455 5.7, the unmasked example
  expect_every_split(plain, wire, {"error:1002"});
}

TEST(WsFraming, LengthMustBeInShortestForm) {
  std::string w16, w64;
  ws_append_client_frame(w16, ws_opcode::text, "short", key, true, false, 2);
  ws_append_client_frame(w64, ws_opcode::text, repeat('a', 200), key, true, false, 8);
  expect_every_split(plain, w16, {"error:1002"});
  expect_every_split(plain, w64, {"error:1002"});
  // A 64-bit length is fine above 65535.
  std::string ok;
  ws_append_client_frame(ok, ws_opcode::binary, repeat('b', 70000), key, true, false, 8);
  EXPECT_EQ(parse_with(plain, ok, {4096}), events{"binary:" + repeat('b', 70000)});
}

TEST(WsFraming, SixtyFourBitLengthWithTopBitSetFailsFromTheHeader) {
  std::string wire("\x82\xff\x80\x00\x00\x00\x00\x00\x00\x01", 10);
  // No key and no payload needed: the length alone is refused.
  expect_every_split(plain, wire, {"error:1002"});
}

TEST(WsFraming, HeaderAloneNeedsMore) {
  // Each prefix of a frame is "need more", consuming nothing.
  std::string wire = text(repeat('z', 300));
  for (size_t k = 0; k < wire.size(); ++k) {
    ws_parser p;
    std::string part = wire.substr(0, k);
    auto r = p.parse({reinterpret_cast<uint8_t*>(part.data()), part.size()});
    EXPECT_EQ(r.event.kind, ws_event_kind::need_more) << k;
    EXPECT_EQ(r.consumed, 0u) << k;
  }
}

TEST(WsFraming, ConsumedCountsWholeFramesOnly) {
  std::string wire = text("one") + text("two");
  std::string partial = wire + text("three").substr(0, 4);
  ws_parser p;
  std::span<uint8_t> all(reinterpret_cast<uint8_t*>(partial.data()), partial.size());
  auto r1 = p.parse(all);
  EXPECT_EQ(describe(r1.event), "text:one");
  EXPECT_EQ(r1.consumed, text("one").size());
  auto r2 = p.parse(all.subspan(r1.consumed));
  EXPECT_EQ(describe(r2.event), "text:two");
  auto r3 = p.parse(all.subspan(r1.consumed + r2.consumed));
  EXPECT_EQ(r3.event.kind, ws_event_kind::need_more);
  EXPECT_EQ(r3.consumed, 0u);
}

TEST(WsFraming, ParserStateIsSmall) {
  // Part of the 2 KB budget per idle WebSocket user.
  EXPECT_LE(sizeof(ws_parser), 64u);
}

// ---- 2.x ping and pong --------------------------------------------------------------------

TEST(WsPingPong, PingsAndPongsWithPayloads) {  // 2.1-2.4, 2.7, 2.8
  expect_every_split(plain, ping(), {"ping:"});
  expect_every_split(plain, ping("Hello, world!"), {"ping:Hello, world!"});
  std::string bin("\x00\xff\xfe\xfd\xfc\xfb\x00\xff", 8);
  expect_every_split(plain, ping(bin), {"ping:" + bin});
  expect_every_split(plain, ping(repeat('*', 125)), {"ping:" + repeat('*', 125)});
  expect_every_split(plain, pong(), {"pong:"});
  expect_every_split(plain, pong("unsolicited"), {"pong:unsolicited"});
}

TEST(WsPingPong, PingOver125BytesIsAProtocolError) {  // 2.5
  std::string wire = frame(ws_opcode::ping, repeat('*', 126));
  expect_every_split(plain, wire, {"error:1002"});
}

TEST(WsPingPong, UnsolicitedPongThenPing) {  // 2.9
  expect_every_split(plain, pong("unsolicited") + ping("ping"), {"pong:unsolicited", "ping:ping"});
}

TEST(WsPingPong, TenPingsInARow) {  // 2.10, 2.11
  std::string wire;
  events expect;
  for (int i = 0; i < 10; ++i) {
    wire += ping("payload-" + std::to_string(i));
    expect.push_back("ping:payload-" + std::to_string(i));
  }
  expect_every_split(plain, wire, expect);
}

// ---- 3.x reserved bits --------------------------------------------------------------------

TEST(WsReservedBits, AnyReservedBitWithoutExtensionIsAProtocolError) {  // 3.1-3.7
  for (uint8_t rsv = 1; rsv <= 7; ++rsv) {
    for (ws_opcode op : {ws_opcode::text, ws_opcode::binary, ws_opcode::ping, ws_opcode::close}) {
      std::string bad = raw(uint8_t(0x80 | rsv << 4 | uint8_t(op)), "Hello");
      expect_every_split(plain, bad, {"error:1002"});
    }
  }
}

TEST(WsReservedBits, FramesBeforeTheBadOneAreDelivered) {  // 3.2, 3.3
  std::string wire = text("Hello") + raw(0xa1, "Hello") + ping();
  expect_every_split(plain, wire, {"text:Hello", "error:1002"});
}

// ---- 4.x opcodes --------------------------------------------------------------------------

TEST(WsOpcodes, ReservedOpcodesAreProtocolErrors) {  // 4.1.1-4.2.5
  for (uint8_t op : {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf}) {
    expect_every_split(plain, raw(uint8_t(0x80 | op), ""), {"error:1002"});
    expect_every_split(plain, raw(uint8_t(0x80 | op), "reserved"), {"error:1002"});
    expect_every_split(plain, text("Hello") + raw(uint8_t(0x80 | op), "x") + ping(),
                       {"text:Hello", "error:1002"});
  }
}

// ---- 5.x fragmentation --------------------------------------------------------------------

TEST(WsFragmentation, FragmentedControlFramesAreProtocolErrors) {  // 5.1, 5.2
  expect_every_split(plain, frame(ws_opcode::ping, "frag1", false) + cont("frag2"), {"error:1002"});
  expect_every_split(plain, frame(ws_opcode::pong, "frag1", false) + cont("frag2"), {"error:1002"});
  expect_every_split(plain, frame(ws_opcode::close, close_payload(1000), false), {"error:1002"});
}

TEST(WsFragmentation, MessagesInFragments) {  // 5.3-5.5, 5.19
  expect_every_split(plain, text("frag1", false) + cont("frag2"), {"text:frag1frag2"});
  expect_every_split(plain, binary("a", false) + cont("", false) + cont("b", false) + cont("c"),
                     {"binary:abc"});
  expect_every_split(plain, text("", false) + cont("", false) + cont(""), {"text:"});
}

TEST(WsFragmentation, ControlFramesBetweenFragmentsArriveAtOnce) {  // 5.6-5.8, 5.19, 5.20
  std::string wire = text("fragment1", false) + ping("p1") + cont("fragment2", false) + pong("q") +
                     ping("p2") + cont("fragment3");
  expect_every_split(plain, wire,
                     {"ping:p1", "pong:q", "ping:p2", "text:fragment1fragment2fragment3"});
  // A close between fragments ends everything, the half message included.
  expect_every_split(plain, text("half", false) + close(1000) + cont("rest"), {"close:1000:"});
}

TEST(WsFragmentation, ContinuationWithoutAMessageIsAProtocolError) {  // 5.9-5.14
  for (bool fin : {true, false}) {
    expect_every_split(plain, cont("non-continuation payload", fin) + text("Hello"),
                       {"error:1002"});
    expect_every_split(plain, text("done") + cont("late", fin), {"text:done", "error:1002"});
  }
}

TEST(WsFragmentation, NewDataFrameInsideAMessageIsAProtocolError) {  // 5.15-5.18
  expect_every_split(plain, text("fragment1", false) + text("fragment2"), {"error:1002"});
  expect_every_split(plain, text("fragment1", false) + binary("fragment2", false), {"error:1002"});
  expect_every_split(
      plain, binary("a", false) + cont("b") + text("c", false) + cont("d", false) + text("e"),
      {"binary:ab", "error:1002"});
}

TEST(WsFragmentation, ManySmallFragments) {
  std::string wire;
  std::string whole;
  for (int i = 0; i < 200; ++i) {
    std::string part = std::to_string(i) + ",";
    whole += part;
    wire += i == 0 ? text(part, false) : cont(part, i == 199);
  }
  EXPECT_EQ(parse_with(plain, wire, {1}), events{"text:" + whole});
  EXPECT_EQ(parse_with(plain, wire, {7}), events{"text:" + whole});
  EXPECT_EQ(parse_with(plain, wire, {wire.size()}), events{"text:" + whole});
}

// ---- 6.x UTF-8 ----------------------------------------------------------------------------

// "Hello-µ@ßöäüàá-UTF-8!!" (6.2.x) and "κόσμε" (6.5.x).
const std::string hello_utf8 =
    "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!";
const std::string kosme = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";

TEST(WsUtf8, ValidTextInOneFrame) {  // 6.1, 6.2.1, 6.5.1
  expect_every_split(plain, text(hello_utf8), {"text:" + hello_utf8});
  expect_every_split(plain, text(kosme), {"text:" + kosme});
  std::string edges =
      "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f"
      "\xbf\xbf";  // boundaries: U+007F, 0080, 07FF, 0800, D7FF, E000, FFFF, 10000, 10FFFF
  expect_every_split(plain, text(edges), {"text:" + edges});
}

TEST(WsUtf8, ValidTextSplitIntoTwoFragmentsAtEveryByte) {  // 6.2.2, 6.5.2-6.5.5
  for (const std::string& s : {hello_utf8, kosme}) {
    for (size_t k = 0; k <= s.size(); ++k) {
      std::string wire = text(s.substr(0, k), false) + cont(s.substr(k));
      EXPECT_EQ(parse_with(plain, wire, {wire.size()}), events{"text:" + s}) << k;
      EXPECT_EQ(parse_with(plain, wire, {1}), events{"text:" + s}) << k;
    }
  }
}

TEST(WsUtf8, ValidTextOneByteFramesOfOneFragmentEach) {  // 6.2.3, 6.2.4
  for (const std::string& s : {hello_utf8, kosme}) {
    std::string wire;
    for (size_t i = 0; i < s.size(); ++i)
      wire += i == 0 ? text(s.substr(i, 1), false) : cont(s.substr(i, 1), i + 1 == s.size());
    expect_every_split(plain, wire, {"text:" + s});
  }
}

// The classic invalid sequences (Markus Kuhn's test file, which Autobahn 6.3-6.21 uses).
const std::vector<std::string> invalid_sequences = {
    // 6.3.1: "κόσμε" then a surrogate, then "edited"
    "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
    // lone continuation bytes
    "\x80",
    "\xbf",
    "\x80\xbf",
    "\x80\xbf\x80",
    // lead bytes followed by a space
    "\xc0 ",
    "\xe0 ",
    "\xf0 ",
    "\xf8 ",
    "\xfc ",
    // truncated (and overlong leads)
    "\xc0",
    "\xe0\x80",
    "\xf0\x80\x80",
    // truncated at the end of the message
    "\xdf",
    "\xef\xbf",
    "\xf7\xbf\xbf",
    // never in UTF-8
    "\xfe",
    "\xff",
    "\xfe\xfe\xff\xff",
    // overlong "/"
    "\xc0\xaf",
    "\xe0\x80\xaf",
    "\xf0\x80\x80\xaf",
    "\xf8\x80\x80\x80\xaf",
    // largest overlongs
    "\xc1\xbf",
    "\xe0\x9f\xbf",
    "\xf0\x8f\xbf\xbf",
    // overlong NUL
    "\xc0\x80",
    "\xe0\x80\x80",
    "\xf0\x80\x80\x80",
    // high and low surrogates, and surrogate pairs
    "\xed\xa0\x80",
    "\xed\xad\xbf",
    "\xed\xae\x80",
    "\xed\xaf\xbf",
    "\xed\xb0\x80",
    "\xed\xbe\x80",
    "\xed\xbf\xbf",
    "\xed\xa0\x80\xed\xb0\x80",
    "\xed\xaf\xbf\xed\xbf\xbf",
    // above U+10FFFF
    "\xf4\x90\x80\x80",
    "\xf5\x80\x80\x80",
    "\xf7\xbf\xbf\xbf",
    // 5- and 6-byte forms
    "\xfb\xbf\xbf\xbf\xbf",
    "\xfd\xbf\xbf\xbf\xbf\xbf",
    // cut before the end
    "\xe0\xa0",
};

TEST(WsUtf8, InvalidSequencesFailWith1007) {  // 6.3-6.21
  for (const std::string& bad : invalid_sequences) {
    SCOPED_TRACE(testing::PrintToString(bad));
    expect_every_split(plain, text(bad), {"error:1007"});
    expect_every_split(plain, text("ok " + bad + " tail"), {"error:1007"});
  }
}

TEST(WsUtf8, InvalidSequencesSplitAcrossFragmentsAtEveryByte) {  // 6.3.2
  for (const std::string& bad : invalid_sequences) {
    std::string s = "ab" + bad + "cd";
    for (size_t k = 0; k <= s.size(); ++k) {
      std::string wire = text(s.substr(0, k), false) + cont(s.substr(k));
      EXPECT_EQ(parse_with(plain, wire, {wire.size()}), events{"error:1007"}) << k;
      EXPECT_EQ(parse_with(plain, wire, {1}), events{"error:1007"}) << k;
    }
  }
}

TEST(WsUtf8, ValidMultiByteCharacterSplitAcrossFragmentsAtEveryByte) {
  for (std::string ch : {"\xc2\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf"}) {
    std::string s = "<" + ch + ">";
    for (size_t a = 0; a <= s.size(); ++a)
      for (size_t b = a; b <= s.size(); ++b) {
        std::string wire =
            text(s.substr(0, a), false) + cont(s.substr(a, b - a), false) + cont(s.substr(b));
        EXPECT_EQ(parse_with(plain, wire, {3}), events{"text:" + s}) << a << "," << b;
      }
  }
}

TEST(WsUtf8, FailFastOnTheFragmentThatBreaksIt) {  // 6.4.1, 6.4.2
  // Part 1 valid, part 2 carries 0x110000 (F4 90 80 80), part 3 never sent: the error comes
  // with part 2, not when the message would end.
  std::string wire = text(kosme, false) + cont("\xf4\x90\x80\x80", false);
  expect_every_split(plain, wire, {"error:1007"});
  // 6.4.2: the bad code point is split between fragments 1 and 2.
  expect_every_split(plain, text(kosme + "\xf4", false) + cont("\x90\x80\x80", false),
                     {"error:1007"});
}

TEST(WsUtf8, FailFastInsideAnIncompleteFrame) {  // 6.4.3, 6.4.4
  // One frame whose first bytes are already invalid: the parser fails before the rest arrives.
  std::string s = kosme + "\xf4\x90\x80\x80" + repeat('x', 1000);
  std::string wire = text(s);
  size_t invalid_at = wire.size() - s.size() + kosme.size() + 1;  // the 0x90 after F4
  for (size_t cut = 1; cut < wire.size(); ++cut) {
    ws_parser p;
    auto got = feed(p, wire.substr(0, cut), {cut}).events;
    if (cut <= invalid_at) {
      EXPECT_TRUE(got.empty()) << cut;
    } else {
      EXPECT_EQ(got, events{"error:1007"}) << cut;
    }
  }
}

TEST(WsUtf8, FailFastAtTheFirstBadByteWhenFedOneByteAtATime) {
  std::string s = "abc\xed\xa0\x80zzz";  // a surrogate: invalid at its second byte
  std::string wire = text(s);
  size_t bad = wire.size() - s.size() + 4;
  ws_parser p;
  std::string pending;
  for (size_t i = 0; i < wire.size(); ++i) {
    pending += wire[i];
    auto r = p.parse({reinterpret_cast<uint8_t*>(pending.data()), pending.size()});
    pending.erase(0, r.consumed);
    if (i < bad) {
      ASSERT_EQ(r.event.kind, ws_event_kind::need_more) << i;
    } else {
      ASSERT_EQ(describe(r.event), "error:1007") << i;
      break;
    }
  }
}

TEST(WsUtf8, BinaryIsNotChecked) {
  std::string bad = "\xff\xfe\xed\xa0\x80";
  expect_every_split(plain, binary(bad), {"binary:" + bad});
  expect_every_split(plain, binary("\xf0", false) + cont("\x9f"), {"binary:\xf0\x9f"});
}

TEST(WsUtf8, TextEndingInsideACharacterFails) {
  expect_every_split(plain, text("\xe2\x82", false) + cont(""), {"error:1007"});
  // ...but a later fragment may complete it.
  expect_every_split(plain, text("\xe2\x82", false) + cont("\xac"), {"text:\xe2\x82\xac"});
}

// ---- 7.x close ----------------------------------------------------------------------------

TEST(WsClose, EmptyCloseReportsNoStatus) {  // 7.3.1
  expect_every_split(plain, frame(ws_opcode::close, ""), {"close:1005:"});
}

TEST(WsClose, OneBytePayloadIsAProtocolError) {  // 7.3.2
  expect_every_split(plain, frame(ws_opcode::close, "\x03"), {"error:1002"});
}

TEST(WsClose, CodeAndReason) {  // 7.3.3-7.3.5
  expect_every_split(plain, close(1000), {"close:1000:"});
  expect_every_split(plain, close(1000, "Hello World!"), {"close:1000:Hello World!"});
  expect_every_split(plain, close(1000, repeat('*', 123)), {"close:1000:" + repeat('*', 123)});
}

TEST(WsClose, PayloadOver125BytesIsAProtocolError) {  // 7.3.6
  expect_every_split(plain, close(1000, repeat('*', 124)), {"error:1002"});
}

TEST(WsClose, ReasonMustBeUtf8) {  // 7.5.1
  expect_every_split(plain, close(1000, kosme + "\xed\xa0\x80" + "edited"), {"error:1007"});
}

TEST(WsClose, ValidCodes) {  // 7.7.1-7.7.13
  for (uint16_t code :
       {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999}) {
    expect_every_split(plain, close(code, "r"), {"close:" + std::to_string(code) + ":r"});
  }
}

TEST(WsClose, InvalidCodesAreProtocolErrors) {  // 7.9.1-7.9.9, 7.13.1, 7.13.2
  for (uint16_t code :
       {0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
    SCOPED_TRACE(code);
    expect_every_split(plain, close(code), {"error:1002"});
  }
}

TEST(WsClose, NothingAfterACloseIsRead) {  // 7.1.2-7.1.5
  expect_every_split(plain, close(1000) + close(1001), {"close:1000:"});
  expect_every_split(plain, close(1000) + ping("after"), {"close:1000:"});
  expect_every_split(plain, close(1000) + text("after"), {"close:1000:"});
  expect_every_split(plain, close(1000) + "garbage that is not a frame", {"close:1000:"});
  expect_every_split(plain, text("Hello") + close(1000), {"text:Hello", "close:1000:"});
  ws_parser p;
  std::string wire = close(1000) + text("x");
  std::span<uint8_t> b(reinterpret_cast<uint8_t*>(wire.data()), wire.size());
  auto r = p.parse(b);
  EXPECT_EQ(r.consumed, wire.size());
  EXPECT_TRUE(p.finished());
  auto again = p.parse(b);
  EXPECT_EQ(again.event.kind, ws_event_kind::need_more);
  EXPECT_EQ(again.consumed, wire.size());
}

TEST(WsClose, NothingAfterAnErrorIsRead) {
  ws_parser p;
  std::string wire = raw(0x83, "x") + text("after");
  std::span<uint8_t> b(reinterpret_cast<uint8_t*>(wire.data()), wire.size());
  auto r = p.parse(b);
  EXPECT_EQ(describe(r.event), "error:1002");
  EXPECT_STREQ(r.event.data.data(), "unknown opcode");
  EXPECT_TRUE(p.finished());
  EXPECT_EQ(p.parse(b).event.kind, ws_event_kind::need_more);
}

// ---- 9.x limits ---------------------------------------------------------------------------

TEST(WsLimits, MessageAtTheLimitPassesAndOneByteMoreFails) {
  ws_parser_options small;
  small.max_message_size = 1000;
  expect_every_split(small, text(repeat('a', 1000)), {"text:" + repeat('a', 1000)});
  expect_every_split(small, binary(repeat('a', 1001)), {"error:1009"});
  // Summed over fragments.
  expect_every_split(small, text(repeat('a', 600), false) + cont(repeat('b', 400)),
                     {"text:" + repeat('a', 600) + repeat('b', 400)});
  expect_every_split(small, text(repeat('a', 600), false) + cont(repeat('b', 401)), {"error:1009"});
  // Control frames do not count.
  expect_every_split(
      small, text(repeat('a', 600), false) + ping(repeat('p', 125)) + cont(repeat('b', 400)),
      {"ping:" + repeat('p', 125), "text:" + repeat('a', 600) + repeat('b', 400)});
}

TEST(WsLimits, OversizedFrameFailsFromItsHeaderAlone) {
  ws_parser_options small;
  small.max_message_size = 1 << 20;
  // A header announcing 16 MB, and no payload: refused at once, nothing is buffered.
  std::string h;
  ws_append_client_frame(h, ws_opcode::binary, "", key, true, false, 8);
  uint64_t n = 16u << 20;
  for (int i = 0; i < 8; ++i) h[2 + i] = char(n >> (56 - 8 * i));
  h.resize(10);
  expect_every_split(small, h, {"error:1009"});
}

TEST(WsLimits, LargeMessagesInVariousChunkings) {  // 9.1.x, 9.2.x, 9.4.x-9.6.x in spirit
  ws_parser_options big;
  big.max_message_size = 16u << 20;
  std::string payload(4u << 20, 'x');
  for (size_t i = 0; i < payload.size(); i += 4093) payload[i] = char('a' + i % 26);
  EXPECT_EQ(parse_with(big, text(payload), {65536}), events{"text:" + payload});
  EXPECT_EQ(parse_with(big, binary(payload), {1 << 20}), events{"binary:" + payload});
  std::string wire;
  for (size_t at = 0; at < payload.size(); at += 65536)
    wire += at == 0 ? text(payload.substr(at, 65536), false)
                    : cont(payload.substr(at, 65536), at + 65536 >= payload.size());
  EXPECT_EQ(parse_with(big, wire, {4000}), events{"text:" + payload});
}

// ---- 12.x/13.x permessage-deflate -----------------------------------------------------------

struct deflate_fixture : testing::Test {
  ws_deflate z;
  ws_parser_options opts() {
    ws_parser_options o;
    o.permessage_deflate = true;
    o.inflater = &z;
    o.max_message_size = 1 << 16;
    return o;
  }
  std::string compressed(std::string_view s) {
    std::string out;
    z.compress(s, out);
    return out;
  }
};

TEST_F(deflate_fixture, CompressedMessagesAreInflated) {
  std::string msg = "Hello, hello, hello, hello! " + repeat('w', 500);
  std::string c = compressed(msg);
  ASSERT_LT(c.size(), msg.size());
  expect_every_split(opts(), frame(ws_opcode::text, c, true, true), {"text:" + msg});
  expect_every_split(opts(), frame(ws_opcode::binary, c, true, true), {"binary:" + msg});
  // Uncompressed messages are still allowed on a deflate connection.
  expect_every_split(opts(), text("plain"), {"text:plain"});
  // The RFC 7692 7.2.3.1 example "Hello", and an empty message (7.2.3.6).
  expect_every_split(opts(), frame(ws_opcode::text, "\xf2\x48\xcd\xc9\xc9\x07\x00", true, true),
                     {"text:Hello"});
  expect_every_split(opts(), frame(ws_opcode::text, std::string(1, '\0'), true, true), {"text:"});
}

TEST_F(deflate_fixture, CompressedMessageInFragments) {  // 13.x with fragmentation
  std::string msg = repeat('a', 300) + hello_utf8 + repeat('b', 300);
  std::string c = compressed(msg);
  for (size_t k = 0; k <= c.size(); k += 3) {
    std::string wire =
        frame(ws_opcode::text, c.substr(0, k), false, true) + ping("between") + cont(c.substr(k));
    EXPECT_EQ(parse_with(opts(), wire, {wire.size()}), (events{"ping:between", "text:" + msg}));
    EXPECT_EQ(parse_with(opts(), wire, {5}), (events{"ping:between", "text:" + msg}));
  }
}

TEST_F(deflate_fixture, Rsv1OnlyOnTheFirstFrameOfADataMessage) {
  std::string c = compressed("xyz");
  // RSV1 on a continuation frame.
  expect_every_split(
      opts(),
      frame(ws_opcode::text, c, false, true) + frame(ws_opcode::continuation, "", true, true),
      {"error:1002"});
  // RSV1 on a control frame.
  expect_every_split(opts(), frame(ws_opcode::ping, "x", true, true), {"error:1002"});
  // RSV1 when deflate was not negotiated.
  expect_every_split(plain, frame(ws_opcode::text, c, true, true), {"error:1002"});
}

TEST_F(deflate_fixture, ZipBombIsMessageTooBig) {
  std::string bomb = compressed(std::string(10u << 20, '\0'));  // 10 MB of zeros, ~10 KB
  ASSERT_LT(bomb.size(), size_t(1 << 16));
  EXPECT_EQ(parse_with(opts(), frame(ws_opcode::binary, bomb, true, true), {bomb.size() + 20}),
            events{"error:1009"});
  // Exactly at the limit once inflated: fine.
  std::string at_limit = compressed(std::string(1 << 16, 'q'));
  EXPECT_EQ(parse_with(opts(), frame(ws_opcode::binary, at_limit, true, true), {100}),
            events{"binary:" + std::string(1 << 16, 'q')});
}

TEST_F(deflate_fixture, CorruptDataAndInvalidUtf8AfterInflating) {
  expect_every_split(opts(), frame(ws_opcode::text, "\xff\xff\xff\xff", true, true),
                     {"error:1007"});
  std::string bad_text = compressed("valid then \xed\xa0\x80 surrogate");
  expect_every_split(opts(), frame(ws_opcode::text, bad_text, true, true), {"error:1007"});
  // The same bytes as binary are fine.
  expect_every_split(opts(), frame(ws_opcode::binary, bad_text, true, true),
                     {"binary:valid then \xed\xa0\x80 surrogate"});
}

// ---- the client's side: frames from a server ----------------------------------------------

ws_parser_options server_frames() {
  ws_parser_options o;
  o.from_server = true;
  return o;
}

TEST(WsServerFrames, UnmaskedFramesOfEveryKindAtEverySplit) {
  std::string wire;
  ws_append_message(wire, ws_opcode::text, "{\"seq\":1}");
  ws_append_message(wire, ws_opcode::binary, repeat('b', 300));
  ws_append_frame(wire, ws_opcode::ping, "p");
  ws_append_message(wire, ws_opcode::text, "fragmented text", 4);
  ws_append_close(wire, ws_close::going_away, "bye");
  expect_every_split(server_frames(), wire,
                     {"text:{\"seq\":1}", "binary:" + repeat('b', 300), "ping:p",
                      "text:fragmented text", "close:1001:bye"});
}

TEST(WsServerFrames, MaskedFrameFromAServerIsAProtocolError) {
  expect_every_split(server_frames(), text("Hello"), {"error:1002"});
  // The RFC 6455 5.7 unmasked example is what a server sends.
  expect_every_split(server_frames(), std::string("\x81\x05Hello", 7), {"text:Hello"});
}

TEST(WsServerFrames, InvalidUtf8FromAServerFailsWith1007) {
  std::string wire;
  ws_append_message(wire, ws_opcode::text, "bad \xc3\x28 byte");
  expect_every_split(server_frames(), wire, {"error:1007"});
}

}  // namespace
}  // namespace warren::web
