// A channel's consumers and basic.get on a queue that lives on another node of the cluster
// (docs/cluster.md, "Consumers across nodes"). The other node is one more delivery origin of the
// channel, as a shard of the vhost is (docs/architecture.md, "Spreading queues over workers"):
// the channel opens one AMQP connection of its own to that node (server_context::node_connection,
// logged in as this node), sets the consumer's prefetch there, consumes or gets there, and
// relays that node's deliveries to its client with tags it numbers itself (tag_map_ keeps, for
// each, the origin and that node's tag). The client's acks, nacks and rejects go back to the
// origin with its tags; a multiple settle spanning shards and origins settles each. Closing the
// client's channel closes the origins: the other node requeues what was not acknowledged, and
// redelivers it flagged redelivered. A connection per (channel, node) rather than a channel on a
// shared link: the other node's own channel accounting (prefetch, unacked, exclusive consumers,
// requeue on close) then applies as it does to any client, with no new code there.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "amqp/server/channel.hpp"
#include "amqp/server/connection.hpp"
#include "common/byte_io.hpp"
#include "net/worker.hpp"

namespace warren::amqp::server {

using namespace protocol;

struct channel::remote_origin {
  std::string node;
  std::shared_ptr<client::connection> conn;  // null once gone
  bool ready = false;
  // Calls written (or waiting for the connection), in order: each reply pops the front.
  struct call {
    uint16_t class_id, method_id;
    std::function<void(channel&)> lost;
  };
  std::deque<call> calls;
  std::vector<std::function<void(client::connection&)>> waiting;  // until ready
  bool gone() const { return conn == nullptr; }
};

std::optional<std::string> channel::remote_home(const std::string& queue) {
  if (!conn_.context().node_connection || queue.empty()) return std::nullopt;
  auto info = conn_.vhost().remote_queue_of(queue);
  // A queue whose node is down gets RabbitMQ's 404 from the vhost; an exclusive queue of another
  // node's connection its 405.
  if (!info || !info->node_running || info->exclusive) return std::nullopt;
  return info->node;
}

broker::error channel::node_down(const std::string& node, const std::string& queue) {
  return broker::error{
      broker::error_code::not_found,
      fmt::format("home node '{}' of durable queue '{}' in vhost '{}' is down or inaccessible",
                  node, queue, conn_.vhost().name())};
}

size_t channel::origin_for(const std::string& node) {
  for (size_t i = 0; i < remotes_.size(); ++i)
    if (remotes_[i]->node == node && !remotes_[i]->gone()) return i;
  size_t index = remotes_.size();
  auto o = std::make_shared<remote_origin>();
  o->node = node;
  remotes_.push_back(o);
  client::events ev;
  std::weak_ptr<channel_link> weak = link_;
  auto with = [weak](auto fn) {
    if (auto l = weak.lock(); l && l->ch) fn(*l->ch);
  };
  ev.ready = [with, index] { with([&](channel& ch) { ch.on_remote_ready(index); }); };
  ev.closed = [with, index](const std::string& why) {
    with([&](channel& ch) { ch.on_remote_closed(index, why); });
  };
  ev.delivered = [with, index](client::delivery&& d) {
    with([&](channel& ch) { ch.on_remote_delivery(index, std::move(d)); });
  };
  ev.cancelled = [with, index](const std::string& tag) {
    with([&](channel& ch) { ch.on_remote_cancelled(index, tag); });
  };
  o->conn = conn_.context().node_connection(
      conn_.conn().owner(), conn_.vhost().name(), node,
      fmt::format("consumer link of channel {} of connection {}", id_, conn_.id()), std::move(ev));
  // null: the node is not reachable; the calls made on it answer `lost`.
  if (o->conn && remote_global_prefetch_ != 0) {
    o->waiting.push_back([n = remote_global_prefetch_](client::connection& c) {
      c.call(basic_qos{0, n, true});
    });
    o->calls.push_back({basic_qos::amqp_class_id, basic_qos::amqp_method_id, nullptr});
  }
  return index;
}

void channel::remote_call(size_t index, method m, std::function<void(channel&)> ok,
                          std::function<void(channel&)> lost) {
  remote_origin& o = *remotes_[index];
  uint16_t cid = method_class_id(m), mid = method_method_id(m);
  if (o.gone()) {
    if (lost) lost(*this);
    return;
  }
  o.calls.push_back({cid, mid, std::move(lost)});
  auto send = [weak = std::weak_ptr<channel_link>(link_), index, m = std::move(m),
               ok = std::move(ok)](client::connection& c) {
    std::visit(
        [&](const auto& x) {
          c.call(x, [weak, index, ok](const method&) {
            auto l = weak.lock();
            if (!l || !l->ch) return;
            channel& ch = *l->ch;
            if (index < ch.remotes_.size() && !ch.remotes_[index]->calls.empty())
              ch.remotes_[index]->calls.pop_front();
            if (ok) ok(ch);
          });
        },
        m);
  };
  if (o.ready)
    send(*o.conn);
  else
    o.waiting.push_back(std::move(send));
}

void channel::on_remote_ready(size_t index) {
  remote_origin& o = *remotes_[index];
  o.ready = true;
  auto waiting = std::move(o.waiting);
  o.waiting.clear();
  for (auto& w : waiting) w(*o.conn);
}

void channel::on_remote_closed(size_t index, const std::string& why) {
  remote_origin& o = *remotes_[index];
  // Dropped later: the connection calls this from its own code.
  conn_.conn().owner().post([c = std::move(o.conn)] {});
  o.conn.reset();
  o.ready = false;
  o.waiting.clear();
  auto calls = std::move(o.calls);
  o.calls.clear();
  if (state_ != state::open) return;
  // An error of the other node's channel (a 404, 403, 405 for a consume or get) is the client's
  // error, with the method that caused it.
  if (auto e = client::peer_error(why)) {
    uint16_t cid = calls.empty() ? 0 : calls.front().class_id;
    uint16_t mid = calls.empty() ? 0 : calls.front().method_id;
    return fail(broker::error{broker::error_code(e->code), e->text}, cid, mid);
  }
  // The node went (or closed the connection with 320): its consumers are cancelled, as
  // RabbitMQ cancels the consumers of a queue whose node went down (basic.cancel to a client
  // that announced consumer_cancel_notify). Outstanding tags of this origin settle as nothing.
  if (!why.empty())
    spdlog::info("consumer link of channel {} to node '{}' closed: {}", id_, o.node, why);
  // Calls first: a consume still unanswered fails the channel (404), and is not a consumer to
  // cancel.
  std::weak_ptr<channel_link> alive = link_;  // an answer may end the channel (reply_done)
  for (auto& c : calls) {
    if (state_ != state::open) return;
    if (c.lost) c.lost(*this);
    if (auto l = alive.lock(); !l || !l->ch) return;
  }
  for (auto it = consumers_.begin(); it != consumers_.end();) {
    if (it->second.remote != index) {
      ++it;
      continue;
    }
    std::string tag = it->first;
    it = consumers_.erase(it);
    on_cancelled(tag);
  }
}

void channel::on_remote_cancelled(size_t index, const std::string& tag) {
  auto it = consumers_.find(tag);
  if (it == consumers_.end() || it->second.remote != index) return;
  consumers_.erase(it);
  on_cancelled(tag);
}

uint64_t channel::assign_remote_tag(size_t index, uint64_t tag, bool ack_required) {
  if (mapped_from_ == 0) mapped_from_ = next_tag_ + 1;
  uint64_t t = ++next_tag_;
  if (ack_required) tag_map_.emplace(t, tag_origin{remote_base + index, tag});
  return t;
}

void channel::send_remote_message(const client::delivery& d) {
  std::string props;
  common::byte_writer w(props);
  encode_basic_properties(w, d.properties);
  conn_.send_encoded_content(id_, props, d.body);
}

void channel::on_remote_delivery(size_t index, client::delivery&& d) {
  if (state_ != state::open) return;
  auto c = consumers_.find(d.consumer_tag);
  // A delivery for a consumer cancelled meanwhile: the other node counts it as unacknowledged
  // until we settle it; requeued when the origin closes, as in RabbitMQ after a cancel.
  bool ack_required = c == consumers_.end() || !c->second.no_ack;
  uint64_t tag = assign_remote_tag(index, d.tag, ack_required);
  ++stat_delivered_;
  conn_.send(id_, basic_deliver{d.consumer_tag, tag, d.redelivered, d.exchange, d.routing_key});
  send_remote_message(d);
  conn_.conn().flush_soon();
}

// ------------------------------------------------------------------------------ the methods

void channel::consume_remote(const std::string& node, basic_consume& x) {
  size_t index = origin_for(node);
  consumers_.emplace(x.consumer_tag, consumer_place{x.queue, x.no_ack, index});
  ++pending_;
  std::string queue = x.queue, tag = x.consumer_tag;
  bool no_wait = x.no_wait;
  // The consumer's prefetch (basic.qos, global=false, applies to consumers made after it), then
  // the consume itself, with the client's tag: deliveries come back under it.
  remote_call(index, basic_qos{0, prefetch_count_, false}, nullptr, nullptr);
  basic_consume c = x;
  c.no_wait = false;  // the other node answers: its errors come back
  remote_call(
      index, std::move(c),
      [tag, no_wait](channel& ch) {
        if (!no_wait) ch.conn_.send(ch.id_, basic_consume_ok{tag});
        ch.conn_.conn().flush_soon();
        ch.reply_done();
      },
      [tag, node, queue](channel& ch) {
        ch.consumers_.erase(tag);
        ch.fail(ch.node_down(node, queue), basic_consume::amqp_class_id,
                basic_consume::amqp_method_id);
      });
}

void channel::cancel_remote(size_t index, const std::string& tag, bool no_wait) {
  ++pending_;
  auto answer = [tag, no_wait](channel& ch) {
    if (!no_wait) ch.conn_.send(ch.id_, basic_cancel_ok{tag});
    ch.conn_.conn().flush_soon();
    ch.reply_done();
  };
  // A node that went has no consumer left to cancel: cancel-ok all the same.
  remote_call(index, basic_cancel{tag, false}, answer, answer);
}

void channel::get_remote(const std::string& node, basic_get& x) {
  size_t index = origin_for(node);
  remote_origin& o = *remotes_[index];
  std::string queue = x.queue;
  auto lost = [node, queue](channel& ch) {
    ch.fail(ch.node_down(node, queue), basic_get::amqp_class_id, basic_get::amqp_method_id);
  };
  if (o.gone()) return lost(*this);
  ++pending_;
  o.calls.push_back({basic_get::amqp_class_id, basic_get::amqp_method_id, lost});
  auto send = [weak = std::weak_ptr<channel_link>(link_), index, g = x](client::connection& c) {
    c.get(g, [weak, index, no_ack = g.no_ack](std::optional<client::delivery> d, uint32_t count) {
      auto l = weak.lock();
      if (!l || !l->ch) return;
      channel& ch = *l->ch;
      if (index < ch.remotes_.size() && !ch.remotes_[index]->calls.empty())
        ch.remotes_[index]->calls.pop_front();
      if (ch.state_ != state::open) return;
      if (!d) {
        ch.conn_.send(ch.id_, basic_get_empty{});
      } else {
        ++ch.stat_delivered_;
        uint64_t tag = ch.assign_remote_tag(index, d->tag, !no_ack);
        ch.conn_.send(ch.id_,
                      basic_get_ok{tag, d->redelivered, d->exchange, d->routing_key, count});
        ch.send_remote_message(*d);
      }
      ch.conn_.conn().flush_soon();
      ch.reply_done();
    });
  };
  if (o.ready)
    send(*o.conn);
  else
    o.waiting.push_back(std::move(send));
}

void channel::settle_remote(size_t index, uint64_t tag, bool multiple, bool requeue, bool is_ack) {
  if (index >= remotes_.size()) return;
  remote_origin& o = *remotes_[index];
  // The node went: it requeued what this origin had unacknowledged; nothing to settle.
  if (o.gone()) return;
  auto send = [tag, multiple, requeue, is_ack](client::connection& c) {
    if (is_ack)
      c.ack(tag, multiple);
    else
      c.nack(tag, multiple, requeue);
  };
  if (o.ready)
    send(*o.conn);
  else
    o.waiting.push_back(std::move(send));
}

void channel::recover_remote() {
  for (size_t i = 0; i < remotes_.size(); ++i)
    if (!remotes_[i]->gone()) remote_call(i, basic_recover{true}, nullptr, nullptr);
}

void channel::qos_remote(uint16_t prefetch) {
  remote_global_prefetch_ = prefetch;
  for (size_t i = 0; i < remotes_.size(); ++i)
    if (!remotes_[i]->gone()) remote_call(i, basic_qos{0, prefetch, true}, nullptr, nullptr);
}

void channel::close_remotes() {
  for (auto& o : remotes_) {
    if (!o->conn) continue;
    auto c = std::move(o->conn);
    o->calls.clear();
    o->waiting.clear();
    c->close();  // the other node requeues what was not acknowledged
  }
}

}  // namespace warren::amqp::server
