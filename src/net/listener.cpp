// Acceptors: one per worker on the same port with SO_REUSEPORT.
#include "net/listener.hpp"

#include <boost/asio/steady_timer.hpp>

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include "net/connection.hpp"

namespace warren::net {

struct listener::acceptor_slot {
  worker& w;
  boost::asio::ip::tcp::acceptor acceptor;
  boost::asio::steady_timer retry;
  explicit acceptor_slot(worker& wk) : w(wk), acceptor(wk.io()), retry(wk.io()) {}
};

listener::listener(worker_pool& pool, const boost::asio::ip::tcp::endpoint& ep, on_accept cb,
                   std::string name)
    : cb_(std::move(cb)), name_(std::move(name)) {
  auto bind_ep = ep;
  for (size_t i = 0; i < pool.size(); ++i) {
    auto slot = std::make_unique<acceptor_slot>(pool.at(i));
    auto& a = slot->acceptor;
    a.open(bind_ep.protocol());
    a.set_option(boost::asio::socket_base::reuse_address(true));
    int one = 1;
    if (::setsockopt(a.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
      throw boost::system::system_error(errno, boost::system::system_category(), "SO_REUSEPORT");
    a.bind(bind_ep);
    a.listen(4096);
    if (i == 0) {
      port_ = a.local_endpoint().port();
      bind_ep.port(port_);  // the other workers join the port the first one got
    }
    slots_.push_back(std::move(slot));
  }
}

listener::~listener() = default;

void listener::start() {
  for (auto& s : slots_) {
    acceptor_slot* slot = s.get();
    slot->w.post([this, slot] { accept_next(*slot); });
  }
}

void listener::accept_next(acceptor_slot& slot) {
  slot.acceptor.async_accept(slot.w.io(), [this, &slot](const boost::system::error_code& ec,
                                                        boost::asio::ip::tcp::socket socket) {
    if (ec == boost::asio::error::operation_aborted || !slot.acceptor.is_open()) return;
    if (ec) {
      // Out of descriptors or memory: back off instead of spinning, keep serving the others.
      spdlog::warn("{} listener: accept failed: {}; retrying in 100 ms", name_, ec.message());
      slot.retry.expires_after(std::chrono::milliseconds(100));
      slot.retry.async_wait([this, &slot](const boost::system::error_code& e) {
        if (!e) accept_next(slot);
      });
      return;
    }
    cb_(std::make_shared<connection>(slot.w, std::move(socket)));
    accept_next(slot);
  });
}

void listener::stop() {
  for (auto& s : slots_) {
    acceptor_slot* slot = s.get();
    slot->w.post([slot] {
      boost::system::error_code ec;
      slot->acceptor.close(ec);
      slot->retry.cancel();
    });
  }
}

}  // namespace warren::net
