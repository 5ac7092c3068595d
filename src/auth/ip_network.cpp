// CIDR parsing and matching, on v4-mapped IPv6 so that one code path serves both families.
#include "auth/ip_network.hpp"

#include <charconv>
#include <string>

namespace warren::auth {

namespace {

boost::asio::ip::address_v6 to_v6(const boost::asio::ip::address& a) {
  if (a.is_v4()) return boost::asio::ip::make_address_v6(boost::asio::ip::v4_mapped, a.to_v4());
  return a.to_v6();
}

}  // namespace

bool ip_network::contains(const boost::asio::ip::address& a) const {
  auto x = to_v6(a).to_bytes();
  auto b = base.to_bytes();
  unsigned bits = prefix;
  for (size_t i = 0; i < 16 && bits > 0; ++i) {
    unsigned take = bits >= 8 ? 8 : bits;
    uint8_t mask = uint8_t(0xff << (8 - take));
    if ((x[i] & mask) != (b[i] & mask)) return false;
    bits -= take;
  }
  return true;
}

std::optional<ip_network> parse_ip_network(std::string_view text) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  std::string_view addr = text;
  std::optional<unsigned> prefix;
  if (size_t slash = text.find('/'); slash != std::string_view::npos) {
    addr = text.substr(0, slash);
    std::string_view p = text.substr(slash + 1);
    unsigned v = 0;
    auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    if (ec != std::errc() || ptr != p.data() + p.size()) return std::nullopt;
    prefix = v;
  }
  boost::system::error_code ec;
  auto a = boost::asio::ip::make_address(std::string(addr), ec);
  if (ec) return std::nullopt;
  unsigned max = a.is_v4() ? 32 : 128;
  unsigned p = prefix.value_or(max);
  if (p > max) return std::nullopt;
  return ip_network{to_v6(a), a.is_v4() ? p + 96 : p};
}

std::optional<std::vector<ip_network>> parse_ip_networks(std::string_view text) {
  std::vector<ip_network> out;
  while (!text.empty()) {
    size_t comma = text.find(',');
    auto n = parse_ip_network(text.substr(0, comma));
    if (!n) return std::nullopt;
    out.push_back(*n);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

bool in_any(const std::vector<ip_network>& nets, const boost::asio::ip::address& a) {
  for (const auto& n : nets)
    if (n.contains(a)) return true;
  return false;
}

}  // namespace warren::auth
