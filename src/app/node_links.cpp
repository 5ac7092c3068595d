// Links between nodes (node_links.hpp).
#include "app/node_links.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include "amqp/protocol/properties_edit.hpp"
#include "amqp/server/convert.hpp"
#include "auth/user_store.hpp"
#include "broker/forward.hpp"

namespace warren::app {

namespace {

using clock = std::chrono::steady_clock;
constexpr auto retry_delay = std::chrono::seconds(1);

// The AMQP address of `node`'s listener, logged in as this node's identity (auth::user_store).
amqp::client::uri node_uri(const node_links::settings& s, const node_address& where,
                           const std::string& secret, const std::string& node) {
  amqp::client::uri u;
  u.host = where.host;
  u.port = where.port;
  u.user = std::string(auth::cluster_node_user_prefix) + s.self;
  u.password = secret;
  u.vhost = s.vhost;
  u.safe = fmt::format("amqp://{}:{}/ (node '{}')", u.host, u.port, node);
  if (s.liveness.count() > 0) {
    // Silent for two intervals: given up (amqp::client::connection).
    u.heartbeat = uint16_t(std::max<int64_t>(1, s.liveness.count() / 2));
    // Connecting (TCP and the handshake: a fresh connection per forwarded queue method) gets at
    // least 5 s: a node on a loaded machine may take seconds to answer a handshake, and one that
    // is cut off is found out by then, or by its lease.
    u.connection_timeout = std::max<std::chrono::milliseconds>(s.liveness, std::chrono::seconds(5));
  }
  return u;
}

}  // namespace

struct node_links::link {
  enum class state { down, connecting, ready };
  std::string node;
  state st = state::down;
  std::shared_ptr<amqp::client::connection> conn;
  clock::time_point retry_at{};
  // Publishes waiting for the connection (sent at ready), then those waiting for their confirm,
  // by sequence number (in order).
  struct waiting {
    std::string props;  // encoded, with the forward header
    std::string body;
    broker::shard_answer answer;
  };
  std::vector<waiting> queued;
  std::deque<std::pair<uint64_t, broker::shard_answer>> unconfirmed;
};

node_links::node_links(boost::asio::io_context& io, settings s) : io_(io), s_(std::move(s)) {}

node_links::~node_links() {
  close();
}

void node_links::close() {
  for (auto& [node, l] : links_) {
    if (l->conn) l->conn->close();
    l->conn.reset();
  }
  links_.clear();
}

void node_links::reject(broker::shard_answer a) {
  // Never inline: the publish that called send() has not counted its answers yet.
  if (a) boost::asio::post(io_, [a = std::move(a)] { a(0, true); });
}

void node_links::send(const std::string& node, const broker::message& m,
                      std::vector<std::string> queues, const broker::shard_answer* answer) {
  auto& lp = links_[node];
  if (!lp) {
    lp = std::make_shared<link>();
    lp->node = node;
  }
  link& l = *lp;
  broker::shard_answer a = answer ? *answer : broker::shard_answer{};
  if (l.st == link::state::down) {
    if (clock::now() < l.retry_at) return reject(std::move(a));
    start(l);
    if (l.st == link::state::down) return reject(std::move(a));
  }
  // The publisher's encoded properties with the forward header put in front of its headers,
  // without decoding them (the receiving channel takes it out the same way); encoded here when
  // the message was not published over AMQP.
  common::field_value header =
      broker::forward_value({m.exchange, m.routing_key, std::move(queues)});
  std::string props = m.amqp_properties;
  if (props.empty() || !amqp::protocol::prepend_header(props, broker::forward_header, header)) {
    // Not published over AMQP, or with a flags word prepend_header does not edit (a continuation
    // word, which class basic never needs): encoded afresh.
    props.clear();
    common::byte_writer w(props);
    amqp::protocol::encode_basic_properties(w, amqp::server::to_amqp(m.properties));
    if (!amqp::protocol::prepend_header(props, broker::forward_header, header))
      return reject(std::move(a));  // not expected: our own encoding
  }
  if (l.st == link::state::connecting) {
    l.queued.push_back({std::move(props), m.body, std::move(a)});
    return;
  }
  uint64_t seq = l.conn->publish_encoded(broker::forward_exchange, "", props, m.body);
  l.unconfirmed.emplace_back(seq, std::move(a));
}

void node_links::start(link& l) {
  auto where = s_.locate ? s_.locate(l.node) : std::nullopt;
  std::string secret = s_.secret ? s_.secret() : std::string();
  l.retry_at = clock::now() + retry_delay;
  if (!where || secret.empty()) return;  // down (its publishes are not stored)
  amqp::client::uri u = node_uri(s_, *where, secret, l.node);
  l.st = link::state::connecting;
  std::weak_ptr<node_links> self = weak_from_this();
  std::string node = l.node;
  auto find = [self, node]() -> link* {
    auto s = self.lock();
    if (!s) return nullptr;
    auto it = s->links_.find(node);
    return it == s->links_.end() ? nullptr : it->second.get();
  };
  amqp::client::events ev;
  ev.ready = [find] {
    link* l = find();
    if (!l || !l->conn) return;
    l->conn->confirm_select(nullptr);  // publishes may follow at once: they are numbered from 1
    l->st = link::state::ready;
    spdlog::info("cluster: link to node '{}' open", l->node);
    for (auto& w : l->queued) {
      uint64_t seq = l->conn->publish_encoded(broker::forward_exchange, "", w.props, w.body);
      l->unconfirmed.emplace_back(seq, std::move(w.answer));
    }
    l->queued.clear();
  };
  ev.closed = [find, self](const std::string& error) {
    link* l = find();
    auto s = self.lock();
    if (!l || !s) return;
    if (l->st == link::state::ready || !error.empty())
      spdlog::warn("cluster: link to node '{}' closed: {}", l->node,
                   error.empty() ? "closed" : error);
    l->st = link::state::down;
    l->retry_at = clock::now() + retry_delay;
    // What the other node did not confirm is not known to be stored: nacked.
    for (auto& w : l->queued) s->reject(std::move(w.answer));
    l->queued.clear();
    for (auto& [seq, a] : l->unconfirmed) s->reject(std::move(a));
    l->unconfirmed.clear();
    // The connection calls this from its own code: it is dropped later, not under its feet.
    boost::asio::post(s->io_, [c = std::move(l->conn)] {});
  };
  ev.confirmed = [find](uint64_t seq, bool multiple, bool ack) {
    link* l = find();
    if (!l) return;
    auto& q = l->unconfirmed;
    if (multiple) {
      while (!q.empty() && q.front().first <= seq) {
        if (q.front().second) q.front().second(0, !ack);
        q.pop_front();
      }
      return;
    }
    for (auto it = q.begin(); it != q.end(); ++it)
      if (it->first == seq) {
        if (it->second) it->second(0, !ack);
        q.erase(it);
        return;
      }
  };
  l.conn = std::make_shared<amqp::client::connection>(
      io_, std::move(u), fmt::format("warren node link {} -> {}", s_.self, l.node), std::move(ev));
  l.conn->start();
}

namespace {

// The other node's error as this node's, or nullopt for a failure of the link itself.
std::optional<broker::error> peer_error(const std::string& why) {
  auto p = amqp::client::peer_error(why);
  if (!p) return std::nullopt;
  return broker::error{broker::error_code(p->code), std::move(p->text)};
}

}  // namespace

std::shared_ptr<amqp::client::connection> connect_to_node(boost::asio::io_context& io,
                                                          const node_links::settings& s,
                                                          const std::string& node, std::string name,
                                                          amqp::client::events ev) {
  auto where = s.locate ? s.locate(node) : std::nullopt;
  std::string secret = s.secret ? s.secret() : std::string();
  if (!where || secret.empty()) return nullptr;
  auto c = std::make_shared<amqp::client::connection>(io, node_uri(s, *where, secret, node),
                                                      std::move(name), std::move(ev));
  c->start();
  return c;
}

void call_on_node(boost::asio::io_context& io, const node_links::settings& s,
                  const std::string& node, amqp::protocol::method m,
                  std::function<void(amqp::server::server_context::remote_result)> done) {
  auto where = s.locate ? s.locate(node) : std::nullopt;
  std::string secret = s.secret ? s.secret() : std::string();
  if (!where || secret.empty()) {
    boost::asio::post(io, [done = std::move(done), node] {
      done(fmt::format("node '{}' is not running", node));
    });
    return;
  }
  struct op {
    std::shared_ptr<amqp::client::connection> conn;
    std::function<void(amqp::server::server_context::remote_result)> done;
    void answer(amqp::server::server_context::remote_result r) {
      if (!done) return;
      auto d = std::move(done);
      done = nullptr;
      d(std::move(r));
    }
  };
  auto o = std::make_shared<op>();
  o->done = std::move(done);
  amqp::client::uri u = node_uri(s, *where, secret, node);
  amqp::client::events ev;
  ev.ready = [o, m = std::move(m)] {
    if (!o->conn) return;
    std::visit(
        [&](const auto& x) {
          o->conn->call(x, [o](const amqp::protocol::method& ok) {
            o->answer(ok);
            o->conn->close();
          });
        },
        m);
  };
  ev.closed = [o, &io](const std::string& why) {
    if (auto e = peer_error(why))
      o->answer(std::move(*e));
    else
      o->answer(why.empty() ? std::string("closed") : why);
    // The connection calls this from its own code: dropped later, not under its feet.
    boost::asio::post(io, [c = std::move(o->conn)] {});
  };
  o->conn = std::make_shared<amqp::client::connection>(
      io, std::move(u), fmt::format("warren node call {} -> {}", s.self, node), std::move(ev));
  o->conn->start();
}

}  // namespace warren::app
