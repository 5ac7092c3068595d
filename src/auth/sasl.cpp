// SASL response parsing. AMQPLAIN is parsed here with a minimal table walk rather than the AMQP
// codec so that auth does not depend on the protocol module; it accepts the string types
// clients send (S, and x for byte arrays) and skips nothing else.
#include "auth/sasl.hpp"

#include "common/byte_io.hpp"

namespace warren::auth {

bool is_offered_mechanism(std::string_view mechanism) {
  return mechanism == "PLAIN" || mechanism == "AMQPLAIN";
}

std::optional<credentials> parse_plain(std::string_view response) {
  size_t a = response.find('\0');
  if (a == std::string_view::npos) return std::nullopt;
  size_t b = response.find('\0', a + 1);
  if (b == std::string_view::npos) return std::nullopt;
  std::string_view authzid = response.substr(0, a);
  credentials c{std::string(response.substr(a + 1, b - a - 1)),
                std::string(response.substr(b + 1))};
  if (!authzid.empty() && authzid != c.username) return std::nullopt;
  if (c.username.empty()) return std::nullopt;
  return c;
}

std::optional<credentials> parse_amqplain(std::string_view response) {
  common::byte_reader r(response.data(), response.size());
  std::optional<std::string> login, password;
  while (r.remaining() > 0) {
    uint8_t klen = r.u8();
    std::string_view key = r.bytes(klen);
    char tag = char(r.u8());
    std::string value;
    if (tag == 'S' || tag == 'x') {
      uint32_t n = r.u32();
      value = std::string(r.bytes(n));
    } else if (tag == 's') {  // some old clients send short strings with the 0-9-1 spec's tag
      uint8_t n = r.u8();
      value = std::string(r.bytes(n));
    } else {
      return std::nullopt;
    }
    if (!r.ok()) return std::nullopt;
    if (key == "LOGIN") login = std::move(value);
    if (key == "PASSWORD") password = std::move(value);
  }
  if (!r.ok() || !login || !password || login->empty()) return std::nullopt;
  return credentials{std::move(*login), std::move(*password)};
}

std::optional<credentials> parse_response(std::string_view mechanism, std::string_view response) {
  if (mechanism == "PLAIN") return parse_plain(response);
  if (mechanism == "AMQPLAIN") return parse_amqplain(response);
  return std::nullopt;
}

}  // namespace warren::auth
