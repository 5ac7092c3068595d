// Address ranges (CIDR) for the loopback rule: which peers count as "local" for loopback-only
// users.
#pragma once

#include <boost/asio/ip/address.hpp>

#include <optional>
#include <string_view>
#include <vector>

namespace warren::auth {

struct ip_network {
  boost::asio::ip::address_v6 base;  // IPv4 ranges are kept as v4-mapped v6
  unsigned prefix = 128;             // in v6 bits (an IPv4 /8 is stored as /104)

  bool contains(const boost::asio::ip::address& a) const;
};

// "127.0.0.0/8", "::1/128", "10.1.2.3" (a single host). nullopt if malformed.
std::optional<ip_network> parse_ip_network(std::string_view text);
// Comma-separated list; nullopt if any element is malformed.
std::optional<std::vector<ip_network>> parse_ip_networks(std::string_view text);

bool in_any(const std::vector<ip_network>& nets, const boost::asio::ip::address& a);

}  // namespace warren::auth
