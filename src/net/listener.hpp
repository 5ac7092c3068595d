// A listening port served by every worker: one SO_REUSEPORT acceptor per worker, so the kernel
// spreads accepted connections and no hand-off between threads is needed.
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "net/worker.hpp"

namespace warren::net {

class connection;

class listener {
 public:
  // Called on the accepting worker's thread with a new, not yet started connection.
  using on_accept = std::function<void(std::shared_ptr<connection>)>;

  // Binds now (port 0 picks a free port, shared by all workers' acceptors); throws
  // boost::system::system_error if the address cannot be bound.
  listener(worker_pool& pool, const boost::asio::ip::tcp::endpoint& ep, on_accept cb,
           std::string name);
  ~listener();

  uint16_t port() const { return port_; }
  const std::string& name() const { return name_; }
  // Starts accepting on every worker (call before or after the pool starts).
  void start();
  // Any thread: closes every acceptor on its own worker.
  void stop();

 private:
  struct acceptor_slot;
  void accept_next(acceptor_slot& slot);

  on_accept cb_;
  std::string name_;
  uint16_t port_ = 0;
  std::vector<std::unique_ptr<acceptor_slot>> slots_;
};

}  // namespace warren::net
