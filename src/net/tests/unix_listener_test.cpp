// The Unix-socket listener (the control socket): mode 0600, connections served on the workers
// like TCP ones, a stale socket file replaced, a live one or another file refused, the file
// removed at stop.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>

#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "net/connection.hpp"
#include "net/listener.hpp"

namespace warren::net {
namespace {

namespace fs = std::filesystem;
using local = boost::asio::local::stream_protocol;

// Answers each line with the index of the worker that runs the connection and whether it is a
// Unix socket ("1 unix\n").
class where_am_i : public connection_handler {
 public:
  explicit where_am_i(worker_pool& pool) : pool_(pool) {}
  size_t on_data(std::span<const uint8_t> data) override {
    size_t used = 0;
    for (size_t i = 0; i < data.size(); ++i) {
      if (data[i] != '\n') continue;
      size_t index = 0;
      while (&pool_.at(index) != &conn().owner()) ++index;
      conn().out() += std::to_string(index) + (conn().unix_socket() ? " unix" : " other") +
                      (conn().peer_port() == 0 ? " noport\n" : " port\n");
      used = i + 1;
    }
    conn().flush();
    return used;
  }

 private:
  worker_pool& pool_;
};

class UnixListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           fs::path("warren-unix-" + std::to_string(::getpid()) + "-" +
                    ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    path_ = (dir_ / "warren.sock").string();
  }
  void TearDown() override {
    if (lst_) lst_->stop();
    pool_.stop();
    pool_.join();
    lst_.reset();
    fs::remove_all(dir_);
  }
  void listen() {
    lst_ = std::make_unique<listener>(
        pool_, listener::unix_path{path_},
        [this](std::shared_ptr<connection> c) { c->start(std::make_unique<where_am_i>(pool_)); },
        "ctl");
    lst_->start();
    pool_.start();
  }
  std::string ask(local::socket& s) {
    boost::asio::write(s, boost::asio::buffer(std::string("?\n")));
    std::string reply;
    boost::asio::read_until(s, boost::asio::dynamic_buffer(reply), '\n');
    return reply;
  }

  fs::path dir_;
  std::string path_;
  worker_pool pool_{2};
  std::unique_ptr<listener> lst_;
  boost::asio::io_context client_io_;
};

TEST_F(UnixListenerTest, SocketFileIsOwnerOnly) {
  listen();
  struct stat st {};
  ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(lst_->path(), path_);
  EXPECT_EQ(lst_->port(), 0);
}

TEST_F(UnixListenerTest, EveryWorkerAccepts) {
  listen();
  // While one worker is kept busy, the other must accept and serve: each worker waits on the
  // listening socket, not only the first.
  for (size_t busy = 0; busy < 2; ++busy) {
    std::promise<void> release;
    std::shared_future<void> released = release.get_future().share();
    std::promise<void> entered;
    pool_.at(busy).post([released, &entered] {
      entered.set_value();
      released.wait();
    });
    entered.get_future().wait();  // connect only once it is busy, not while it can still accept
    local::socket s(client_io_);
    s.connect(local::endpoint(path_));
    std::string reply = ask(s);
    release.set_value();
    EXPECT_EQ(reply, std::to_string(1 - busy) + " unix noport\n");
  }
}

TEST_F(UnixListenerTest, StopRemovesTheFile) {
  listen();
  ASSERT_TRUE(fs::exists(fs::symlink_status(path_)));
  lst_->stop();
  EXPECT_FALSE(fs::exists(fs::symlink_status(path_)));
  local::socket s(client_io_);
  boost::system::error_code ec;
  s.connect(local::endpoint(path_), ec);
  EXPECT_TRUE(ec);
}

TEST_F(UnixListenerTest, StaleSocketIsReplaced) {
  {
    // A socket file nobody listens on any more, as a killed broker leaves it.
    local::acceptor dead(client_io_, local::endpoint(path_));
  }
  ASSERT_TRUE(fs::is_socket(fs::symlink_status(path_)));
  listen();
  local::socket s(client_io_);
  s.connect(local::endpoint(path_));
  EXPECT_NE(ask(s).find("unix"), std::string::npos);
}

TEST_F(UnixListenerTest, LiveSocketIsNotTakenOver) {
  local::acceptor alive(client_io_, local::endpoint(path_));
  EXPECT_THROW(listen(), std::runtime_error);
  EXPECT_TRUE(fs::is_socket(fs::symlink_status(path_)));  // still the other one's
}

TEST_F(UnixListenerTest, OtherFileIsNotReplaced) {
  std::ofstream(path_) << "data";
  EXPECT_THROW(listen(), std::runtime_error);
  EXPECT_TRUE(fs::is_regular_file(path_));
}

TEST_F(UnixListenerTest, TooLongPathIsRefused) {
  path_ = (dir_ / std::string(120, 'x')).string();
  EXPECT_THROW(listen(), std::runtime_error);
}

}  // namespace
}  // namespace warren::net
