// A connection as a socket brings it, for fuzzing a protocol handler (HTTP, the web gateway)
// without a listener or a port: a net::connection over one end of a socketpair, the fuzzer
// holding the other end, and the worker's loop run on the fuzzer's thread (worker::poll). Every
// byte goes through connection::on_readable and deliver, partial requests kept and offered again
// included, exactly as in the broker.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "net/connection.hpp"
#include "net/worker.hpp"

namespace warren::fuzz {

class loopback {
 public:
  // `accept` gets the new connection and starts it with its handler, as a listener's callback.
  loopback(net::worker& w, const std::function<void(std::shared_ptr<net::connection>)>& accept);
  // Closes the connection (if the handler has not) and runs the loop until it is gone.
  ~loopback();
  loopback(const loopback&) = delete;
  loopback& operator=(const loopback&) = delete;

  // Writes the bytes to the connection (as one read if they fit the socket buffer) and runs the
  // loop until nothing is ready; what the connection wrote back is appended to received().
  void send(std::string_view bytes);
  // Half-closes the fuzzer's end, as a client that has sent everything, and runs the loop.
  void finish();
  // Runs the loop until nothing is ready, collecting output.
  void settle();

  const std::string& received() const { return received_; }
  // The connection closed or half-closed its end (the fuzzer read end-of-file).
  bool peer_done() const { return eof_; }
  net::connection& conn() { return *conn_; }

 private:
  bool read_some();

  net::worker& worker_;
  std::shared_ptr<net::connection> conn_;
  int fd_ = -1;  // the fuzzer's end
  std::string received_;
  bool eof_ = false;
};

}  // namespace warren::fuzz
