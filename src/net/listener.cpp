// Acceptors: one per worker on the same TCP port with SO_REUSEPORT, or one per worker on
// duplicates of a Unix socket's descriptor.
#include "net/listener.hpp"

#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "net/connection.hpp"

namespace warren::net {

using generic_stream = boost::asio::generic::stream_protocol;

struct listener::acceptor_slot {
  worker& w;
  boost::asio::ip::tcp::acceptor tcp;
  boost::asio::basic_socket_acceptor<generic_stream> unix_socket;
  boost::asio::steady_timer retry;
  explicit acceptor_slot(worker& wk) : w(wk), tcp(wk.io()), unix_socket(wk.io()), retry(wk.io()) {}
};

boost::system::error_code dual_stack_unavailable() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(io);
  boost::system::error_code ec;
  a.open(boost::asio::ip::tcp::v6(), ec);
  if (!ec) a.set_option(boost::asio::ip::v6_only(false), ec);
  if (!ec) a.bind({boost::asio::ip::address_v6::any(), 0}, ec);
  return ec;
}

listener::listener(worker_pool& pool, const boost::asio::ip::tcp::endpoint& ep, on_accept cb,
                   std::string name, bool dual_stack)
    : cb_(std::move(cb)), name_(std::move(name)) {
  auto bind_ep = ep;
  for (size_t i = 0; i < pool.size(); ++i) {
    auto slot = std::make_unique<acceptor_slot>(pool.at(i));
    auto& a = slot->tcp;
    a.open(bind_ep.protocol());
    // Set either way: the kernel's default (net.ipv6.bindv6only) is not ours to rely on.
    if (bind_ep.address().is_v6()) a.set_option(boost::asio::ip::v6_only(!dual_stack));
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

namespace {

std::runtime_error path_error(const std::string& name, const std::string& path,
                              const std::string& what) {
  return std::runtime_error(fmt::format("{} listener: {}: {}", name, path, what));
}

// A socket file at `path` that nobody accepts on is left over from a process that died.
bool is_stale_socket(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.data(), path.size());
  bool stale =
      ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 && errno == ECONNREFUSED;
  ::close(fd);
  return stale;
}

}  // namespace

listener::listener(worker_pool& pool, const unix_path& where, on_accept cb, std::string name)
    : cb_(std::move(cb)), name_(std::move(name)), path_(where.path) {
  if (path_.empty()) throw path_error(name_, path_, "empty path");
  if (path_.size() >= sizeof(sockaddr_un::sun_path))
    throw path_error(name_, path_,
                     fmt::format("longer than a Unix socket path may be ({} bytes)",
                                 sizeof(sockaddr_un::sun_path) - 1));
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) throw path_error(name_, path_, "exists and is not a socket");
    if (!is_stale_socket(path_)) throw path_error(name_, path_, "in use by another process");
    spdlog::info("{} listener: removing the stale socket {}", name_, path_);
    if (::unlink(path_.c_str()) != 0 && errno != ENOENT)
      throw path_error(name_, path_, std::strerror(errno));
  }
  auto first = std::make_unique<acceptor_slot>(pool.at(0));
  auto& a = first->unix_socket;
  boost::asio::local::stream_protocol::endpoint local_ep(path_);
  a.open(generic_stream(AF_UNIX, 0));
  // Linux gives the file the mode of the socket's inode at bind (less the umask): set it first,
  // so the file is never more open than asked, then again after bind in case the umask removed
  // bits we want.
  ::fchmod(a.native_handle(), where.mode);
  a.bind(generic_stream::endpoint(local_ep));
  if (::chmod(path_.c_str(), where.mode) != 0 || ::lstat(path_.c_str(), &st) != 0) {
    int err = errno;
    ::unlink(path_.c_str());
    throw path_error(name_, path_, std::strerror(err));
  }
  path_dev_ = st.st_dev;
  path_ino_ = st.st_ino;
  a.listen(4096);
  int fd = a.native_handle();
  slots_.push_back(std::move(first));
  for (size_t i = 1; i < pool.size(); ++i) {
    auto slot = std::make_unique<acceptor_slot>(pool.at(i));
    int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) {
      remove_socket_file();
      throw path_error(name_, path_, std::strerror(errno));
    }
    slot->unix_socket.assign(generic_stream(AF_UNIX, 0), dup);
    slots_.push_back(std::move(slot));
  }
}

listener::~listener() {
  remove_socket_file();
}

void listener::remove_socket_file() {
  if (path_.empty() || path_ino_ == 0) return;
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == path_dev_ && st.st_ino == path_ino_)
    ::unlink(path_.c_str());
  path_ino_ = 0;
}

void listener::start() {
  for (auto& s : slots_) {
    acceptor_slot* slot = s.get();
    slot->w.post([this, slot] { accept_next(*slot); });
  }
}

void listener::accept_next(acceptor_slot& slot) {
  auto on_accepted = [this, &slot](const boost::system::error_code& ec, auto socket) {
    if (ec == boost::asio::error::operation_aborted ||
        !(slot.tcp.is_open() || slot.unix_socket.is_open()))
      return;
    if (ec) {
      // Out of descriptors or memory: back off instead of spinning, keep serving the others.
      spdlog::warn("{} listener: accept failed: {}; retrying in 100 ms", name_, ec.message());
      slot.retry.expires_after(std::chrono::milliseconds(100));
      slot.retry.async_wait([this, &slot](const boost::system::error_code& e) {
        if (!e) accept_next(slot);
      });
      return;
    }
    cb_(std::make_shared<connection>(slot.w, connection::socket_type(std::move(socket))));
    accept_next(slot);
  };
  if (slot.tcp.is_open())
    slot.tcp.async_accept(on_accepted);
  else
    slot.unix_socket.async_accept(on_accepted);
}

void listener::stop() {
  remove_socket_file();
  for (auto& s : slots_) {
    acceptor_slot* slot = s.get();
    slot->w.post([slot] {
      boost::system::error_code ec;
      slot->tcp.close(ec);
      slot->unix_socket.close(ec);
      slot->retry.cancel();
    });
  }
}

}  // namespace warren::net
