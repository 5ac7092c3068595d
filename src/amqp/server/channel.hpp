// One AMQP channel of a connection: its state, the assembly of content (method, header, body
// frames) and the handlers of the classes it serves. Owned by its amqp_connection, on the
// connection's worker. Broker operations are posted to the vhost's home worker and answered by
// a post back (see call_vhost); deliveries arrive the same way through the channel's link.
#pragma once

#include <boost/container/deque.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "amqp/client/connection.hpp"
#include "amqp/protocol/frame.hpp"
#include "auth/permissions.hpp"
#include "broker/vhost.hpp"
#include "broker/views.hpp"

namespace warren::net {
class worker;
}

namespace warren::amqp::server {

class amqp_connection;
class channel;

// The channel as the vhost sees it: a delivery_target whose calls (on the vhost's worker) are
// forwarded to the channel's worker. `ch` is read and cleared only on the channel's worker, so a
// delivery for a channel that has gone meanwhile is dropped (the vhost requeues it on close).
class channel_link final : public broker::delivery_target,
                           public std::enable_shared_from_this<channel_link> {
 public:
  explicit channel_link(net::worker& w) : worker_(w) {}
  void deliver(const std::string& consumer_tag, uint64_t delivery_tag, bool redelivered,
               const broker::message_ptr& m) override;
  void cancelled(const std::string& consumer_tag) override;
  void throttle(bool on) override;
  net::worker& worker() { return worker_; }

  channel* ch = nullptr;

 private:
  net::worker& worker_;
};

// A close that waits for every worker holding a part of some channels (their consumers,
// unacknowledged deliveries) to let go of them: one count per worker task, and the last task to
// finish posts `done` to the connection's worker. Tasks that never run (shutdown) leave it waiting.
class close_barrier {
 public:
  close_barrier(net::worker& back, std::function<void()> done)
      : back_(back), done_(std::move(done)) {}
  void add() { left_.fetch_add(1, std::memory_order_relaxed); }
  void arrive();

 private:
  std::atomic<int> left_{1};  // the closer's own count, given back once it has sent every task
  net::worker& back_;
  std::function<void()> done_;
};

class channel {
 public:
  enum class state : uint8_t { open, closing };

  channel(amqp_connection& conn, uint16_t id);
  ~channel();

  uint16_t id() const { return id_; }
  state current_state() const { return state_; }
  // The server closed the channel: its unacknowledged messages go back to their queues now.
  void mark_closing();
  bool flow_active() const { return flow_active_; }

  // Frames for this channel while it is open, in arrival order.
  void handle_frame(const protocol::frame_view& f);
  // Broker requests sent and not yet answered: a client's close waits for them, so that an
  // error they cause (e.g. 404 for a publish) reaches the client before close-ok, as in RabbitMQ.
  // A client's channel.close waiting for the vhost to let go counts as busy too.
  bool busy() const { return pending_ > 0 || detaching_; }

  // The channel lets go of the vhost now: the workers holding its consumers and unacknowledged
  // deliveries remove them (an auto-delete queue they held is deleted, and its vhost forgets
  // it), each then arriving at `barrier` if given and if the channel ever asked for deliveries
  // (a channel that never did holds nothing there to wait for). Nothing the vhost sends reaches
  // the channel afterwards. A second call does nothing (the destructor calls it too).
  void detach_from_vhost(const std::shared_ptr<close_barrier>& barrier = nullptr);
  // Whether the channel ever sent basic.consume or basic.get: only then can a worker hold its
  // consumers or unacknowledged deliveries, which a close must wait for.
  bool asked_for_deliveries() const { return asked_for_deliveries_; }

  // From the vhost, through the link.
  void on_deliver(const std::string& consumer_tag, uint64_t delivery_tag, bool redelivered,
                  const broker::message_ptr& m);
  void on_cancelled(const std::string& consumer_tag);
  // The connection's output drained: credit held back for a slow peer can go now.
  void on_output_drained();
  void on_throttle(bool on);
  // A copy for the management API (on the connection's worker).
  void describe(broker::channel_view& v) const;
  // Rates of the statistics over the last `secs` (the connection's tick calls it every 5 s).
  void sample_rates(double secs);
  // The channel's place in its user's max-channels count, given back when the channel goes.
  void hold(common::limit_slot s) { user_slot_ = std::move(s); }

 private:
  enum class content_phase : uint8_t { none, header, body };

  void handle_method(protocol::method& m);
  void handle_header(const protocol::frame_view& f);
  void handle_body(const protocol::frame_view& f);
  void complete_publish();
  void reset_content();
  void unexpected_frame(std::string_view what, uint16_t class_id, uint16_t method_id);
  // Runs op(vhost) on the vhost's worker, then reply(channel, result) back on this one (dropped
  // if the channel has gone by then).
  // `urgent` for acknowledgements: they free credit, so they go ahead of queued publishes.
  template <typename Op, typename Reply>
  void call_vhost(Op op, Reply reply, bool urgent = false);
  // The same on shard `shard` of the vhost (SIZE_MAX: the home, as call_vhost).
  // `ordered`: after our publishes still on their way to it (to_shard).
  template <typename Op, typename Reply>
  void call_shard(size_t shard, Op op, Reply reply, bool urgent = false, bool ordered = true);
  // The same on the shard of the queue named `queue`, looked up once what we sent before has
  // reached the home (a pipelined declaration of the queue included).
  template <typename Op, typename Reply>
  void call_queue(const std::string& queue, Op op, Reply reply);
  // fn(shard) on the worker of the queue's shard: looked up now when `settled` (nothing of ours
  // on its way through the home), else at the home after what we sent before.
  template <typename F>
  void on_queue(const std::string& queue, F fn, bool settled);
  // op(v) on v's worker, then reply(channel, result) on the channel's (call_vhost's two hops).
  template <typename Op, typename Reply>
  static auto bound_call(broker::vhost* v, std::shared_ptr<channel_link> link, Op op, Reply reply);
  // Runs task on shard `shard`'s worker, after any of our publishes still on their way there.
  template <typename Task>
  void to_shard(size_t shard, Task task, bool urgent = false, bool ordered = true);
  // fn on every shard of the vhost but the home, in order after what we sent each before.
  void on_other_shards(std::function<void(broker::vhost&)> fn);
  // The client's tag for a delivery numbered `shard_tag` by its shard (see tag_map_).
  uint64_t assign_tag(uint64_t shard_tag, bool ack_required);
  void settle(uint64_t tag, bool multiple, bool requeue, bool is_ack, uint16_t class_id,
              uint16_t method_id, bool urgent);
  void settle_on(size_t shard, uint64_t shard_tag, bool multiple, bool requeue, bool is_ack,
                 bool strict, uint16_t class_id, uint16_t method_id, bool urgent,
                 uint64_t client_tag);
  // A shard's part of a publish's answer (confirm or transaction mode, queues on other shards).
  void on_shard_answer(uint64_t seq, uint64_t ticket, bool rejected);
  // channel_confirms.cpp: a shard took a publish routed here in confirm mode.
  void on_handed(uint64_t seq);
  void pop_handed();  // the in-flight accounting of the answered publishes at the front
  // The answer a shard gives a publish routed here and handed to it outside confirm mode.
  const broker::shard_answer* flow_answer();
  // `n` hand-overs outside confirm mode: past handed_high, reading stops (handover_flow).
  void count_handed(uint32_t n);
  void resume_handed();
  void fail(const broker::error& e, uint16_t class_id, uint16_t method_id);
  // A queue method on a queue of another node of the cluster: sent there (channel_remote.cpp)
  // and true; false when the queue is not another running node's (the local path answers).
  template <typename M>
  bool forward_queue_method(const std::string& queue, M m);
  // A queue.declare with x-queue-leader-locator "balanced" of a queue no node has: placed on the
  // running node with the fewest queues, declared there if that is another (channel_remote.cpp);
  // false when it is declared here as any (declare_here).
  bool place_balanced(protocol::queue_declare& x);
  void declare_here(protocol::queue_declare& x);
  // queue.bind or queue.unbind of another node's queue (channel_remote.cpp); false as above.
  template <typename M>
  bool forward_binding(M& x);
  // --- consumers and basic.get on another node's queue (channel_remote_consume.cpp) ---
  // The node of `queue` when it is another running node's and this node can reach others.
  std::optional<std::string> remote_home(const std::string& queue);
  void consume_remote(const std::string& node, protocol::basic_consume& x);
  void cancel_remote(size_t origin, const std::string& tag, bool no_wait);
  void get_remote(const std::string& node, protocol::basic_get& x);
  void settle_remote(size_t origin, uint64_t tag, bool multiple, bool requeue, bool is_ack);
  void recover_remote();
  void qos_remote(uint16_t prefetch);
  void close_remotes();
  // The origin (index in remotes_) open to `node`, opened if none is.
  size_t origin_for(const std::string& node);
  // A synchronous method on an origin: `ok` gets its reply; `lost` runs instead when the
  // origin's connection went without an error of the other node (that node is down).
  void remote_call(size_t origin, protocol::method m, std::function<void(channel&)> ok,
                   std::function<void(channel&)> lost);
  void on_remote_ready(size_t origin);
  void on_remote_delivery(size_t origin, client::delivery&& d);
  void on_remote_cancelled(size_t origin, const std::string& tag);
  void on_remote_closed(size_t origin, const std::string& why);
  // The client's tag for delivery `tag` of origin `origin` (always numbered by the channel).
  uint64_t assign_remote_tag(size_t origin, uint64_t tag, bool ack_required);
  void send_remote_message(const client::delivery& d);
  broker::error node_down(const std::string& node, const std::string& queue);
  void reply_done();
  // The client's channel.close, once no broker reply is pending: close-ok once detached.
  void finish_client_close();
  // The vhost has let go after the client's close: close-ok, and the connection erases us.
  void on_detached();
  void send_message(const broker::message& m);
  void confirm_later(uint64_t seq);
  void give_credit();
  void send_pending_confirms();
  // Persistent messages are confirmed only once the store has synced them (journal tickets).
  void confirm_after_sync(uint64_t seq, uint64_t ticket, bool nack);
  void wait_for_sync();
  void on_synced();
  // "" means the last queue declared on this channel (an AMQP shorthand RabbitMQ supports).
  bool resolve_queue(std::string& name, uint16_t class_id, uint16_t method_id);
  // RabbitMQ's check_resource_access against the user's permissions in this vhost: true if
  // allowed, else the channel is closed with 403 ACCESS_REFUSED and RabbitMQ's text.
  bool permitted(auth::perm p, auth::resource r, std::string_view name, uint16_t class_id,
                 uint16_t method_id);
  // A passive declare: any of the three permissions will do.
  bool permitted_any(auth::resource r, std::string_view name, uint16_t class_id,
                     uint16_t method_id);
  // queue.bind/unbind: write on the queue, read on the exchange.
  bool permitted_binding(const std::string& queue, const std::string& exchange, uint16_t class_id,
                         uint16_t method_id);
  // basic.publish's write check, on the hot path: the last exchange allowed is remembered until
  // the user store changes. Sets `topic` when a topic permission may apply to the exchange.
  bool may_publish(const std::string& exchange, bool& topic);

  void on_exchange_declare(protocol::exchange_declare& x);
  void on_exchange_delete(protocol::exchange_delete& x);
  void on_exchange_bind(protocol::exchange_bind& x, bool bind);
  void on_queue_declare(protocol::queue_declare& x);
  void on_queue_bind(protocol::queue_bind& x);
  void on_queue_unbind(protocol::queue_unbind& x);
  void on_queue_purge(protocol::queue_purge& x);
  void on_queue_delete(protocol::queue_delete& x);
  void on_consume(protocol::basic_consume& x);
  void on_cancel(protocol::basic_cancel& x);
  void on_get(protocol::basic_get& x);
  void on_tx(const protocol::method& m, uint16_t class_id, uint16_t method_id);
  void on_settle(uint64_t tag, bool multiple, bool requeue, bool is_ack, uint16_t class_id,
                 uint16_t method_id);

  amqp_connection& conn_;
  uint16_t id_;
  uint64_t global_id_;  // unique across the broker: the vhost's key for this channel
  std::shared_ptr<channel_link> link_;
  state state_ = state::open;
  content_phase content_ = content_phase::none;
  bool flow_active_ = true;
  bool confirm_mode_ = false;
  bool tx_mode_ = false;
  // In a transaction, publishes and acknowledgements wait here until tx.commit.
  std::vector<std::function<void()>> tx_pending_;
  uint16_t prefetch_count_ = 0;  // basic.qos global=false: applies to consumers made after it
  uint64_t publish_seq_ = 0;     // last publish sequence number in confirm mode
  uint64_t acked_upto_ = 0;      // highest sequence number settled as ack
  uint64_t acked_sent_ = 0;      // highest sequence number whose ack went to the client
  bool confirm_flush_scheduled_ = false;
  struct unsynced_confirm {
    uint64_t seq;
    uint64_t ticket;
    bool nack;
    // Other shards' answers still to come, once the home's answer has counted them (`counted`);
    // an answer may come before the count, so this may be negative until then.
    int32_t remaining = 0;
    bool counted = true;
  };
  // Boost's deque allocates nothing until its first element; std::deque (libstdc++) takes 576
  // bytes at construction, twice per channel here, confirm mode or not.
  boost::container::deque<unsynced_confirm> unsynced_;  // in sequence order, waiting for the store
  bool sync_wait_ = false;                              // a when_synced callback is registered
  uint64_t max_ticket_ = 0;        // the last store ticket of our publishes (tx.commit)
  uint32_t uncredited_ = 0;        // deliveries written to the output buffer, not yet credited
  uint64_t uncredited_bytes_ = 0;  // their bodies
  bool credit_scheduled_ = false;
  bool throttled_ = false;  // a queue holds our publishes back (see vhost::backlog_high)
  uint32_t throttles_ = 0;  // shards holding them back
  // Queues on several shards (docs/architecture.md, "Spreading queues over workers").
  bool sharded_ = false;
  bool counts_answers_ = false;  // publishes may be answered by shards or other nodes
  // Delivery tags: while every delivery came from the home shard, in order, the client's tag is
  // the home's; from the first that did not (mapped_from_), the channel numbers them itself and
  // keeps where each unacknowledged one came from.
  uint64_t next_tag_ = 0;
  uint64_t mapped_from_ = 0;  // 0: not mapping
  // Before mapping: the shard of every delivery so far (the home until one comes), whose tags
  // less tag_offset_ are the client's.
  size_t first_shard_ = SIZE_MAX;
  uint64_t tag_offset_ = 0;
  struct tag_origin {
    size_t shard;
    uint64_t tag;
  };
  std::map<uint64_t, tag_origin> tag_map_;
  // Consumers by tag: their shard and whether they acknowledge (no_ack).
  struct consumer_place {
    std::string queue;
    bool no_ack;
    size_t remote = SIZE_MAX;  // else its origin in remotes_
  };
  std::map<std::string, consumer_place, std::less<>> consumers_;
  // Deliveries from shards other than the home not yet credited back, by shard.
  std::vector<std::pair<uint32_t, uint64_t>> uncredited_away_;
  int64_t remote_outstanding_ = 0;  // shard answers to transactional publishes still to come
  // Calls to the home (the authority) not yet answered: while there are, publishes go there too
  // rather than being routed on this worker's copy (complete_publish).
  uint32_t home_calls_ = 0;
  // Publishes routed here and handed to other shards, outside confirm mode: counted, not
  // answered one by one. Each shard takes one off when it has enqueued the message; past
  // handed_high the connection stops reading until they are down to handed_low, so that a
  // publisher cannot fill another worker's mailbox faster than it runs. Only the shard that
  // brings the count down to the low mark posts (the resume), so no post per message comes back.
  struct handover_flow {
    std::atomic<int64_t> outstanding{0};
    std::atomic<bool> waiting{false};  // the channel stopped its connection's reading
  };
  static constexpr int64_t handed_high = 256;
  static constexpr int64_t handed_low = 64;
  std::shared_ptr<handover_flow> flow_;
  std::shared_ptr<broker::shard_answer> flow_answer_;
  bool handover_paused_ = false;
  // In confirm mode, the publishes handed over to other shards or nodes stay in flight until
  // their confirm answers come (matched by sequence number): those routed here from the start,
  // those the authority routes from its reply on (entered uncounted when sent: an answer may
  // come before the reply), so that a publisher pipelining confirmed publishes to a slow node
  // is held back by the connection's flow control like one without confirms.
  struct handed_publish {
    uint64_t seq;
    int32_t remaining;  // answers still to come; below 0 while answers beat the count
    uint64_t bytes;
    bool counted = true;  // false until the authority's reply says how many will answer
  };
  boost::container::deque<handed_publish> handed_;
  std::vector<std::function<void()>> after_remote_;  // tx.commit waiting for them
  // Origins on other nodes of the cluster: one connection per node this channel consumes or
  // gets from, opened at the first use, closed with the channel (the other node requeues what
  // was not acknowledged). In tag_map_ an origin is the "shard" remote_base + its index; an
  // origin whose node went stays in place (its tags settle as nothing), a new one is appended.
  struct remote_origin;
  static constexpr size_t remote_base = size_t(1) << 24;
  std::vector<std::shared_ptr<remote_origin>> remotes_;
  uint16_t remote_global_prefetch_ = 0;  // basic.qos global, applied to each origin
  std::string last_queue_;
  // may_publish's memory: this exchange was allowed at this generation of the user store.
  std::string publish_allowed_;
  uint64_t publish_allowed_generation_ = 0;  // 0: nothing remembered
  bool publish_allowed_topic_ = false;       // the user has a topic permission on it
  uint32_t pending_ = 0;
  uint32_t inflight_publishes_ = 0;  // of pending_, the publishes (counted by the connection)
  uint64_t inflight_bytes_ = 0;      // their bodies
  bool close_requested_ = false;     // the client sent channel.close while replies were pending
  bool detaching_ = false;           // the client's close waits for the vhost to let go
  bool asked_for_deliveries_ = false;
  // Statistics for the management API.
  uint64_t stat_publish_ = 0;
  uint64_t stat_confirmed_ = 0;
  uint64_t stat_returned_ = 0;
  uint64_t stat_delivered_ = 0;
  uint64_t stat_acked_ = 0;
  std::array<uint64_t, 5> rate_base_{};  // the statistics at the last sample_rates()
  std::array<double, 5> rates_{};        // as broker::channel_view::rates
  common::limit_slot user_slot_;
  protocol::basic_publish publish_;
  std::unique_ptr<protocol::content_header> header_;  // from the first publish on
  std::string header_properties_;  // header_'s properties as the client encoded them
  // A node's forwarded publish: its target, taken out of the encoded properties (handle_header).
  // A pointer: most channels never carry one.
  std::shared_ptr<broker::forward_target> forward_;
  std::string body_;
};

}  // namespace warren::amqp::server
