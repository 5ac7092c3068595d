// Channel frames: content assembly, the basic, confirm and tx classes (the exchange and queue
// classes and the permission checks: channel_declarations.cpp). Reply codes and texts follow
// RabbitMQ 3.10 (rabbit_channel, rabbit_command_assembler). Broker work runs on the vhost's
// worker; see call_vhost.
#include "amqp/server/channel.hpp"

#include <fmt/format.h>

#include <atomic>
#include <random>

#include "amqp/protocol/properties_edit.hpp"
#include "amqp/server/channel_internal.hpp"
#include "amqp/server/connection.hpp"
#include "amqp/server/convert.hpp"
#include "net/worker.hpp"

namespace warren::amqp::server {

using namespace protocol;

namespace {

std::atomic<uint64_t> next_channel_id{1};

std::string generated_consumer_tag() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string s = "amq.ctag-";
  for (int i = 0; i < 22; ++i) s += alphabet[rng() % 64];
  return s;
}

}  // namespace

// ------------------------------------------------------------------------------ link

void channel_link::deliver(const std::string& consumer_tag, uint64_t delivery_tag, bool redelivered,
                           const broker::message_ptr& m) {
  // The vhost and the channel often share a worker: then this is a plain call.
  if (worker_.on_own_thread()) {
    if (ch) ch->on_deliver(consumer_tag, delivery_tag, redelivered, m);
    return;
  }
  // With the other deliveries this thread makes to that worker in its current handler.
  worker_.post_batched([self = shared_from_this(), consumer_tag, delivery_tag, redelivered, m] {
    if (self->ch) self->ch->on_deliver(consumer_tag, delivery_tag, redelivered, m);
  });
}

void channel_link::throttle(bool on) {
  worker_.run_or_post([self = shared_from_this(), on] {
    if (self->ch) self->ch->on_throttle(on);
  });
}

void channel_link::cancelled(const std::string& consumer_tag) {
  worker_.run_or_post([self = shared_from_this(), consumer_tag] {
    if (self->ch) self->ch->on_cancelled(consumer_tag);
  });
}

// ------------------------------------------------------------------------------ channel

channel::channel(amqp_connection& conn, uint16_t id)
    : conn_(conn), id_(id), global_id_(next_channel_id.fetch_add(1)) {
  broker::count(broker::global_counters::channels_opened);
  link_ = std::make_shared<channel_link>(conn_.conn().owner());
  link_->ch = this;
  uint64_t cid = global_id_, conn_id = conn_.id();
  auto link = link_;
  broker::vhost* v = &conn_.vhost();
  sharded_ = v->shard_count() > 1;
  // Other shards and other nodes of a cluster answer publishes themselves.
  counts_answers_ = sharded_ || v->in_cluster();
  first_shard_ = v->home_worker();
  // Inline on the home worker, like the operations that follow (call_vhost): posted there, it
  // would wait behind the mailbox while a method read in the same go ran first and found no
  // channel (a client that pipelines basic.consume after channel.open, or a busy home worker).
  conn_.home_of(*v).run_or_post([v, cid, conn_id, link] { v->open_channel(cid, conn_id, link); });
  if (sharded_) {
    // Every shard has a record of the channel, with one count of unacknowledged deliveries.
    auto unacked = std::make_shared<std::atomic<int64_t>>(0);
    conn_.home_of(*v).run_or_post([v, cid, unacked] { v->share_unacked(cid, unacked); });
    for (size_t s = 0; s < v->shard_count(); ++s)
      if (broker::vhost* sh = &v->shard_at(s); sh != v)
        conn_.worker_at(s).run_or_post(
            [sh, cid, conn_id, link, unacked] { sh->open_channel(cid, conn_id, link, unacked); });
  }
}

channel::~channel() {
  broker::count(broker::global_counters::channels_closed);
  detach_from_vhost();
}

void close_barrier::arrive() {
  if (left_.fetch_sub(1, std::memory_order_acq_rel) == 1) back_.post(std::move(done_));
}

void channel::detach_from_vhost(const std::shared_ptr<close_barrier>& barrier) {
  if (!link_) return;
  throttles_ = 0;
  if (throttled_) {
    throttled_ = false;
    conn_.throttle(false);
  }
  // Replies to our publishes will be dropped: give their flow-control credit back now.
  conn_.publish_finished(inflight_publishes_, inflight_bytes_);
  inflight_publishes_ = 0;
  inflight_bytes_ = 0;
  handed_.clear();
  if (handover_paused_) {
    handover_paused_ = false;
    conn_.throttle(false);
  }
  link_->ch = nullptr;
  link_.reset();
  close_remotes();
  uint64_t cid = global_id_;
  broker::vhost* v = &conn_.vhost();
  std::shared_ptr<close_barrier> wait = asked_for_deliveries_ ? barrier : nullptr;
  auto close_on = [&](net::worker& w, broker::vhost* shard) {
    if (wait) wait->add();
    w.post([shard, cid, wait] {
      shard->close_channel(cid);  // an auto-delete queue left without consumers goes here
      if (wait) wait->arrive();
    });
  };
  close_on(conn_.home_of(*v), v);
  if (sharded_)
    for (size_t s = 0; s < v->shard_count(); ++s)
      if (broker::vhost* sh = &v->shard_at(s); sh != v) close_on(conn_.worker_at(s), sh);
}

void channel::mark_closing() {
  state_ = state::closing;
  reset_content();
  detach_from_vhost();
  // Replies still on their way will be dropped now: a waiting client close need not wait. Our
  // channel.close has just been sent; the client's close crosses it and gets its close-ok.
  pending_ = 0;
  if (close_requested_) finish_client_close();
}

void channel::reply_done() {
  if (pending_ > 0) --pending_;
  if (pending_ != 0) return;
  if (close_requested_)
    finish_client_close();
  else
    conn_.channel_idle();  // a connection.close may be waiting for us (may destroy `this`)
}

void channel::finish_client_close() {
  close_requested_ = false;
  if (state_ != state::open) {
    // A pending reply closed the channel meanwhile (our channel.close crossed the client's): the
    // channel stays until the client's close-ok.
    conn_.send(id_, channel_close_ok{});
    conn_.conn().flush_soon();
    conn_.channel_idle();
    return;
  }
  // As RabbitMQ, whose channel waits for its queues to drop its consumers before close-ok: an
  // auto-delete queue they held is gone, and its vhost knows it, before the client can act on
  // the close-ok (declare the queue again, on this connection or another one).
  detaching_ = true;
  if (!asked_for_deliveries_) {
    // Nothing of it on any worker to wait for (no consumer, no unacknowledged delivery): a
    // channel that only published or declared closes at once, without a round trip.
    detach_from_vhost();
    return on_detached();
  }
  auto done = [c = conn_.conn().shared_from_this(), &conn = conn_, id = id_, gid = global_id_] {
    if (c->closing()) return;
    if (channel* ch = conn.find_channel(id); ch && ch->global_id_ == gid) ch->on_detached();
  };
  auto barrier = std::make_shared<close_barrier>(conn_.conn().owner(), std::move(done));
  detach_from_vhost(barrier);
  barrier->arrive();
}

void channel::on_detached() {
  if (!detaching_) return;
  detaching_ = false;
  conn_.send(id_, channel_close_ok{});
  conn_.conn().flush_soon();
  conn_.close_channel(id_);  // the connection erases this channel: nothing of `this` after
}

void channel::fail(const broker::error& e, uint16_t class_id, uint16_t method_id) {
  if (state_ != state::open) return;
  // A hard error closes the connection and destroys this channel: use nothing of `this` after.
  amqp_connection& conn = conn_;
  conn.channel_error(*this, reply_code(uint16_t(e.code)), e.text, class_id, method_id);
  conn.conn().flush_soon();
}

void channel::unexpected_frame(std::string_view what, uint16_t class_id, uint16_t method_id) {
  conn_.connection_error(reply_code::unexpected_frame, what, class_id, method_id);
}

void channel::reset_content() {
  content_ = content_phase::none;
  std::string().swap(body_);
}

void channel::handle_frame(const frame_view& f) {
  if (detaching_) return;  // the client closed the channel: nothing more may come before close-ok
  switch (content_) {
    case content_phase::header:
      if (f.type != frame_header) {
        unexpected_frame(fmt::format("expected content header for class {}, got non content "
                                     "header frame instead",
                                     class_basic),
                         publish_.amqp_class_id, publish_.amqp_method_id);
        return;
      }
      handle_header(f);
      return;
    case content_phase::body:
      if (f.type != frame_body) {
        unexpected_frame("expected content body, got non content body frame instead",
                         publish_.amqp_class_id, publish_.amqp_method_id);
        return;
      }
      handle_body(f);
      return;
    case content_phase::none:
      break;
  }
  if (f.type != frame_method) {
    unexpected_frame("expected method frame, got non method frame instead", 0, 0);
    return;
  }
  method m;
  decode_status st = decode_method(f.payload, m);
  if (st != decode_status::ok) {
    conn_.refuse_undecodable(f.payload, st);
    return;
  }
  handle_method(m);
}

void channel::handle_header(const frame_view& f) {
  common::byte_reader r(f.payload);
  uint16_t class_id = r.u16();
  uint16_t weight = r.u16();
  if (r.ok() && class_id != class_basic) {
    unexpected_frame(fmt::format("expected content header for class {}, got one for class {} "
                                 "instead",
                                 class_basic, class_id),
                     publish_.amqp_class_id, publish_.amqp_method_id);
    return;
  }
  if (r.ok() && weight != 0) {
    unexpected_frame(fmt::format("expected content header for class {}, got non content header "
                                 "frame instead",
                                 class_basic),
                     publish_.amqp_class_id, publish_.amqp_method_id);
    return;
  }
  // Made at the channel's first publish and kept: an idle or consuming channel does not carry
  // the decoded properties' 472 bytes (docs/benchmarks.md, "Memory per idle AMQP connection").
  if (!header_) header_ = std::make_unique<protocol::content_header>();
  forward_.reset();
  bool decoded = false;
  if (publish_.exchange == broker::forward_exchange && conn_.user().cluster_node &&
      f.payload.size() >= 12) {
    // A node's forwarded publish (broker/forward.hpp): its header comes out of the encoded
    // properties before they are decoded, so that only the publisher's are decoded, and
    // delivered later as the publisher encoded them. Without a valid one the vhost refuses it.
    // class, weight and body size take 12 bytes; the property flags and list follow.
    header_properties_.assign(reinterpret_cast<const char*>(f.payload.data()) + 12,
                              f.payload.size() - 12);
    if (auto v = protocol::take_first_header(header_properties_, broker::forward_header))
      if (auto t = broker::read_forward_value(*v))
        forward_ = std::make_shared<broker::forward_target>(std::move(*t));
    common::byte_reader head(f.payload.data(), 12),
        props(header_properties_.data(), header_properties_.size());
    header_->class_id = head.u16();
    head.u16();  // the weight, checked above
    header_->body_size = head.u64();
    header_->properties = {};
    decoded = head.ok() && protocol::decode_basic_properties(props, header_->properties) &&
              props.at_end();
  } else {
    decoded = decode_content_header(f.payload, *header_);
    if (decoded)  // class, weight and body size take 12 bytes; the properties follow
      header_properties_.assign(reinterpret_cast<const char*>(f.payload.data()) + 12,
                                f.payload.size() - 12);
  }
  if (!decoded) {
    conn_.connection_error(reply_code::frame_error, "cannot decode content header",
                           publish_.amqp_class_id, publish_.amqp_method_id);
    return;
  }
  uint64_t max = conn_.context().settings.max_message_size;
  if (header_->body_size > max) {
    // Differs: RabbitMQ checks after receiving the whole body; refusing at the header spares
    // buffering it. The closing channel drops the body frames that follow.
    conn_.channel_error(*this, reply_code::precondition_failed,
                        fmt::format("message size {} is larger than configured max size {}",
                                    header_->body_size, max),
                        publish_.amqp_class_id, publish_.amqp_method_id);
    return;
  }
  if (header_->body_size == 0) {
    complete_publish();
    return;
  }
  body_.reserve(size_t(header_->body_size));
  content_ = content_phase::body;
}

void channel::handle_body(const frame_view& f) {
  if (body_.size() + f.payload.size() > header_->body_size) {
    // Differs: RabbitMQ does not check this and waits for a frame that never fits.
    unexpected_frame(fmt::format("content body frames carry more than the {} bytes declared",
                                 header_->body_size),
                     publish_.amqp_class_id, publish_.amqp_method_id);
    return;
  }
  body_.append(reinterpret_cast<const char*>(f.payload.data()), f.payload.size());
  if (body_.size() == header_->body_size) complete_publish();
}

void channel::complete_publish() {
  content_ = content_phase::none;
  conn_.note_publish();
  ++stat_publish_;
  {
    auto& g = broker::global_counters::local();
    g.add(broker::global_counters::received);
    if (confirm_mode_) g.add(broker::global_counters::received_confirm);
    g.observe_size(body_.size());
  }
  bool topic = false;
  if (!may_publish(publish_.exchange, topic)) return;
  uint64_t seq = confirm_mode_ ? ++publish_seq_ : 0;
  const auto& uid = header_->properties.user_id;
  // A node of the cluster forwards other users' messages (broker/forward.hpp).
  if (uid && *uid != conn_.user().name && !conn_.user().cluster_node) {
    conn_.channel_error(*this, reply_code::precondition_failed,
                        fmt::format("user_id property set to '{}' but authenticated user was '{}'",
                                    *uid, conn_.user().name),
                        publish_.amqp_class_id, publish_.amqp_method_id);
    return;
  }
  auto msg = std::make_shared<broker::message>();
  if (const auto& exp = header_->properties.expiration) {
    int64_t ms = 0;
    if (!broker::parse_expiration(*exp, ms)) {
      conn_.channel_error(*this, reply_code::precondition_failed,
                          fmt::format("invalid expiration '{}': not a non-negative integer", *exp),
                          publish_.amqp_class_id, publish_.amqp_method_id);
      return;
    }
    msg->ttl_ms = ms;
  }
  msg->exchange = std::move(publish_.exchange);
  msg->routing_key = std::move(publish_.routing_key);
  msg->properties = to_broker(std::move(header_->properties));
  msg->amqp_properties = std::move(header_properties_);
  header_properties_ = std::string();
  msg->body = std::move(body_);
  body_ = std::string();
  bool mandatory = publish_.mandatory;
  // Null unless the user has a topic permission on this exchange (checked where its type is known).
  std::shared_ptr<const broker::access_checks> topic_check;
  if (topic) topic_check = topic_checks(conn_, msg->exchange);
  // Called once (now, or at tx.commit): the message moves on to the vhost, and comes back with
  // the reply only when a basic.return may need it.
  auto publish = [this, shared = broker::message_ptr(std::move(msg)), mandatory, seq,
                  topic_check = std::move(topic_check),
                  forward = std::exchange(forward_, nullptr)]() mutable {
    uint64_t bytes = shared->body.size();
    // Queues on other shards answer a confirmed or transactional publish themselves.
    std::shared_ptr<broker::shard_answer> answer;
    if (counts_answers_ && (seq != 0 || tx_mode_)) {
      answer = std::make_shared<broker::shard_answer>(
          [link = link_, seq](uint64_t ticket, bool rejected) {
            link->worker().run_or_post([link, seq, ticket, rejected] {
              if (link->ch) link->ch->on_shard_answer(seq, ticket, rejected);
            });
          });
      if (seq != 0) unsynced_.push_back({seq, 0, false, 0, false});
    }
    // Outside confirm mode and transactions, what other shards and nodes are handed is counted
    // by the channel's flow answer (count_handed): past handed_high the connection stops reading,
    // so that a publisher cannot fill another worker's mailbox or a link to another node faster
    // than they take it.
    std::shared_ptr<broker::shard_answer> flow;
    if (!answer && counts_answers_) {
      flow_answer();
      flow = flow_answer_;
    }
    conn_.publish_started(bytes);
    ++inflight_publishes_;
    inflight_bytes_ += bytes;
    // Confirmed and routed by the authority: in flight until every shard or node it reaches has
    // answered (handed_), not only until the reply.
    bool held = seq != 0 && counts_answers_;
    if (held) handed_.push_back({seq, 0, bytes, false});
    broker::message_ptr returnable = mandatory ? shared : nullptr;
    // The connection outlives its channels' replies only while open; the reply runs on this
    // worker only if the channel (and so the connection) still exists.
    using outcome = std::variant<broker::publish_outcome, broker::error>;
    using result = std::tuple<outcome, uint64_t, uint32_t>;
    auto on_reply = [returnable = std::move(returnable), mandatory, seq, bytes,
                     flow_counted = flow != nullptr, held](channel& ch, const result& res) {
      const auto& r = std::get<0>(res);
      uint64_t ticket = std::get<1>(res);
      uint32_t remote = std::get<2>(res);
      if (flow_counted && remote > 0)
        ch.count_handed(remote);
      else if (ch.counts_answers_ && seq == 0)
        ch.remote_outstanding_ += remote;
      if (held) {
        // The answers may have come first: they counted the entry down below zero.
        for (auto& h : ch.handed_)
          if (h.seq == seq && !h.counted) {
            h.remaining += int32_t(remote);
            h.counted = true;
            break;
          }
        ch.pop_handed();
      } else {
        ch.conn_.publish_finished(1, bytes);
        --ch.inflight_publishes_;
        ch.inflight_bytes_ -= std::min(bytes, ch.inflight_bytes_);
      }
      ch.max_ticket_ = std::max(ch.max_ticket_, ticket);
      if (auto* e = std::get_if<broker::error>(&r)) {
        ch.fail(*e, basic_publish::amqp_class_id, basic_publish::amqp_method_id);
        return;
      }
      auto outcome = std::get<broker::publish_outcome>(r);
      if (ch.state_ != state::open) return;
      if (outcome == broker::publish_outcome::unroutable)
        broker::count(mandatory ? broker::global_counters::unroutable_returned
                                : broker::global_counters::unroutable_dropped);
      if (outcome == broker::publish_outcome::unroutable && mandatory) {
        ++ch.stat_returned_;
        basic_return ret;
        ret.reply_code = uint16_t(reply_code::no_route);
        ret.reply_text = "NO_ROUTE";
        ret.exchange = returnable->exchange;
        ret.routing_key = returnable->routing_key;
        ch.conn_.send(ch.id_, ret);
        ch.send_message(*returnable);
      }
      if (seq != 0 && ch.counts_answers_) {
        // Its entry waits for this answer and the other shards' (on_shard_answer).
        for (auto& c : ch.unsynced_)
          if (c.seq == seq) {
            c.remaining += int32_t(remote);
            c.counted = true;
            c.ticket = std::max(c.ticket, ticket);
            c.nack = c.nack || outcome == broker::publish_outcome::rejected;
            break;
          }
        ch.on_synced();
      } else if (seq != 0) {
        bool nack = outcome == broker::publish_outcome::rejected;
        if (ticket != 0 || !ch.unsynced_.empty()) {
          ch.confirm_after_sync(seq, ticket, nack);
        } else if (nack) {
          ch.send_pending_confirms();
          ch.conn_.send(ch.id_, basic_nack{seq, false, false});
          ch.acked_upto_ = ch.acked_sent_ = seq;  // a later multiple ack starts after it
        } else {
          ch.confirm_later(seq);
        }
      }
      ch.conn_.conn().flush_soon();
    };
    // Routed here, on this worker's copy of the routing table (broker/routing_copy.cpp), unless
    // the channel runs on the home (whose vhost routes inline), the authority must route it (a
    // transaction, a topic permission; publish_here declines the rest), or something of ours is
    // still on its way through the home: a declaration or binding the copy may not have yet, or
    // a publish that one handed over from here could overtake (one channel's publishes to one
    // queue keep their order).
    size_t here = link_->worker().index();
    if (sharded_ && !tx_mode_ && !topic_check && !forward && home_calls_ == 0 &&
        here != conn_.vhost().home_worker()) {
      uint64_t ticket = 0;
      uint32_t remote = 0;
      // Each shard handed the message answers: in confirm mode the confirm's answer, else the
      // channel's flow answer (see handed_).
      const broker::shard_answer* ans = seq != 0 ? answer.get() : flow_answer();
      if (auto r = conn_.vhost().shard_at(here).publish_here(shared, global_id_, &ticket, ans,
                                                             &remote)) {
        ++pending_;
        // In confirm mode the publish is already held in flight until the shards answer (held,
        // above; on_reply counts them in); without, the flow answers count it.
        if (remote > 0 && seq == 0) count_handed(remote);
        auto link = link_;  // the reply may close the channel, or the connection
        on_reply(*this, result{std::move(*r), ticket, seq != 0 ? remote : 0});
        if (link->ch) link->ch->reply_done();
        return;
      }
    }
    call_vhost(
        [shared = std::move(shared), cid = global_id_, topic_check = std::move(topic_check),
         answer = std::move(answer), forward = std::move(forward),
         flow = std::move(flow)](broker::vhost& v) mutable {
          uint64_t ticket = 0;
          uint32_t remote = 0;
          const broker::shard_answer* ans = answer ? answer.get() : flow.get();
          if (forward) {
            outcome r = v.publish_forwarded(std::move(shared), std::move(*forward), cid, &ticket,
                                            ans, &remote);
            return result{std::move(r), ticket, remote};
          }
          if (topic_check)
            if (auto e =
                    topic_check->topic(auth::perm::write, shared->exchange, shared->routing_key, v))
              return result{outcome(std::move(*e)), ticket, remote};
          outcome r = v.publish(std::move(shared), cid, &ticket, ans, &remote);
          return result{std::move(r), ticket, remote};
        },
        std::move(on_reply));
  };
  if (tx_mode_)
    tx_pending_.push_back(std::move(publish));
  else
    publish();
}

namespace {
// The message's properties as the publisher encoded them, or else encoded now into `scratch`.
std::string_view encoded_properties(const broker::message& m, std::string& scratch) {
  if (!m.amqp_properties.empty()) return m.amqp_properties;
  scratch.clear();
  common::byte_writer w(scratch);
  protocol::encode_basic_properties(w, to_amqp(m.properties));
  return scratch;
}
}  // namespace

void channel::send_message(const broker::message& m) {
  std::string scratch;
  conn_.send_encoded_content(id_, encoded_properties(m, scratch), m.body);
}

void channel::on_deliver(const std::string& consumer_tag, uint64_t delivery_tag, bool redelivered,
                         const broker::message_ptr& m) {
  uint64_t tag;
  size_t shard = first_shard_;  // the delivering shard
  if (mapped_from_ == 0 && delivery_tag == next_tag_ + 1 + tag_offset_) {
    tag = ++next_tag_;  // one shard so far, in order: its tag less the offset
  } else {
    auto c = consumers_.find(consumer_tag);
    tag = assign_tag(delivery_tag, c == consumers_.end() || !c->second.no_ack);
    shard = conn_.vhost().tag_shard(delivery_tag);
  }
  size_t away = shard == conn_.vhost().home_worker() ? SIZE_MAX : shard;
  if (state_ != state::open) return;
  ++stat_delivered_;
  std::string scratch;
  conn_.send_delivery(
      id_, protocol::delivery_view{consumer_tag, tag, redelivered, m->exchange, m->routing_key},
      encoded_properties(*m, scratch), m);
  conn_.conn().flush_soon();
  if (away != SIZE_MAX) {
    if (uncredited_away_.size() <= away) uncredited_away_.resize(away + 1);
    ++uncredited_away_[away].first;
    uncredited_away_[away].second += m->body.size();
  } else {
    ++uncredited_;
    uncredited_bytes_ += m->body.size();
  }
  if (!credit_scheduled_) {
    credit_scheduled_ = true;
    link_->worker().post([link = link_] {
      if (link->ch) link->ch->give_credit();
    });
  }
}

void channel::on_other_shards(std::function<void(broker::vhost&)> fn) {
  if (!sharded_) return;
  broker::vhost* v = &conn_.vhost();
  for (size_t s = 0; s < v->shard_count(); ++s)
    if (broker::vhost* sh = &v->shard_at(s); sh != v)
      conn_.worker_at(s).run_or_post([sh, fn] { fn(*sh); });
}

uint64_t channel::assign_tag(uint64_t shard_tag, bool ack_required) {
  if (mapped_from_ == 0) {
    if (next_tag_ == 0) {
      // The first delivery: its shard numbers the client's tags, less an offset, until another
      // shard delivers.
      first_shard_ = conn_.vhost().tag_shard(shard_tag);
      tag_offset_ = shard_tag - 1;
    }
    if (shard_tag == next_tag_ + 1 + tag_offset_) return ++next_tag_;
    mapped_from_ = next_tag_ + 1;
  }
  uint64_t t = ++next_tag_;
  if (ack_required) tag_map_.emplace(t, tag_origin{conn_.vhost().tag_shard(shard_tag), shard_tag});
  return t;
}

void channel::give_credit() {
  credit_scheduled_ = false;
  // A peer that does not read keeps its credit until its output drains (on_output_drained).
  if (!link_ || conn_.conn().queued_bytes() > net::connection::write_high_watermark / 4) return;
  for (size_t s = 0; s < uncredited_away_.size(); ++s) {
    uint32_t n = uncredited_away_[s].first;
    uint64_t bytes = uncredited_away_[s].second;
    if (n == 0) continue;
    uncredited_away_[s] = {0, 0};
    broker::vhost* v = &conn_.vhost().shard_at(s);
    net::worker& w = conn_.worker_at(s);
    if (w.on_own_thread())
      v->credit(global_id_, n, bytes);
    else
      w.post_urgent([v, cid = global_id_, n, bytes] { v->credit(cid, n, bytes); });
  }
  if (uncredited_ == 0) return;
  uint32_t n = uncredited_;
  uint64_t bytes = uncredited_bytes_;
  uncredited_ = 0;
  uncredited_bytes_ = 0;
  broker::vhost* v = &conn_.vhost();
  net::worker& home = conn_.home_of(*v);
  if (home.on_own_thread())
    v->credit(global_id_, n, bytes);
  else
    home.post_urgent([v, cid = global_id_, n, bytes] { v->credit(cid, n, bytes); });
}

void channel::on_throttle(bool on) {
  // Each shard holding our publishes back says so once, and once again when it lets go.
  if (on)
    ++throttles_;
  else if (throttles_ > 0)
    --throttles_;
  bool now = throttles_ > 0;
  if (now == throttled_) return;
  throttled_ = now;
  conn_.throttle(now);
}

void channel::on_output_drained() {
  if (!credit_scheduled_) give_credit();
}

void channel::on_cancelled(const std::string& consumer_tag) {
  // consumer_cancel_notify: the server tells a client that announced it that its consumer is
  // gone (RabbitMQ sends nothing to other clients).
  if (state_ != state::open || !conn_.cancel_notify()) return;
  conn_.send(id_, basic_cancel{consumer_tag, false});
  conn_.conn().flush_soon();
}

// ------------------------------------------------------------------------------ basic class

void channel::on_consume(basic_consume& x) {
  asked_for_deliveries_ = true;
  if (!resolve_queue(x.queue, x.amqp_class_id, x.amqp_method_id)) return;
  if (!permitted(auth::perm::read, auth::resource::queue, x.queue, x.amqp_class_id,
                 x.amqp_method_id))
    return;
  if (x.consumer_tag.empty()) x.consumer_tag = generated_consumer_tag();
  if (auto node = remote_home(x.queue)) {  // another node's queue (channel_remote_consume.cpp)
    if (consumers_.count(x.consumer_tag))
      return fail({broker::error_code::not_allowed,
                   fmt::format("attempt to reuse consumer tag '{}'", x.consumer_tag)},
                  x.amqp_class_id, x.amqp_method_id);
    return consume_remote(*node, x);
  }
  bool placed = consumers_.try_emplace(x.consumer_tag, consumer_place{x.queue, x.no_ack}).second;
  auto link = link_;
  uint64_t cid = global_id_, conn_id = conn_.id();
  uint16_t prefetch = prefetch_count_;
  bool settled = pending_ == 0 && inflight_publishes_ == 0;
  ++pending_;
  // Custom rather than call_vhost: consume-ok must reach the client before any delivery, so the
  // reply is posted first and the queue dispatched after. On the queue's shard.
  std::string queue = x.queue;
  on_queue(
      queue,
      [link, cid, conn_id, prefetch, placed, q = x.queue, tag = x.consumer_tag, no_ack = x.no_ack,
       exclusive = x.exclusive, no_wait = x.no_wait,
       args = std::move(x.arguments)](broker::vhost* v) {
        broker::maybe_error e = v->consume(cid, q, tag, no_ack, exclusive, prefetch, conn_id, args);
        link->worker().run_or_post([link, e, tag, no_wait, placed] {
          if (!link->ch) return;
          channel& ch = *link->ch;
          if (e) {
            if (placed) ch.consumers_.erase(tag);  // else the tag was another consumer's
            ch.fail(*e, basic_consume::amqp_class_id, basic_consume::amqp_method_id);
          } else {
            if (!no_wait) ch.conn_.send(ch.id_, basic_consume_ok{tag});
            ch.conn_.conn().flush_soon();
          }
          if (link->ch) link->ch->reply_done();  // see call_vhost
        });
        if (!e) v->dispatch_queue(q);
      },
      settled);
}

void channel::on_cancel(basic_cancel& x) {
  bool no_wait = x.no_wait;
  std::string tag = x.consumer_tag;
  std::string queue;  // unknown tag: the home answers (cancel-ok, as RabbitMQ)
  if (auto c = consumers_.find(tag); c != consumers_.end()) {
    queue = c->second.queue;
    size_t remote = c->second.remote;
    consumers_.erase(c);
    if (remote != SIZE_MAX) return cancel_remote(remote, tag, no_wait);
  }
  call_queue(
      queue,
      [cid = global_id_, tag](broker::vhost& v) {
        v.cancel(cid, tag);
        return true;
      },
      [no_wait, tag](channel& ch, bool) {
        if (!no_wait) ch.conn_.send(ch.id_, basic_cancel_ok{tag});
        ch.conn_.conn().flush_soon();
      });
}

void channel::on_get(basic_get& x) {
  asked_for_deliveries_ = true;
  if (!resolve_queue(x.queue, x.amqp_class_id, x.amqp_method_id)) return;
  if (!permitted(auth::perm::read, auth::resource::queue, x.queue, x.amqp_class_id,
                 x.amqp_method_id))
    return;
  if (auto node = remote_home(x.queue)) return get_remote(*node, x);  // another node's queue
  call_queue(
      x.queue,
      [cid = global_id_, q = x.queue, no_ack = x.no_ack, conn_id = conn_.id()](broker::vhost& v) {
        return v.get(cid, q, no_ack, conn_id);
      },
      [no_ack = x.no_ack](channel& ch,
                          const std::variant<broker::get_ok, broker::get_empty, broker::error>& r) {
        if (auto* e = std::get_if<broker::error>(&r))
          return ch.fail(*e, basic_get::amqp_class_id, basic_get::amqp_method_id);
        if (std::holds_alternative<broker::get_empty>(r)) {
          ch.conn_.send(ch.id_, basic_get_empty{});
        } else {
          const auto& ok = std::get<broker::get_ok>(r);
          ++ch.stat_delivered_;
          uint64_t tag = ch.assign_tag(ok.delivery_tag, !no_ack);
          ch.conn_.send(ch.id_, basic_get_ok{tag, ok.redelivered, ok.msg->exchange,
                                             ok.msg->routing_key, ok.message_count});
          ch.send_message(*ok.msg);
        }
        ch.conn_.conn().flush_soon();
      });
}

void channel::on_settle(uint64_t tag, bool multiple, bool requeue, bool is_ack, uint16_t class_id,
                        uint16_t method_id) {
  if (is_ack) ++stat_acked_;
  if (tx_mode_) {
    // In a transaction, in order with the publishes.
    tx_pending_.push_back([this, tag, multiple, requeue, is_ack, class_id, method_id] {
      settle(tag, multiple, requeue, is_ack, class_id, method_id, false);
    });
    return;
  }
  // Urgent: frees prefetch room, so it overtakes queued publishes.
  settle(tag, multiple, requeue, is_ack, class_id, method_id, true);
}

void channel::settle(uint64_t tag, bool multiple, bool requeue, bool is_ack, uint16_t class_id,
                     uint16_t method_id, bool urgent) {
  size_t home = conn_.vhost().home_worker();
  size_t first = first_shard_ == home ? SIZE_MAX : first_shard_;
  auto first_tag = [this](uint64_t t) { return t == 0 ? 0 : t + tag_offset_; };
  if (mapped_from_ == 0)
    return settle_on(first, first_tag(tag), multiple, requeue, is_ack, true, class_id, method_id,
                     urgent, tag);
  // Deliveries came from several shards: the client's tags are ours (assign_tag).
  if (!multiple) {
    if (tag < mapped_from_)
      return settle_on(first, first_tag(tag), false, requeue, is_ack, true, class_id, method_id,
                       urgent, tag);
    auto it = tag_map_.find(tag);
    if (it == tag_map_.end())
      return fail(broker::error{broker::error_code::precondition_failed,
                                fmt::format("unknown delivery tag {}", tag)},
                  class_id, method_id);
    tag_origin o = it->second;
    tag_map_.erase(it);
    return settle_on(o.shard == home ? SIZE_MAX : o.shard, o.tag, false, requeue, is_ack, true,
                     class_id, method_id, urgent, tag);
  }
  if (tag > next_tag_)
    return fail(broker::error{broker::error_code::precondition_failed,
                              fmt::format("unknown delivery tag {}", tag)},
                class_id, method_id);
  uint64_t upto = tag == 0 ? UINT64_MAX : tag;
  // Everything up to `tag`: the home's own tags below mapped_from_, then per shard the largest
  // of its tags we numbered up to `tag` (a shard's tags reach us in its order).
  if (mapped_from_ > 1)
    settle_on(first, first_tag(std::min(upto, mapped_from_ - 1)), true, requeue, is_ack, false,
              class_id, method_id, urgent, tag);
  std::vector<tag_origin> last;
  auto end = tag_map_.upper_bound(upto);
  for (auto it = tag_map_.begin(); it != end; ++it) {
    auto p = std::find_if(last.begin(), last.end(),
                          [&](const tag_origin& o) { return o.shard == it->second.shard; });
    if (p == last.end())
      last.push_back(it->second);
    else
      p->tag = std::max(p->tag, it->second.tag);
  }
  tag_map_.erase(tag_map_.begin(), end);
  for (const auto& o : last)
    settle_on(o.shard == home ? SIZE_MAX : o.shard, o.tag, true, requeue, is_ack, false, class_id,
              method_id, urgent, tag);
}

void channel::settle_on(size_t shard, uint64_t shard_tag, bool multiple, bool requeue, bool is_ack,
                        bool strict, uint16_t class_id, uint16_t method_id, bool urgent,
                        uint64_t client_tag) {
  if (shard != SIZE_MAX && shard >= remote_base)
    return settle_remote(shard - remote_base, shard_tag, multiple, requeue, is_ack);
  call_shard(
      shard,
      [cid = global_id_, shard_tag, multiple, requeue, is_ack, strict](broker::vhost& v) {
        return is_ack ? v.ack(cid, shard_tag, multiple, strict)
                      : v.reject(cid, shard_tag, multiple, requeue, strict);
      },
      [class_id, method_id, client_tag](channel& ch, const broker::maybe_error& e) {
        if (!e) return;
        // The shard names its own tag: the client knows ours.
        if (e->code == broker::error_code::precondition_failed &&
            e->text.rfind("unknown delivery tag", 0) == 0)
          return ch.fail({e->code, fmt::format("unknown delivery tag {}", client_tag)}, class_id,
                         method_id);
        ch.fail(*e, class_id, method_id);
      },
      urgent, false);
}

void channel::on_tx(const method& m, uint16_t cid, uint16_t mid) {
  if (std::holds_alternative<tx_select>(m)) {
    if (confirm_mode_) {
      conn_.channel_error(*this, reply_code::precondition_failed,
                          "cannot switch from confirm to tx mode", cid, mid);
      return;
    }
    tx_mode_ = true;
    conn_.send(id_, tx_select_ok{});
    return;
  }
  if (!tx_mode_) {
    conn_.channel_error(*this, reply_code::precondition_failed, "channel is not transactional", cid,
                        mid);
    return;
  }
  if (std::holds_alternative<tx_rollback>(m)) {
    tx_pending_.clear();
    conn_.send(id_, tx_rollback_ok{});
    return;
  }
  // tx.commit: everything buffered goes to the vhost in order, then commit-ok comes back after
  // it (the vhost answers in order, so the commit-ok follows the last effect).
  auto pending = std::move(tx_pending_);
  tx_pending_.clear();
  for (auto& op : pending) op();
  // Persistent messages of the transaction are on disk before commit-ok, as in RabbitMQ.
  call_vhost([](broker::vhost&) { return true; },
             [](channel& ch, bool) {
               // Queues on other shards answer for their part of the transaction first.
               auto finish = [link = ch.link_] {
                 channel* c = link->ch;
                 if (!c) return;
                 channel& ch = *c;
                 auto commit_ok = [link = ch.link_] {
                   if (channel* c = link->ch; c && c->state_ == state::open) {
                     c->conn_.send(c->id_, tx_commit_ok{});
                     c->conn_.conn().flush_soon();
                   }
                 };
                 broker::journal* j = ch.conn_.vhost().get_journal();
                 if (!j || j->synced() >= ch.max_ticket_) return commit_ok();
                 j->when_synced(ch.max_ticket_,
                                [link = ch.link_, commit_ok] { link->worker().post(commit_ok); });
               };
               if (ch.remote_outstanding_ > 0)
                 ch.after_remote_.push_back(std::move(finish));
               else
                 finish();
             });
}

void channel::handle_method(method& m) {
  const uint16_t cid = method_class_id(m), mid = method_method_id(m);
  std::visit(
      [&](auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, channel_open>) {
          conn_.connection_error(reply_code::channel_error, "second 'channel.open' seen", cid, mid);
        } else if constexpr (std::is_same_v<T, channel_close>) {
          if (pending_ > 0) {
            close_requested_ = true;  // finish_client_close runs when the replies are in
            return;
          }
          finish_client_close();
        } else if constexpr (std::is_same_v<T, channel_close_ok>) {
          // Not closing: nothing to acknowledge. Ignored.
        } else if constexpr (std::is_same_v<T, channel_flow>) {
          // Differs: RabbitMQ refuses active=false (540); Warren pauses deliveries.
          flow_active_ = x.active;
          bool active = x.active;
          call_vhost(
              [cid = global_id_, active](broker::vhost& v) {
                v.set_flow(cid, active);
                return true;
              },
              [](channel&, bool) {});
          on_other_shards(
              [cid = global_id_, active](broker::vhost& v) { v.set_flow(cid, active); });
          conn_.send(id_, channel_flow_ok{x.active});
        } else if constexpr (std::is_same_v<T, channel_flow_ok>) {
          // Reply to a server-sent flow; Warren sends none. Ignored.
        } else if constexpr (std::is_same_v<T, basic_publish>) {
          if (x.immediate) {
            conn_.connection_error(reply_code::not_implemented, "immediate=true", cid, mid);
            return;
          }
          publish_ = std::move(x);
          content_ = content_phase::header;
        } else if constexpr (std::is_same_v<T, basic_qos>) {
          if (x.prefetch_size != 0) {
            conn_.connection_error(reply_code::not_implemented,
                                   fmt::format("prefetch_size!=0 ({})", x.prefetch_size), cid, mid);
            return;
          }
          if (x.global) {
            call_vhost(
                [cid = global_id_, n = x.prefetch_count](broker::vhost& v) {
                  v.set_global_prefetch(cid, n);
                  return true;
                },
                [](channel&, bool) {});
            on_other_shards([cid = global_id_, n = x.prefetch_count](broker::vhost& v) {
              v.set_global_prefetch(cid, n);
            });
            qos_remote(x.prefetch_count);
          } else {
            prefetch_count_ = x.prefetch_count;
          }
          conn_.send(id_, basic_qos_ok{});
        } else if constexpr (std::is_same_v<T, basic_recover> ||
                             std::is_same_v<T, basic_recover_async>) {
          constexpr bool reply = std::is_same_v<T, basic_recover>;
          if (!x.requeue) {
            // As RabbitMQ: redelivery to the same consumer is not implemented (a hard error).
            conn_.connection_error(reply_code::not_implemented, "requeue=false", cid, mid);
            return;
          }
          // Everything unacknowledged goes back, on every shard; the tags we numbered go with it.
          // Cleared first: a shard on this worker redelivers inline, numbering new tags.
          tag_map_.clear();
          on_other_shards([cid = global_id_](broker::vhost& v) { v.recover(cid); });
          recover_remote();
          call_vhost(
              [cid = global_id_](broker::vhost& v) {
                v.recover(cid);
                return true;
              },
              [](channel& ch, bool) {
                if constexpr (reply) ch.conn_.send(ch.id_, basic_recover_ok{});
                ch.conn_.conn().flush_soon();
              });
        } else if constexpr (std::is_same_v<T, basic_ack>) {
          on_settle(x.delivery_tag, x.multiple, false, true, cid, mid);
        } else if constexpr (std::is_same_v<T, basic_nack>) {
          on_settle(x.delivery_tag, x.multiple, x.requeue, false, cid, mid);
        } else if constexpr (std::is_same_v<T, basic_reject>) {
          on_settle(x.delivery_tag, false, x.requeue, false, cid, mid);
        } else if constexpr (std::is_same_v<T, confirm_select>) {
          if (tx_mode_) {
            conn_.channel_error(*this, reply_code::precondition_failed,
                                "cannot switch from tx to confirm mode", cid, mid);
            return;
          }
          confirm_mode_ = true;
          if (!x.nowait) conn_.send(id_, confirm_select_ok{});
        } else if constexpr (std::is_same_v<T, exchange_declare>) {
          on_exchange_declare(x);
        } else if constexpr (std::is_same_v<T, exchange_delete>) {
          on_exchange_delete(x);
        } else if constexpr (std::is_same_v<T, exchange_bind>) {
          on_exchange_bind(x, true);
        } else if constexpr (std::is_same_v<T, exchange_unbind>) {
          exchange_bind b{0,         x.destination,         x.source, x.routing_key,
                          x.no_wait, std::move(x.arguments)};
          on_exchange_bind(b, false);
        } else if constexpr (std::is_same_v<T, queue_declare>) {
          on_queue_declare(x);
        } else if constexpr (std::is_same_v<T, queue_bind>) {
          on_queue_bind(x);
        } else if constexpr (std::is_same_v<T, queue_unbind>) {
          on_queue_unbind(x);
        } else if constexpr (std::is_same_v<T, queue_purge>) {
          on_queue_purge(x);
        } else if constexpr (std::is_same_v<T, queue_delete>) {
          on_queue_delete(x);
        } else if constexpr (std::is_same_v<T, basic_consume>) {
          on_consume(x);
        } else if constexpr (std::is_same_v<T, basic_cancel>) {
          on_cancel(x);
        } else if constexpr (std::is_same_v<T, basic_get>) {
          on_get(x);
        } else if constexpr (std::is_same_v<T, tx_select> || std::is_same_v<T, tx_commit> ||
                             std::is_same_v<T, tx_rollback>) {
          on_tx(m, cid, mid);
        } else {
          // Methods only a server sends (connection.*, basic.deliver, *-ok, ...).
          conn_.connection_error(
              reply_code::command_invalid,
              fmt::format("{} is not valid from a client on a channel", method_name(m)), cid, mid);
        }
      },
      m);
}

void channel::describe(broker::channel_view& v) const {
  v.id = global_id_;
  v.number = id_;
  v.confirm = confirm_mode_;
  v.transactional = tx_mode_;
  v.closing = state_ != state::open;
  // Held back itself, or its publishes in flight hold its connection's reading.
  v.flow_blocked = throttled_ || handover_paused_ || (inflight_publishes_ > 0 && conn_.in_flow());
  v.prefetch = prefetch_count_;
  v.unconfirmed = publish_seq_ - acked_sent_;
  v.uncommitted = tx_pending_.size();
  v.publish = stat_publish_;
  v.confirmed = stat_confirmed_;
  v.returned = stat_returned_;
  v.delivered = stat_delivered_;
  v.acked = stat_acked_;
  v.rates = rates_;
}

void channel::sample_rates(double secs) {
  const std::array<uint64_t, 5> now{stat_publish_, stat_confirmed_, stat_returned_, stat_delivered_,
                                    stat_acked_};
  for (size_t i = 0; i < now.size(); ++i) {
    rates_[i] = secs > 0 ? double(now[i] - rate_base_[i]) / secs : 0;
    rate_base_[i] = now[i];
  }
}

}  // namespace warren::amqp::server
