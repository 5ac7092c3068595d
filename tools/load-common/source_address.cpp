// Address arithmetic over 127.0.0.0/8 and the bind before connect.
#include "load-common/source_address.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <stdexcept>

namespace warren::load {
namespace {

bool usable(uint32_t a) {
  uint32_t last = a & 0xff;
  return last != 0 && last != 255;
}

// The n-th usable address at or after `from`.
uint32_t advance(uint32_t from, uint64_t n) {
  // 254 usable addresses per /24: count in those units, then step within one.
  while (!usable(from)) ++from;
  uint64_t block = from >> 8, offset = (from & 0xff) - 1;  // offset in 0..253
  uint64_t pos = offset + n;
  uint64_t a = ((block + pos / 254) << 8) | (pos % 254 + 1);
  if (a > 0x7ffffffe) throw std::out_of_range("out of 127.0.0.0/8 source addresses");
  return uint32_t(a);
}

}  // namespace

source_addresses::source_addresses(const std::string& base, uint32_t per_source)
    : per_source_(per_source) {
  boost::system::error_code ec;
  auto a = boost::asio::ip::make_address_v4(base, ec);
  if (ec || (a.to_uint() >> 24) != 127)
    throw std::invalid_argument("source address base must be in 127.0.0.0/8: " + base);
  if (per_source == 0) throw std::invalid_argument("connections per source address must be > 0");
  base_ = a.to_uint();
}

boost::asio::ip::address_v4 source_addresses::for_connection(uint64_t index) const {
  return boost::asio::ip::address_v4(advance(base_, index / per_source_));
}

boost::asio::ip::address_v4 source_addresses::after(uint64_t count) const {
  if (count == 0) return boost::asio::ip::address_v4(advance(base_, 0));
  return boost::asio::ip::address_v4(advance(base_, (count - 1) / per_source_ + 1));
}

boost::system::error_code bind_source(boost::asio::ip::tcp::socket& socket,
                                      const boost::asio::ip::address_v4& source) {
  boost::system::error_code ec;
  if (!socket.is_open()) socket.open(boost::asio::ip::tcp::v4(), ec);
  if (ec) return ec;
#ifdef IP_BIND_ADDRESS_NO_PORT
  int one = 1;
  ::setsockopt(socket.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
  socket.bind(boost::asio::ip::tcp::endpoint(source, 0), ec);
  return ec;
}

}  // namespace warren::load
