// warren-flood: opens --users WebSocket or SSE connections to a web push gateway, one user each
// (user-<n> with an HS256 token), from source addresses spread over 127.0.0.0/8, at a paced rate;
// counts connections and events and times the events warren-msggen stamped. One thread.
#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <exception>

#include "warren-flood/flood.hpp"

int main(int argc, char** argv) {
  using namespace warren::flood;
  auto parsed = parse_options(argc, argv);
  if (auto* e = std::get_if<usage_exit>(&parsed)) return e->code;
  const auto& o = std::get<options>(parsed);
  try {
    boost::asio::io_context io(1);
    flood f(io, o);
    f.start();
    io.run();
    const auto& c = f.count();
    // Exit 1 when no connection opened or connections failed: the numbers are not the ones asked for.
    return c.connected == 0 || c.connected < o.users ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "warren-flood: %s\n", e.what());
    return 2;
  }
}
