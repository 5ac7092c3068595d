// The fuzzer's end of a socketpair, and the worker's loop run by hand.
#include "loopback.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "fuzz_support.hpp"

namespace warren::fuzz {

loopback::loopback(net::worker& w,
                   const std::function<void(std::shared_ptr<net::connection>)>& accept)
    : worker_(w) {
  int fds[2];
  FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
  fd_ = fds[1];
  net::connection::socket_type s(w.io());
  s.assign(boost::asio::generic::stream_protocol(AF_UNIX, SOCK_STREAM), fds[0]);
  conn_ = std::make_shared<net::connection>(w, std::move(s));
  accept(conn_);
  settle();
}

loopback::~loopback() {
  if (!conn_->closed()) conn_->close_now();
  settle();
  ::close(fd_);
}

bool loopback::read_some() {
  char buf[65536];
  bool any = false;
  for (;;) {
    ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n > 0) {
      received_.append(buf, size_t(n));
      any = true;
      continue;
    }
    if (n == 0) eof_ = true;
    FUZZ_CHECK(n == 0 || errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNRESET);
    if (n < 0 && errno == ECONNRESET) eof_ = true;
    return any;
  }
}

void loopback::settle() {
  for (;;) {
    size_t ran = worker_.poll();
    bool read = read_some();
    if (ran == 0 && !read) return;
  }
}

void loopback::send(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      // The connection stopped reading (a full socket buffer, or it is gone): let it run; if it
      // reads nothing more, the rest is dropped, as a peer's unread bytes are.
      FUZZ_CHECK(errno == EAGAIN || errno == EWOULDBLOCK || errno == EPIPE || errno == ECONNRESET);
      if (errno == EPIPE || errno == ECONNRESET || worker_.poll() == 0) {
        settle();
        return;
      }
      settle();
      continue;
    }
    bytes.remove_prefix(size_t(n));
    settle();
  }
}

void loopback::finish() {
  ::shutdown(fd_, SHUT_WR);
  settle();
}

}  // namespace warren::fuzz
