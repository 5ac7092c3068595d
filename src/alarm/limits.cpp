// Size and fraction parsing for the alarm settings.
#include "alarm/limits.hpp"

#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

namespace warren::alarm {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

// The multiplier a unit stands for, or 0 when it is not one.
uint64_t unit_multiplier(std::string_view unit) {
  if (unit.empty()) return 1;
  int power = 0;
  switch (std::tolower(static_cast<unsigned char>(unit.front()))) {
    case 'k':
      power = 1;
      break;
    case 'm':
      power = 2;
      break;
    case 'g':
      power = 3;
      break;
    case 't':
      power = 4;
      break;
    default:
      return 0;
  }
  std::string_view rest = unit.substr(1);
  uint64_t base;
  if (rest.empty() || iequals(rest, "ib"))
    base = 1024;
  else if (iequals(rest, "b"))
    base = 1000;
  else
    return 0;
  uint64_t m = 1;
  for (int i = 0; i < power; ++i) m *= base;
  return m;
}

}  // namespace

std::optional<uint64_t> parse_size(std::string_view text) {
  text = trim(text);
  uint64_t number = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (ec != std::errc() || end == text.data()) return std::nullopt;
  uint64_t mult = unit_multiplier(trim(text.substr(size_t(end - text.data()))));
  if (mult == 0) return std::nullopt;
  if (number > std::numeric_limits<uint64_t>::max() / mult) return std::nullopt;
  return number * mult;
}

std::optional<double> parse_fraction(std::string_view text) {
  text = trim(text);
  // A digit or a point first: no sign, no "inf" or "nan".
  if (text.empty() || !(std::isdigit(static_cast<unsigned char>(text[0])) || text[0] == '.'))
    return std::nullopt;
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v) || v < 0.0 ||
      v > 1.0)
    return std::nullopt;
  return v;
}

std::string describe_size(uint64_t bytes) {
  if (bytes < 1024) return fmt::format("{} bytes", bytes);
  static constexpr const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = double(bytes) / 1024;
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  return fmt::format("{:.1f} {} ({} bytes)", v, units[u], bytes);
}

}  // namespace warren::alarm
