// One AMQP 0-9-1 connection: the handshake (header, start/start-ok, tune/tune-ok, open), channel
// 0, heartbeats, the close handshakes, and routing of channel frames to channels. Owned by its
// net::connection and so by one worker; every call runs on that worker's thread.
//
// Error handling follows RabbitMQ (reply text "NAME - explanation"). Where RabbitMQ drops the
// socket silently or crashes, Warren sends connection.close with a code; docs/compatibility.md
// lists those differences.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "amqp/protocol/frame.hpp"
#include "amqp/server/channel.hpp"
#include "amqp/server/server_context.hpp"
#include "broker/views.hpp"
#include "net/connection.hpp"

namespace warren::amqp::server {

class amqp_connection final : public net::connection_handler {
 public:
  using clock = std::chrono::steady_clock;

  explicit amqp_connection(const server_context& ctx);
  ~amqp_connection() override;

  size_t on_data(std::span<const uint8_t> data) override;
  void on_tick(clock::time_point now) override;
  void on_shutdown() override;
  void on_closed() override;
  void on_output_drained() override;

  // Memory and disk alarms drive this: while blocked, a client that announced the
  // connection.blocked capability is told so, and a connection that has published stops being
  // read until unblocked. Consumers keep receiving.
  void set_blocked(bool blocked, std::string_view reason);

  // A copy for the management API (on this connection's worker), with its channels.
  void describe(broker::connection_view& v) const;
  // The management API closes the connection: connection.close 320 CONNECTION_FORCED.
  void force_close(std::string_view reason);
  // The node fenced itself (its fence is set before this runs): an open connection is closed with
  // 320 and the reason. One still in its handshake is left to be refused at connection.open, with
  // the same code and reason, rather than dropped without a word. True if it was closed now.
  bool fence(std::string_view reason);
  // Every AMQP connection of worker `w` (call on w's thread).
  static void describe_all(net::worker& w, std::vector<broker::connection_view>& out);
  // Closes the connection `id` if it is on worker `w` (call on w's thread). True if found.
  static bool force_close(net::worker& w, uint64_t id, std::string_view reason);
  // Closes every connection of worker `w` to vhost `vhost` (the vhost is being deleted).
  static void close_vhost(net::worker& w, const broker::vhost* vhost, std::string_view reason);

  // --- used by channels ---
  template <typename M>
  void send(uint16_t channel, const M& m) {
    protocol::write_method(conn().out(), channel, m);
    sent_since_tick_ = true;
  }
  void send_encoded_content(uint16_t channel, std::string_view encoded_properties,
                            std::string_view body);
  // basic.deliver with its content (protocol::write_delivery). A large body is not copied: its
  // frames point into the message, which the output keeps alive until they are written
  // (net::connection::append_shared).
  void send_delivery(uint16_t channel, const protocol::delivery_view& d,
                     std::string_view encoded_properties, const broker::message_ptr& m);
  // Soft error: channel.close on that channel; the channel ignores everything until close-ok.
  void channel_error(channel& ch, protocol::reply_code code, std::string_view text,
                     uint16_t class_id, uint16_t method_id);
  // Hard error: connection.close; everything but close/close-ok is ignored from then on.
  void connection_error(protocol::reply_code code, std::string_view text, uint16_t class_id = 0,
                        uint16_t method_id = 0);
  const server_context& context() const { return ctx_; }
  broker::vhost& vhost() { return *vhost_; }
  // Unique across the broker: exclusive queues are owned by it.
  uint64_t id() const { return id_; }
  // The worker that owns a vhost (where broker work for it is posted).
  net::worker& home_of(const broker::vhost& v) const { return ctx_.pool->at(v.home_worker()); }
  // The worker running shard i of a vhost (a shard's index is its worker's).
  net::worker& worker_at(size_t i) const { return ctx_.pool->at(i); }
  const auth::user& user() const { return *user_; }
  // What the user may do in the open vhost (null: nothing), as the user store has it now: fetched
  // again only when the store's generation has moved since the last call (one atomic load when it
  // has not). A permission change therefore applies from a channel's next operation on.
  const std::shared_ptr<const auth::vhost_access>& access();
  // The store's generation that access() last answered for.
  uint64_t access_generation() const { return access_generation_; }
  uint32_t frame_max() const { return frame_max_; }
  bool cancel_notify() const { return cap_cancel_notify_; }
  void note_publish();
  // Publishes handed to the vhost and not yet answered. Past a limit the connection stops
  // reading its socket until the vhost catches up: a fast publisher slows to the broker's pace
  // instead of filling the vhost worker's mailbox (credit-based flow control, like RabbitMQ's).
  // Counted in messages and in body bytes: 256 publishes of 1 MB each were 256 MB per
  // connection waiting in the home worker's mailbox.
  void publish_started(uint64_t bytes);
  void publish_finished(uint32_t n, uint64_t bytes);
  // Reading paused by flow control: too many publishes in flight, or a channel held back.
  bool in_flow() const { return flow_paused_ || throttled_channels_ > 0; }
  // A channel's queue backlog holds its publishes back: stop reading while any channel is held.
  void throttle(bool on);
  // 540 for unknown method ids, 501 for arguments that do not decode.
  void refuse_undecodable(std::span<const uint8_t> payload, protocol::decode_status st);
  // The client closed channel `id` (close-ok already sent): forget it.
  void close_channel(uint16_t id) {
    erase_channel(id);
    channel_idle();
  }
  // A channel has no broker replies outstanding: a deferred connection.close may complete.
  void channel_idle();
  channel* find_channel(uint16_t id);

 private:
  enum class phase : uint8_t { header, start_ok, tune_ok, open_wait, open, closing };

  void handle_frame(const protocol::frame_view& f);
  void handle_channel0(const protocol::frame_view& f);
  void handle_start_ok(const protocol::connection_start_ok& m);
  void handle_tune_ok(const protocol::connection_tune_ok& m);
  void handle_open(const protocol::connection_open& m);
  // RabbitMQ's connection limits (node, vhost, user) and the vhost's existence (null: none), in
  // its order; false when refused.
  bool take_connection_slots(broker::vhost* v, const protocol::connection_open& m);
  void handle_channel_frame(const protocol::frame_view& f);
  void open_channel(uint16_t id);
  void erase_channel(uint16_t id);
  // A framing error leaves the byte stream unusable: reply 501 and read nothing more.
  void fatal_frame_error(std::string_view text);
  void update_reading();
  // Sends connection.blocked once per blocking, to an open client that asked for it.
  void tell_blocked();
  void refuse_login(std::string_view mechanism, std::string_view why);
  // The connection is done with its vhost: its exclusive queues are deleted. Once only.
  void leave_vhost();
  // The client's connection.close once every channel is detached from the vhost: close-ok.
  void finish_client_close();
  // channel_idle after the current call returns: a channel closed by a broker reply while a
  // client close waits may be in the middle of its own code.
  void channel_idle_soon();
  // SASL EXTERNAL: on TLS with a verified client certificate only.
  bool offers_external();
  std::string describe();

  const server_context& ctx_;
  phase phase_ = phase::header;
  bool cap_auth_failure_close_ = false;
  bool cap_blocked_ = false;
  bool cap_cancel_notify_ = false;
  bool blocked_ = false;
  bool blocked_told_ = false;    // connection.blocked sent; connection.unblocked is owed
  bool reading_paused_ = false;  // by us: the peer's silence is not a missed heartbeat
  bool published_ = false;
  bool client_close_pending_ = false;
  bool detaching_channels_ = false;  // the client's close waits for the vhost to let go of them
  bool left_vhost_ = false;
  bool flow_paused_ = false;
  uint32_t inflight_publishes_ = 0;
  uint64_t inflight_bytes_ = 0;
  uint32_t throttled_channels_ = 0;  // connection.close waits for channels' broker replies
  uint16_t channel_max_ = 0;
  uint16_t heartbeat_ = 0;
  uint32_t frame_max_ = protocol::frame_min_size;  // before tune-ok, the spec's minimum
  clock::time_point accepted_;
  clock::time_point last_recv_;
  clock::time_point last_send_;
  bool sent_since_tick_ = false;  // since on_tick last looked: last_send_ is then "now"
  clock::time_point close_deadline_;
  std::string blocked_reason_;
  // For the management API.
  int64_t connected_at_ = 0;  // wall ms
  std::string mechanism_;
  protocol::field_table client_properties_;
  uint64_t rate_bytes_in_ = 0, rate_bytes_out_ = 0;  // at the last rate sample
  clock::time_point rate_at_;
  double recv_rate_ = 0, send_rate_ = 0;
  auth::user_ptr user_;  // the version of the user at login, kept while connected
  std::shared_ptr<const auth::vhost_access> access_;  // see access()
  uint64_t access_generation_ = 0;                    // the store's start at 1
  broker::vhost* vhost_ = nullptr;
  // The user's connection and channel counts (user limits); set at connection.open.
  std::shared_ptr<auth::user_counts> user_counts_;
  // This connection's places in the node's, the vhost's and the user's connection counts, from
  // connection.open until it leaves its vhost.
  common::limit_slot node_slot_, vhost_slot_, user_slot_;
  uint64_t id_;
  std::vector<std::unique_ptr<channel>> channels_;  // sorted by id; most connections have few
};

}  // namespace warren::amqp::server
