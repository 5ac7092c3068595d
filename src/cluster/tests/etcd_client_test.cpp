// The etcd client and a node's membership against a real etcd started by the test
// (etcd_server.hpp). Label "integration": they need Debian's etcd-server.
#include "cluster/etcd_client.hpp"
#include "cluster/membership.hpp"
#include "cluster/prefix_mirror.hpp"

#include <gtest/gtest.h>

#include <array>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include "cluster/tests/etcd_server.hpp"

using namespace warren::cluster;
using namespace std::chrono_literals;

namespace {

// A TCP relay to a port, on the test's loop, that can go silent as a cut link does (iptables
// DROP): from then on it drops what either side sends, and accepts new connections without
// relaying them. Hand-written: a few lines of Asio, nothing to install.
class silent_link {
 public:
  silent_link(boost::asio::io_context& io, int to) : io_(io), to_(to), acceptor_(io) {
    using boost::asio::ip::tcp;
    tcp::endpoint ep(boost::asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(ep.protocol());
    acceptor_.bind(ep);
    acceptor_.listen();
    accept();
  }
  std::string endpoint() const {
    return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }
  void go_silent() { silent_ = true; }

 private:
  using socket_ptr = std::shared_ptr<boost::asio::ip::tcp::socket>;
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, boost::asio::ip::tcp::socket s) {
      if (ec) return;
      auto down = std::make_shared<boost::asio::ip::tcp::socket>(std::move(s));
      auto up = std::make_shared<boost::asio::ip::tcp::socket>(io_);
      up->async_connect({boost::asio::ip::make_address("127.0.0.1"), uint16_t(to_)},
                        [this, down, up](boost::system::error_code ec) {
                          if (ec) return;
                          relay(down, up);
                          relay(up, down);
                        });
      accept();
    });
  }
  void relay(socket_ptr from, socket_ptr to) {
    auto buf = std::make_shared<std::array<char, 16384>>();
    from->async_read_some(
        boost::asio::buffer(*buf), [this, from, to, buf](boost::system::error_code ec, size_t n) {
          if (ec) {
            boost::system::error_code ignored;
            to->shutdown(boost::asio::ip::tcp::socket::shutdown_send, ignored);
            return;
          }
          if (silent_) return relay(from, to);
          boost::asio::async_write(*to, boost::asio::buffer(buf->data(), n),
                                   [this, from, to, buf](boost::system::error_code ec, size_t) {
                                     if (!ec) relay(from, to);
                                   });
        });
  }
  boost::asio::io_context& io_;
  int to_;
  boost::asio::ip::tcp::acceptor acceptor_;
  bool silent_ = false;
};

class etcd_test : public ::testing::Test {
 protected:
  void SetUp() override { server_ = std::make_unique<test_support::etcd_server>(); }

  std::shared_ptr<etcd_client> client(std::string endpoints = {},
                                      std::chrono::milliseconds timeout = 1000ms) {
    std::string err;
    auto eps = parse_endpoints(endpoints.empty() ? server_->endpoint() : endpoints, err);
    EXPECT_TRUE(eps) << err;
    return std::make_shared<etcd_client>(io_, *eps, timeout);
  }
  // Runs the loop until `done` or the time is up.
  template <typename F>
  bool run_until(F done, std::chrono::milliseconds limit = 5000ms) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > end) return false;
      io_.restart();
      io_.run_for(10ms);
    }
    return true;
  }

  boost::asio::io_context io_;
  std::unique_ptr<test_support::etcd_server> server_;
};

}  // namespace

TEST_F(etcd_test, put_range_txn_delete) {
  auto c = client();
  bool done = false;
  std::string error = "not called";
  c->put("/t/a", std::string("v\0\xff", 3), 0, [&](const std::string& e) {
    error = e;
    done = true;
  });
  ASSERT_TRUE(run_until([&] { return done; }));
  ASSERT_EQ(error, "");

  range_result got;
  done = false;
  c->range("/t/", prefix_end("/t/"), [&](const std::string& e, range_result r) {
    error = e;
    got = std::move(r);
    done = true;
  });
  ASSERT_TRUE(run_until([&] { return done; }));
  ASSERT_EQ(error, "");
  ASSERT_EQ(got.kvs.size(), 1u);
  EXPECT_EQ(got.kvs[0].value, std::string("v\0\xff", 3));  // binary survives base64

  // Create-if-absent: fails on an existing key and returns it.
  txn_result t;
  done = false;
  c->txn(json::array({cmp_version_equal("/t/a", 0)}), json::array({op_put("/t/a", "new")}),
         json::array({op_range("/t/a")}), [&](const std::string& e, txn_result r) {
           error = e;
           t = std::move(r);
           done = true;
         });
  ASSERT_TRUE(run_until([&] { return done; }));
  ASSERT_EQ(error, "");
  EXPECT_FALSE(t.succeeded);
  ASSERT_EQ(t.ranges.size(), 1u);
  EXPECT_EQ(t.ranges[0].kvs[0].value, std::string("v\0\xff", 3));

  // Delete-if-present: takes its branch only while the key exists.
  for (bool present : {true, false}) {
    done = false;
    c->txn(json::array({cmp_version_greater("/t/a", 0)}), json::array({op_delete("/t/a")}),
           json::array(), [&](const std::string& e, txn_result r) {
             error = e;
             t = std::move(r);
             done = true;
           });
    ASSERT_TRUE(run_until([&] { return done; }));
    ASSERT_EQ(error, "");
    EXPECT_EQ(t.succeeded, present);
  }

  done = false;
  c->delete_range("/t/", prefix_end("/t/"), [&](const std::string& e) {
    error = e;
    done = true;
  });
  ASSERT_TRUE(run_until([&] { return done; }));
  ASSERT_EQ(error, "");
  done = false;
  c->range("/t/a", {}, [&](const std::string& e, range_result r) {
    error = e;
    got = std::move(r);
    done = true;
  });
  ASSERT_TRUE(run_until([&] { return done; }));
  EXPECT_TRUE(got.kvs.empty());
}

TEST_F(etcd_test, lease_grant_keepalive_revoke_and_lease_bound_key) {
  auto c = client();
  lease_grant_result g;
  std::string error = "not called";
  bool done = false;
  c->lease_grant(5, [&](const std::string& e, lease_grant_result r) {
    error = e;
    g = r;
    done = true;
  });
  ASSERT_TRUE(run_until([&] { return done; }));
  ASSERT_EQ(error, "");
  EXPECT_EQ(g.ttl, 5);
  done = false;
  c->put("/t/leased", "x", g.id, [&](const std::string& e) {
    error = e;
    done = true;
  });
  ASSERT_TRUE(run_until([&] { return done; }));
  ASSERT_EQ(error, "");
  int64_t ttl = -1;
  done = false;
  c->lease_keepalive(g.id, [&](const std::string& e, int64_t t) {
    error = e;
    ttl = t;
    done = true;
  });
  ASSERT_TRUE(run_until([&] { return done; }));
  EXPECT_EQ(error, "");
  EXPECT_EQ(ttl, 5);
  done = false;
  c->lease_revoke(g.id, [&](const std::string& e) {
    error = e;
    done = true;
  });
  ASSERT_TRUE(run_until([&] { return done; }));
  EXPECT_EQ(error, "");
  // The key went with its lease; a keepalive of it now says 0; a second revoke is etcd's error.
  range_result r;
  done = false;
  c->range("/t/leased", {}, [&](const std::string&, range_result x) {
    r = std::move(x);
    done = true;
  });
  ASSERT_TRUE(run_until([&] { return done; }));
  EXPECT_TRUE(r.kvs.empty());
  done = false;
  c->lease_keepalive(g.id, [&](const std::string& e, int64_t t) {
    error = e;
    ttl = t;
    done = true;
  });
  ASSERT_TRUE(run_until([&] { return done; }));
  EXPECT_EQ(error, "");
  EXPECT_EQ(ttl, 0);
  done = false;
  c->lease_revoke(g.id, [&](const std::string& e) {
    error = e;
    done = true;
  });
  ASSERT_TRUE(run_until([&] { return done; }));
  EXPECT_NE(error.find("lease not found"), std::string::npos) << error;
}

TEST_F(etcd_test, watch_streams_puts_and_deletes) {
  auto c = client();
  std::vector<watch_event> events;
  std::string ended;
  auto w = c->watch(
      "/w/", prefix_end("/w/"), 0,
      [&](const watch_message& m) {
        for (const auto& e : m.events) events.push_back(e);
      },
      [&](const std::string& why) { ended = why; });
  // Let the watch be created before writing.
  run_until([] { return false; }, 300ms);
  int done = 0;
  c->put("/w/1", "one", 0, [&](const std::string&) { ++done; });
  c->put("/w/2", "two", 0, [&](const std::string&) { ++done; });
  c->put("/other", "x", 0, [&](const std::string&) { ++done; });
  c->delete_range("/w/1", {}, [&](const std::string&) { ++done; });
  ASSERT_TRUE(run_until([&] { return events.size() >= 3; }));
  EXPECT_EQ(events[0].kv.key, "/w/1");
  EXPECT_EQ(events[0].kv.value, "one");
  EXPECT_EQ(events[1].kv.key, "/w/2");
  EXPECT_TRUE(events[2].deleted);
  EXPECT_EQ(events[2].kv.key, "/w/1");
  EXPECT_EQ(ended, "");
  // etcd goes away: the stream ends and says so.
  server_->stop();
  ASSERT_TRUE(run_until([&] { return !ended.empty(); }));
  w->cancel();
}

TEST_F(etcd_test, fails_over_to_the_next_endpoint_and_reports_unreachable) {
  // A dead endpoint first: the call still succeeds, through the second.
  int dead = test_support::free_port();
  auto c = client("http://127.0.0.1:" + std::to_string(dead) + "," + server_->endpoint());
  std::string error = "not called";
  bool done = false;
  c->put("/f/a", "1", 0, [&](const std::string& e) {
    error = e;
    done = true;
  });
  ASSERT_TRUE(run_until([&] { return done; }));
  EXPECT_EQ(error, "");
  EXPECT_EQ(c->current_endpoint().text(), server_->endpoint());
  // Everything dead: an error that names the endpoints.
  server_->stop();
  done = false;
  c->put("/f/a", "2", 0, [&](const std::string& e) {
    error = e;
    done = true;
  });
  ASSERT_TRUE(run_until([&] { return done; }));
  EXPECT_NE(error.find("etcd unreachable"), std::string::npos) << error;
  EXPECT_NE(error.find(std::to_string(dead)), std::string::npos) << error;
  // etcd back: the next call works again (the client reconnects).
  server_->start();
  done = false;
  c->put("/f/a", "3", 0, [&](const std::string& e) {
    error = e;
    done = true;
  });
  ASSERT_TRUE(run_until([&] { return done; }));
  EXPECT_EQ(error, "");
}

TEST_F(etcd_test, a_watch_on_a_silent_endpoint_ends_when_a_call_fails_over_from_it) {
  // Two endpoints; the watch starts on the first, which then goes silent (SIGSTOP: its sockets
  // stay open and say nothing, as behind a cut link). The watch alone would never notice.
  test_support::etcd_server second;
  auto c = client(server_->endpoint() + "," + second.endpoint(), 300ms);
  bool created = false;
  std::string ended;
  auto w = c->watch(
      "/s/", prefix_end("/s/"), 0, [&](const watch_message& m) { created = created || m.created; },
      [&](const std::string& why) { ended = why; });
  ASSERT_TRUE(run_until([&] { return created; }));
  server_->pause();
  // A call finds the first endpoint silent, fails over to the second, and ends the watch.
  auto called = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point answered_sent{};
  std::string error = "not called";
  c->put("/s/a", "1", 0, [&](const std::string& e) {
    error = e;
    answered_sent = c->answered_attempt_sent();
  });
  // 1-2 s on a quiet machine, over 5 s once under ASan beside the integration tests: the bound
  // is for a hang, not a time (the time is checked below).
  ASSERT_TRUE(run_until([&] { return error != "not called" && !ended.empty(); }, 20000ms));
  server_->resume();
  EXPECT_EQ(error, "");
  EXPECT_EQ(c->current_endpoint().text(), second.endpoint());
  EXPECT_NE(ended.find("a call to " + server_->endpoint() + " failed"), std::string::npos) << ended;
  // The answered try is the second one, sent after the first had waited its 300 ms.
  EXPECT_GE(answered_sent - called, 300ms);
  w->cancel();
}

TEST_F(etcd_test, a_call_queued_first_overtakes_the_queue) {
  auto c = client();
  std::vector<std::string> order;
  for (int i = 0; i < 3; ++i)
    c->range("/q/", prefix_end("/q/"), [&, i](const std::string&, range_result) {
      order.push_back("range" + std::to_string(i));
    });
  c->call(
      "/v3/kv/range", range_request("/q/x"),
      [&](const std::string&, const json&) { order.push_back("first"); },
      etcd_call_options{0ms, true});
  ASSERT_TRUE(run_until([&] { return order.size() == 4; }));
  // The first range was already sent when the urgent call came; it went next.
  EXPECT_EQ(order, (std::vector<std::string>{"range0", "first", "range1", "range2"}));
}

TEST_F(etcd_test, a_node_restarted_at_once_waits_for_its_old_lease_instead_of_exiting) {
  membership_settings s;
  s.cluster = "c1";
  s.node = "n1";
  s.lease_ttl = 2s;
  auto c1 = client({}, 500ms);
  std::optional<join_result> first1;
  auto m1 = std::make_shared<membership>(
      c1, s, membership::events{{}, [&](join_result r, const std::string&) { first1 = r; }});
  m1->start();
  ASSERT_TRUE(run_until([&] { return first1.has_value(); }));
  ASSERT_EQ(*first1, join_result::registered);
  // The process dies (kill -9): nothing more reaches etcd, its lease runs out within 2 s.
  c1->close();
  auto died = std::chrono::steady_clock::now();
  auto c2 = client({}, 500ms);
  std::optional<join_result> first2;
  std::string detail;
  auto m2 = std::make_shared<membership>(
      c2, s, membership::events{{}, [&](join_result r, const std::string& d) {
                                  first2 = r;
                                  detail = d;
                                }});
  m2->start();
  ASSERT_TRUE(run_until([&] { return first2.has_value(); }, 6000ms));
  EXPECT_EQ(*first2, join_result::registered) << detail;
  EXPECT_GE(std::chrono::steady_clock::now() - died, 1s);  // it did wait for the old lease
  EXPECT_EQ(m2->state(), node_state::serving);
  m2->leave([](const std::string&) {});
  run_until([] { return false; }, 100ms);
}

TEST_F(etcd_test, a_renewal_is_not_held_back_by_a_call_waiting_on_a_silent_endpoint) {
  // Two ways to one etcd; the first goes silent. Another call then waits its whole 2 s on it
  // before it fails over; the lease (2 s TTL, the node stops serving 1.6 s after a renewal was
  // sent) must be renewed through the second way meanwhile, not after that call.
  silent_link a(io_, server_->client_port()), b(io_, server_->client_port());
  auto c = client(a.endpoint() + "," + b.endpoint(), 2000ms);
  membership_settings s;
  s.cluster = "c1";
  s.node = "n1";
  s.lease_ttl = 2s;
  std::vector<node_state> states;
  std::optional<join_result> first;
  auto m = std::make_shared<membership>(
      c, s,
      membership::events{[&](node_state st, const std::string&) { states.push_back(st); },
                         [&](join_result r, const std::string&) { first = r; }});
  m->start();
  ASSERT_TRUE(run_until([&] { return first.has_value(); }));
  ASSERT_EQ(*first, join_result::registered);
  ASSERT_EQ(c->current_endpoint().text(), a.endpoint());
  a.go_silent();
  auto cut = std::chrono::steady_clock::now();
  std::string error = "not called";
  c->put("/r/a", "1", 0, [&](const std::string& e) { error = e; });
  ASSERT_TRUE(run_until([&] { return error != "not called"; }, 10000ms));
  EXPECT_EQ(error, "");
  EXPECT_GE(std::chrono::steady_clock::now() - cut, 2s);  // it did wait out the silent endpoint
  run_until([] { return false; }, 1000ms);
  EXPECT_EQ(m->state(), node_state::serving);
  EXPECT_EQ(states, std::vector<node_state>{node_state::serving});
  EXPECT_EQ(c->current_endpoint().text(), b.endpoint());
  m->leave([](const std::string&) {});
  run_until([] { return false; }, 100ms);
}

TEST_F(etcd_test, prefix_mirror_follows_changes) {
  auto c = client();
  int changes = 0;
  std::vector<std::string> changed;
  bool all = false;
  std::shared_ptr<prefix_mirror> m;
  m = std::make_shared<prefix_mirror>(c, "/m/", [&](const prefix_mirror::items_map&) {
    ++changes;
    changed.insert(changed.end(), m->changed().begin(), m->changed().end());
    all = m->changed_all();
  });
  bool done = false;
  c->put("/m/before", "1", 0, [&](const std::string&) { done = true; });
  ASSERT_TRUE(run_until([&] { return done; }));
  m->start();
  ASSERT_TRUE(run_until([&] { return m->synced(); }));
  EXPECT_EQ(m->items().count("/m/before"), 1u);
  EXPECT_TRUE(all);  // the first read: every key
  EXPECT_EQ(changed, std::vector<std::string>{"/m/before"});
  changed.clear();
  c->put("/m/after", "2", 0, [](const std::string&) {});
  c->delete_range("/m/before", {}, [](const std::string&) {});
  ASSERT_TRUE(
      run_until([&] { return m->items().count("/m/after") && !m->items().count("/m/before"); }));
  EXPECT_FALSE(all);  // events: the keys they are about, the deleted one too
  EXPECT_EQ(changed, (std::vector<std::string>{"/m/after", "/m/before"}));
  m->stop();
}

TEST_F(etcd_test, membership_registers_refuses_duplicates_and_fences) {
  auto c = client({}, 500ms);
  membership_settings s;
  s.cluster = "c1";
  s.node = "n1";
  s.lease_ttl = 2s;
  s.info = {{"amqp", "127.0.0.1:1"}};
  std::vector<node_state> states;
  std::optional<join_result> first;
  auto m = std::make_shared<membership>(
      c, s,
      membership::events{[&](node_state st, const std::string&) { states.push_back(st); },
                         [&](join_result r, const std::string&) { first = r; }});
  m->start();
  ASSERT_TRUE(run_until([&] { return first.has_value(); }));
  EXPECT_EQ(*first, join_result::registered);
  EXPECT_EQ(m->state(), node_state::serving);
  ASSERT_TRUE(run_until([&] { return m->view()->synced && m->view()->running() == 1; }));

  // A second node of the same name is refused while the first lives.
  auto c2 = client({}, 500ms);
  std::optional<join_result> first2;
  std::string detail;
  auto dup = std::make_shared<membership>(
      c2, s, membership::events{{}, [&](join_result r, const std::string& d) {
                                  first2 = r;
                                  detail = d;
                                }});
  dup->start();
  ASSERT_TRUE(run_until([&] { return first2.has_value(); }));
  EXPECT_EQ(*first2, join_result::duplicate);
  EXPECT_NE(detail.find("already in use"), std::string::npos) << detail;
  dup->leave([](const std::string&) {});

  // Keepalives hold the lease past its TTL.
  run_until([] { return false; }, 2500ms);
  EXPECT_EQ(m->state(), node_state::serving);

  // etcd gone: fenced before the TTL is over (deadline TTL - 400 ms).
  server_->stop();
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(run_until([&] { return m->state() == node_state::fenced; }, 3000ms));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_FALSE(m->view()->nodes.empty() ? true : m->view()->nodes[0].running);

  // etcd back (the lease may have expired meanwhile, or not): the node registers again.
  server_->start();
  ASSERT_TRUE(run_until([&] { return m->state() == node_state::serving; }, 8000ms));
  ASSERT_GE(states.size(), 3u);
  EXPECT_EQ(states[0], node_state::serving);
  EXPECT_EQ(states[1], node_state::fenced);
  EXPECT_EQ(states.back(), node_state::serving);

  // The lease revoked behind the node's back: it fences at the next keepalive, then rejoins.
  int64_t lease = m->lease();
  bool revoked = false;
  auto admin = client();
  admin->lease_revoke(lease, [&](const std::string&) { revoked = true; });
  ASSERT_TRUE(run_until([&] { return revoked; }));
  ASSERT_TRUE(run_until([&] { return m->state() == node_state::fenced; }, 2000ms));
  ASSERT_TRUE(run_until([&] { return m->state() == node_state::serving; }, 3000ms));
  EXPECT_NE(m->lease(), lease);

  // Leaving revokes the lease: the node's key goes at once, its member record stays.
  bool left = false;
  m->leave([&](const std::string& e) {
    EXPECT_EQ(e, "");
    left = true;
  });
  ASSERT_TRUE(run_until([&] { return left; }));
  range_result nodes, members;
  int got = 0;
  admin->range(nodes_prefix("c1"), prefix_end(nodes_prefix("c1")),
               [&](const std::string&, range_result r) {
                 nodes = std::move(r);
                 ++got;
               });
  admin->range(members_prefix("c1"), prefix_end(members_prefix("c1")),
               [&](const std::string&, range_result r) {
                 members = std::move(r);
                 ++got;
               });
  ASSERT_TRUE(run_until([&] { return got == 2; }));
  EXPECT_TRUE(nodes.kvs.empty());
  ASSERT_EQ(members.kvs.size(), 1u);
  EXPECT_EQ(members.kvs[0].key, "/warren/c1/members/n1");
}
