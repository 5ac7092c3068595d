// Message helpers.
#include "broker/message.hpp"

#include <charconv>

namespace warren::broker {

bool parse_expiration(const std::string& text, int64_t& ms) {
  if (text.empty() || text.size() > 18) return false;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
  return ec == std::errc() && p == text.data() + text.size() && ms >= 0;
}

}  // namespace warren::broker
