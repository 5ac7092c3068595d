// Source addresses for many connections to one server port. A TCP connection is unique by its
// (source address, source port, destination address, destination port), so one source address
// gives at most the ephemeral port range (about 28 000 here) towards one server port, and the
// gateway admits at most --web-max-connections-per-ip (default 1000) per address. Every address
// in 127.0.0.0/8 reaches the loopback interface, so the load tools spread their connections
// over 127.a.b.c: connection i gets address base + i / per_source, skipping addresses whose last
// byte is 0 or 255.
#pragma once

#include <boost/asio/ip/address_v4.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

#include <cstdint>
#include <string>

namespace warren::load {

class source_addresses {
 public:
  // Throws std::invalid_argument unless `base` is an IPv4 address in 127.0.0.0/8 and
  // per_source > 0.
  source_addresses(const std::string& base, uint32_t per_source);

  // The address for connection `index`; throws std::out_of_range past 127.255.255.254.
  boost::asio::ip::address_v4 for_connection(uint64_t index) const;
  // The address after the last one connections [0, count) use: where another process may start.
  boost::asio::ip::address_v4 after(uint64_t count) const;

 private:
  uint32_t base_;  // host order
  uint32_t per_source_;
};

// Opens `socket` and binds it to `source`, port 0. IP_BIND_ADDRESS_NO_PORT defers the choice of
// the port to connect(), which can then reuse a port towards another destination.
boost::system::error_code bind_source(boost::asio::ip::tcp::socket& socket,
                                      const boost::asio::ip::address_v4& source);

}  // namespace warren::load
