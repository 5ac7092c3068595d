// Fuzzes the SASL responses of connection.start-ok (auth/sasl): PLAIN and AMQPLAIN; bit 0 of the
// first byte picks the mechanism (and the rest goes to both parsers through parse_response too).
// Checks: credentials that come out have a user name; written back in the mechanism's own form
// they parse to the same credentials.
#include <string>

#include "auth/sasl.hpp"
#include "common/byte_io.hpp"
#include "fuzz_support.hpp"

using namespace warren::auth;

namespace {

bool same(const credentials& a, const credentials& b) {
  return a.username == b.username && a.password == b.password;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view in = warren::fuzz::as_text(data + 1, size - 1);
  std::string_view mech = (data[0] & 1) ? "AMQPLAIN" : "PLAIN";
  FUZZ_CHECK(is_offered_mechanism(mech));
  auto c = parse_response(mech, in);
  (void)parse_response("EXTERNAL", in);
  if (!c) return 0;
  FUZZ_CHECK(!c->username.empty());
  if (mech == "PLAIN") {
    FUZZ_CHECK(c->username.find('\0') == std::string::npos);
    std::string again = std::string(1, '\0') + c->username + '\0' + c->password;
    auto back = parse_plain(again);
    FUZZ_CHECK(back && same(*back, *c));
  } else {
    std::string again;
    warren::common::byte_writer w(again);
    for (auto [key, value] :
         {std::pair<std::string_view, const std::string*>{"LOGIN", &c->username},
          {"PASSWORD", &c->password}}) {
      w.u8(uint8_t(key.size()));
      w.bytes(key);
      w.u8('S');
      w.u32(uint32_t(value->size()));
      w.bytes(*value);
    }
    auto back = parse_amqplain(again);
    FUZZ_CHECK(back && same(*back, *c));
  }
  return 0;
}
