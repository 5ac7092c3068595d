// The HTTP handler over real loopback sockets with an asynchronous router: answers that come
// later (from another worker) still go out in request order, pipelining past the in-flight
// limit, a closing request ends the connection, refusals from the head alone, and answers for
// a connection that is gone are dropped.
#include <gtest/gtest.h>

#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>

#include <fmt/format.h>

#include <atomic>
#include <thread>

#include "http/http_handler.hpp"
#include "net/listener.hpp"
#include "net/worker.hpp"

namespace warren::http {
namespace {

namespace bhttp = boost::beast::http;
using boost::asio::ip::tcp;

class HttpHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // /now/<tag>: answered at once. /later/<ms>/<tag>: answered after <ms> from a timer on the
    // other worker. Every answer's body is the tag. /refuse: refused from its head.
    router_.on_head = [this](const request_header& h,
                             const request_context&) -> std::variant<size_t, response> {
      if (h.target() == "/refuse") return text_response(h, bhttp::status::unauthorized, "no\n");
      return size_t(limit_);
    };
    router_.handle = [this](request req, const request_context& ctx, responder done) {
      ++handled_;
      std::string target(req.target());
      std::string tag = target.substr(target.rfind('/') + 1);
      response res = text_response(req, bhttp::status::ok, tag);
      if (target.rfind("/later/", 0) != 0) {
        done(std::move(res));
        return;
      }
      int ms = std::stoi(target.substr(7));
      net::worker& other = pool_.at((ctx.worker->index() + 1) % pool_.size());
      other.post([this, &other, ms, res = std::move(res), done = std::move(done)] {
        auto t =
            std::make_shared<boost::asio::steady_timer>(other.io(), std::chrono::milliseconds(ms));
        t->async_wait([this, t, res, done](const boost::system::error_code&) {
          done(res);
          ++answered_late_;
        });
      });
    };
    lst_ = std::make_unique<net::listener>(
        pool_, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0),
        [this](std::shared_ptr<net::connection> c) {
          c->start(std::make_unique<http_handler>(router_, false, deadlines_));
        },
        "test");
    lst_->start();
    pool_.start();
  }
  void TearDown() override {
    lst_->stop();
    pool_.stop();
    pool_.join();
  }
  tcp::socket dial() {
    tcp::socket s(client_io_);
    s.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), lst_->port()));
    return s;
  }
  static std::string get(std::string_view target, bool close = false) {
    return fmt::format("GET {} HTTP/1.1\r\nHost: x\r\n{}\r\n", target,
                       close ? "Connection: close\r\n" : "");
  }
  // Reads `n` responses and returns their bodies.
  std::vector<std::string> read_bodies(tcp::socket& s, size_t n) {
    std::vector<std::string> out;
    for (size_t i = 0; i < n; ++i) {
      response res;
      bhttp::read(s, buf_, res);
      out.push_back(res.body());
    }
    return out;
  }
  // True if the server closed the connection (EOF) within a second.
  static bool closed_by_server(tcp::socket& s) {
    s.non_blocking(false);
    struct timeval tv {
      1, 0
    };
    setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char c;
    boost::system::error_code ec;
    size_t n = s.read_some(boost::asio::buffer(&c, 1), ec);
    return n == 0 && ec == boost::asio::error::eof;
  }

  // Shorter than the defaults so that the slowloris tests take seconds.
  static constexpr http_handler::deadlines deadlines_{std::chrono::seconds(2),
                                                      std::chrono::seconds(4)};
  // Writes `bytes` one a time, `gap` apart, for at most `limit`; stops quietly when the server
  // has closed. Returns how long the server let it go on.
  static std::chrono::milliseconds trickle(tcp::socket& s, std::string_view bytes,
                                           std::chrono::milliseconds gap,
                                           std::chrono::milliseconds limit) {
    auto start = std::chrono::steady_clock::now();
    for (char c : bytes) {
      boost::system::error_code ec;
      boost::asio::write(s, boost::asio::buffer(&c, 1), ec);
      auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - start);
      if (ec || spent > limit) return spent;
      std::this_thread::sleep_for(gap);
    }
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 start);
  }

  // A read that would wait longer than `seconds` fails (and the test with it) instead of hanging.
  static void read_timeout(tcp::socket& s, int seconds) {
    struct timeval tv {
      seconds, 0
    };
    setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  net::worker_pool pool_{2};
  router router_;
  std::atomic<size_t> limit_{1024};
  std::atomic<int> handled_{0};
  std::atomic<int> answered_late_{0};
  std::unique_ptr<net::listener> lst_;
  boost::asio::io_context client_io_;
  boost::beast::flat_buffer buf_;
};

TEST_F(HttpHandlerTest, PipelinedAnswersGoOutInRequestOrder) {
  auto s = dial();
  // The first answer comes last, the third at once.
  boost::asio::write(s, boost::asio::buffer(get("/later/150/a") + get("/later/20/b") +
                                            get("/now/c") + get("/later/5/d")));
  EXPECT_EQ(read_bodies(s, 4), (std::vector<std::string>{"a", "b", "c", "d"}));
  // The connection is still usable afterwards.
  boost::asio::write(s, boost::asio::buffer(get("/now/e")));
  EXPECT_EQ(read_bodies(s, 1), std::vector<std::string>{"e"});
}

TEST_F(HttpHandlerTest, MoreInFlightThanTheLimitAreAllAnsweredInOrder) {
  auto s = dial();
  std::string all;
  std::vector<std::string> want;
  for (int i = 0; i < int(http_handler::max_in_flight) * 3; ++i) {
    all += get(fmt::format("/later/{}/r{}", (i * 7) % 30, i));
    want.push_back(fmt::format("r{}", i));
  }
  boost::asio::write(s, boost::asio::buffer(all));
  EXPECT_EQ(read_bodies(s, want.size()), want);
}

TEST_F(HttpHandlerTest, RequestSplitAtEveryByte) {
  auto s = dial();
  std::string req = get("/now/split");
  for (char c : req) {
    boost::asio::write(s, boost::asio::buffer(&c, 1));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(read_bodies(s, 1), std::vector<std::string>{"split"});
}

TEST_F(HttpHandlerTest, ClosingRequestEndsTheConnectionAfterItsAnswer) {
  auto s = dial();
  boost::asio::write(
      s, boost::asio::buffer(get("/later/50/a") + get("/now/b", true) + get("/now/never")));
  EXPECT_EQ(read_bodies(s, 2), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(closed_by_server(s));
  EXPECT_EQ(handled_, 2);  // the request after the closing one was not even routed
}

TEST_F(HttpHandlerTest, AnswerForAClosedConnectionIsDropped) {
  {
    auto s = dial();
    boost::asio::write(s, boost::asio::buffer(get("/later/100/gone")));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }  // closed before the answer
  for (int i = 0; i < 100 && answered_late_ == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(answered_late_, 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the answer land
  auto s = dial();
  boost::asio::write(s, boost::asio::buffer(get("/now/alive")));
  EXPECT_EQ(read_bodies(s, 1), std::vector<std::string>{"alive"});
}

TEST_F(HttpHandlerTest, RefusedFromTheHeadWithoutReadingTheBody) {
  auto s = dial();
  // A large upload announced but not sent: the refusal must not wait for it.
  std::string head =
      "POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\nsome of the body";
  boost::asio::write(s, boost::asio::buffer(head));
  response res;
  bhttp::read(s, buf_, res);
  EXPECT_EQ(res.result(), bhttp::status::unauthorized);
  EXPECT_FALSE(res.keep_alive());
  EXPECT_TRUE(closed_by_server(s));
  EXPECT_EQ(handled_, 0);
}

TEST_F(HttpHandlerTest, BodyAboveTheRouteLimitIs413) {
  limit_ = 10;
  auto s = dial();
  std::string req = "POST /now/x HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n01234567890";
  boost::asio::write(s, boost::asio::buffer(req));
  response res;
  bhttp::read(s, buf_, res);
  EXPECT_EQ(res.result(), bhttp::status::payload_too_large);
  EXPECT_EQ(handled_, 0);
  // Chunked bodies are held to the same limit as they arrive.
  auto s2 = dial();
  std::string chunked =
      "POST /now/y HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "6\r\n012345\r\n6\r\n678901\r\n0\r\n\r\n";
  boost::asio::write(s2, boost::asio::buffer(chunked));
  response res2;
  bhttp::read(s2, buf_, res2);
  EXPECT_EQ(res2.result(), bhttp::status::payload_too_large);
  EXPECT_EQ(handled_, 0);
}

TEST_F(HttpHandlerTest, ExpectContinueIsAnsweredBeforeTheBody) {
  auto s = dial();
  std::string head =
      "POST /now/body HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n";
  boost::asio::write(s, boost::asio::buffer(head));
  std::string interim(25, '\0');
  boost::asio::read(s, boost::asio::buffer(interim));
  EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
  boost::asio::write(s, boost::asio::buffer(std::string("abcd")));
  EXPECT_EQ(read_bodies(s, 1), std::vector<std::string>{"body"});
}

TEST_F(HttpHandlerTest, MalformedRequestIs400AfterEarlierAnswers) {
  auto s = dial();
  boost::asio::write(s, boost::asio::buffer(get("/later/50/first") + "NOT HTTP\r\n\r\n"));
  response first, bad;
  bhttp::read(s, buf_, first);
  EXPECT_EQ(first.body(), "first");
  bhttp::read(s, buf_, bad);
  EXPECT_EQ(bad.result(), bhttp::status::bad_request);
  EXPECT_TRUE(closed_by_server(s));
}

// Slowloris: a head trickled a byte at a time, each byte well within the idle time-out, is cut
// off at the head deadline with 408 and the connection closes.
TEST_F(HttpHandlerTest, TrickledHeadIsCutOffAtTheHeadDeadline) {
  auto s = dial();
  std::string head = "GET /now/x HTTP/1.1\r\nHost: x\r\n" + std::string(200, 'a');
  trickle(s, head, std::chrono::milliseconds(250), std::chrono::seconds(5));
  read_timeout(s, 5);
  response res;
  bhttp::read(s, buf_, res);
  EXPECT_EQ(res.result(), bhttp::status::request_timeout);
  EXPECT_TRUE(closed_by_server(s));
  EXPECT_EQ(handled_.load(), 0);
}

// The body of a request whose head came in time must still arrive within the request deadline.
TEST_F(HttpHandlerTest, TrickledBodyIsCutOffAtTheRequestDeadline) {
  auto s = dial();
  boost::asio::write(
      s, boost::asio::buffer(std::string("POST /now/x HTTP/1.1\r\nHost: x\r\nContent-Length: "
                                         "100\r\n\r\n")));
  trickle(s, std::string(100, 'b'), std::chrono::milliseconds(250), std::chrono::seconds(7));
  read_timeout(s, 5);
  response res;
  bhttp::read(s, buf_, res);
  EXPECT_EQ(res.result(), bhttp::status::request_timeout);
  EXPECT_TRUE(closed_by_server(s));
  EXPECT_EQ(handled_.load(), 0);
}

TEST_F(HttpHandlerTest, HeadAboveTheSizeLimitIs431) {
  auto s = dial();
  std::string head = "GET /now/x HTTP/1.1\r\nHost: x\r\nX-Big: " +
                     std::string(http_handler::max_header_bytes, 'a') + "\r\n\r\n";
  boost::system::error_code ec;
  boost::asio::write(s, boost::asio::buffer(head), ec);  // the server may stop reading first
  response res;
  bhttp::read(s, buf_, res);
  EXPECT_EQ(res.result(), bhttp::status::request_header_fields_too_large);
  EXPECT_EQ(handled_.load(), 0);
}

}  // namespace
}  // namespace warren::http
