// A listening socket served by every worker. A TCP port has one SO_REUSEPORT acceptor per worker,
// so the kernel spreads accepted connections and no hand-off between threads is needed. A Unix
// socket (the control socket) cannot be shared that way: each worker waits on its own duplicate
// of one listening descriptor, and whichever worker's accept succeeds owns the connection.
#pragma once

#include <sys/types.h>

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "net/worker.hpp"

namespace warren::net {

class connection;

// Why a dual-stack listener (`::` accepting IPv4 as well) cannot be had here, e.g. a kernel
// without IPv6; no error if it can. Tried on a throwaway socket bound to port 0.
boost::system::error_code dual_stack_unavailable();

class listener {
 public:
  // Called on the accepting worker's thread with a new, not yet started connection.
  using on_accept = std::function<void(std::shared_ptr<connection>)>;

  // Where a Unix listener binds, and the mode of its socket file (0600: owner only, so the
  // file's permissions decide who may connect).
  struct unix_path {
    std::string path;
    unsigned mode = 0600;
  };

  // Binds now (port 0 picks a free port, shared by all workers' acceptors); throws
  // boost::system::system_error if the address cannot be bound. An IPv6 address is bound for
  // IPv6 only, unless `dual_stack` (meant for `::`): then IPv4 clients are accepted too, as
  // IPv4-mapped addresses, which net::connection reports as plain IPv4.
  listener(worker_pool& pool, const boost::asio::ip::tcp::endpoint& ep, on_accept cb,
           std::string name, bool dual_stack = false);
  // Binds a Unix stream socket at `where.path` now. A stale socket file left there by a broker
  // that died is replaced; a live one (something accepts on it) or a file of another kind is
  // not, and the constructor throws std::runtime_error. The file is removed by stop() and by the
  // destructor, unless it was replaced meanwhile.
  listener(worker_pool& pool, const unix_path& where, on_accept cb, std::string name);
  ~listener();

  uint16_t port() const { return port_; }            // 0 for a Unix listener
  const std::string& path() const { return path_; }  // empty for a TCP listener
  const std::string& name() const { return name_; }
  // Starts accepting on every worker (call before or after the pool starts).
  void start();
  // Any thread: closes every acceptor on its own worker (and removes a Unix socket's file now).
  void stop();

 private:
  struct acceptor_slot;
  void accept_next(acceptor_slot& slot);
  void remove_socket_file();

  on_accept cb_;
  std::string name_;
  uint16_t port_ = 0;
  std::string path_;
  dev_t path_dev_ = 0;  // identity of the socket file bound, so that stop() removes only it
  ino_t path_ino_ = 0;
  std::vector<std::unique_ptr<acceptor_slot>> slots_;
};

}  // namespace warren::net
