// AMQP connection state machine. Reply codes and texts follow RabbitMQ 3.10 (rabbit_reader);
// deliberate differences are marked "Differs:" and listed in docs/compatibility.md.
#include "amqp/server/connection.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <atomic>
#include <optional>

#include "amqp/server/alarm_board.hpp"
#include "auth/sasl.hpp"
#include "net/tls.hpp"

namespace warren::amqp::server {

using namespace protocol;

namespace {

// "NAME - explanation", cut to the 255 bytes a short string holds, as RabbitMQ does.
std::string reply_text(reply_code code, std::string_view text) {
  std::string s = fmt::format("{} - {}", reply_code_name(code), text);
  if (s.size() > 255) {
    s.resize(252);
    s += "...";
  }
  return s;
}

// How long we wait for the peer's close-ok after sending connection.close.
constexpr std::chrono::seconds close_ok_timeout{3};
// After our close-ok to a client's connection.close, the client closes the socket first (as with
// RabbitMQ: a client may take our end of stream, arriving before it has finished closing, for an
// error). Whoever does not within this time is closed by us. RabbitMQ waits the negotiated
// heartbeat timeout, at most 30 s; a few seconds are plenty for a client that is closing anyway,
// and keep a socket that will never be closed from lingering long.
constexpr std::chrono::seconds client_close_linger{5};

}  // namespace

namespace {
std::atomic<uint64_t> next_connection_id{1};
}

amqp_connection::amqp_connection(const server_context& ctx)
    : ctx_(ctx), id_(next_connection_id.fetch_add(1)) {
  accepted_ = last_recv_ = last_send_ = rate_at_ = clock::now();
  connected_at_ = broker::wall_ms();
  broker::count(broker::global_counters::connections_opened);
}

amqp_connection::~amqp_connection() {
  broker::count(broker::global_counters::connections_closed);
}

bool amqp_connection::offers_external() {
  return conn().tls() && conn().tls()->peer_verified();
}

std::string amqp_connection::describe() {
  return net::host_port(conn().peer_address(), conn().peer_port());
}

size_t amqp_connection::on_data(std::span<const uint8_t> data) {
  last_recv_ = clock::now();
  // A node past its lease's deadline handles nothing more (docs/cluster.md, "Fencing"), even
  // before its cluster thread notices and closes every connection.
  if (phase_ == phase::open && ctx_.fence && ctx_.fence->lapsed(last_recv_)) {
    force_close(ctx_.fence->refusal());
    return data.size();
  }
  size_t used = 0;
  if (phase_ == phase::header) {
    switch (check_protocol_header(data)) {
      case header_status::need_more:
        return 0;
      case header_status::mismatch:
        // The spec: answer with the protocol header we do speak, then close.
        conn().out().append(protocol_header);
        conn().close_gracefully(std::chrono::seconds(1));
        return data.size();
      case header_status::ok:
        break;
    }
    used = protocol_header.size();
    connection_start start;
    start.version_major = 0;
    start.version_minor = 9;
    start.server_properties = ctx_.server_properties;
    start.mechanisms = std::string(offers_external() ? auth::offered_mechanisms_with_external
                                                     : auth::offered_mechanisms);
    start.locales = "en_US";
    send(0, start);
    phase_ = phase::start_ok;
  }
  while (used < data.size() && !conn().closing()) {
    parse_result r = parse_frame(data.subspan(used), frame_max_);
    if (r.status == parse_status::need_more) break;
    if (r.status == parse_status::error) {
      fatal_frame_error(r.error_text);
      return data.size();
    }
    used += r.consumed;
    handle_frame(r.frame);
  }
  return conn().closing() ? data.size() : used;
}

void amqp_connection::handle_frame(const frame_view& f) {
  if (f.channel == 0) {
    handle_channel0(f);
    return;
  }
  if (phase_ == phase::closing) return;  // only channel 0's close/close-ok matter now
  if (phase_ != phase::open) {
    connection_error(reply_code::channel_error,
                     fmt::format("frame on channel {} before the connection is open", f.channel));
    return;
  }
  if (f.type == frame_heartbeat) {
    connection_error(reply_code::unexpected_frame,
                     fmt::format("heartbeat frame on channel {}", f.channel));
    return;
  }
  handle_channel_frame(f);
}

void amqp_connection::handle_channel0(const frame_view& f) {
  if (f.type == frame_heartbeat) return;  // any traffic counts as liveness
  if (f.type != frame_method) {
    if (phase_ != phase::closing)
      connection_error(reply_code::unexpected_frame,
                       fmt::format("content frame (type {}) on channel 0", f.type));
    return;
  }
  method m;
  decode_status st = decode_method(f.payload, m);
  if (phase_ == phase::closing) {
    // After our connection.close, only close-ok (or a crossing close) is acted upon.
    if (st != decode_status::ok) return;
    if (std::holds_alternative<connection_close_ok>(m)) {
      conn().close_now();
    } else if (std::holds_alternative<connection_close>(m)) {
      // Our close crossed the client's: it gets its close-ok and closes first, as below.
      send(0, connection_close_ok{});
      conn().await_peer_close(client_close_linger);
    }
    return;
  }
  if (st != decode_status::ok) {
    refuse_undecodable(f.payload, st);
    return;
  }
  uint16_t cid = method_class_id(m), mid = method_method_id(m);
  auto unexpected = [&](std::string_view state) {
    connection_error(reply_code::channel_error,
                     fmt::format("unexpected method in connection state {}", state), cid, mid);
  };
  switch (phase_) {
    case phase::start_ok:
      if (auto* x = std::get_if<connection_start_ok>(&m)) return handle_start_ok(*x);
      return unexpected("starting");
    case phase::tune_ok:
      if (auto* x = std::get_if<connection_tune_ok>(&m)) return handle_tune_ok(*x);
      return unexpected("tuning");
    case phase::open_wait:
      if (auto* x = std::get_if<connection_open>(&m)) return handle_open(*x);
      if (std::holds_alternative<connection_close>(m)) break;
      return unexpected("opening");
    default:
      break;
  }
  if (std::holds_alternative<connection_close>(m)) {
    client_close_pending_ = true;
    channel_idle();  // answers now unless a channel still waits for the broker
    return;
  }
  if (std::holds_alternative<connection_update_secret>(m)) {
    // As RabbitMQ's internal backend: its credentials do not expire, so a new secret is accepted.
    send(0, connection_update_secret_ok{});
    return;
  }
  if (std::holds_alternative<connection_blocked>(m) ||
      std::holds_alternative<connection_unblocked>(m)) {
    return;  // clients may echo these; nothing to do
  }
  unexpected("running");
}

void amqp_connection::refuse_undecodable(std::span<const uint8_t> payload, decode_status st) {
  common::byte_reader r(payload);
  uint16_t c = r.u16(), mm = r.u16();
  if (st == decode_status::unknown_method) {
    // Differs: RabbitMQ's reader crashes on unknown ids and drops the socket.
    connection_error(reply_code::not_implemented,
                     fmt::format("unknown method (class {}, method {})", c, mm), c, mm);
    return;
  }
  // RabbitMQ's code for arguments that do not decode (truncated, trailing bytes, bad table).
  connection_error(reply_code::frame_error,
                   fmt::format("cannot decode arguments of {}", method_name(c, mm)), c, mm);
}

void amqp_connection::handle_start_ok(const connection_start_ok& m) {
  client_properties_ = m.client_properties;
  mechanism_ = m.mechanism;
  broker::count(broker::global_counters::auth_attempts);
  if (const field_table* caps = table_table(m.client_properties, "capabilities")) {
    cap_auth_failure_close_ = table_bool(*caps, "authentication_failure_close").value_or(false);
    cap_blocked_ = table_bool(*caps, "connection.blocked").value_or(false);
    cap_cancel_notify_ = table_bool(*caps, "consumer_cancel_notify").value_or(false);
  }
  std::optional<auth::credentials> creds;
  bool external = m.mechanism == auth::external_mechanism && offers_external();
  if (external) {
    // The TLS handshake verified the client certificate: its subject CN is the user.
    creds = auth::credentials{conn().tls()->peer_common_name(), {}};
    if (creds->username.empty()) {
      refuse_login(m.mechanism, "the client certificate's subject has no CN");
      return;
    }
  } else {
    if (!auth::is_offered_mechanism(m.mechanism)) {
      refuse_login(m.mechanism, fmt::format("unknown authentication mechanism '{}'", m.mechanism));
      return;
    }
    creds = auth::parse_response(m.mechanism, m.response);
    if (!creds) {
      refuse_login(m.mechanism, "malformed SASL response");
      return;
    }
  }
  auth::user_ptr who;
  switch (external
              ? ctx_.users->login_without_password(creds->username, conn().peer_address(), &who)
              : ctx_.users->login(*creds, conn().peer_address(), &who)) {
    case auth::login_result::ok:
      break;
    case auth::login_result::invalid_credentials:
      refuse_login(m.mechanism, fmt::format("user '{}' - invalid credentials", creds->username));
      return;
    case auth::login_result::loopback_only:
      refuse_login(m.mechanism,
                   fmt::format("user '{}' can only connect via localhost", creds->username));
      return;
  }
  user_ = std::move(who);
  connection_tune tune;
  tune.channel_max = ctx_.settings.channel_max;
  tune.frame_max = ctx_.settings.frame_max;
  tune.heartbeat = ctx_.settings.heartbeat;
  send(0, tune);
  phase_ = phase::tune_ok;
}

void amqp_connection::refuse_login(std::string_view mechanism, std::string_view why) {
  broker::count(broker::global_counters::auth_failed);
  spdlog::warn("{}: {} login refused: {}", describe(), mechanism, why);
  if (!cap_auth_failure_close_) {
    // RabbitMQ's behaviour for clients that do not announce authentication_failure_close.
    conn().close_gracefully(std::chrono::seconds(1));
    return;
  }
  std::string text = fmt::format(
      "Login was refused using authentication mechanism {}. For details see the broker logfile.",
      mechanism);
  // Differs: the loopback rule is named in the reply so that the user knows what to change.
  if (why.find("localhost") != std::string_view::npos)
    text = fmt::format("Login was refused using authentication mechanism {}: {} (loopback_users)",
                       mechanism, why);
  connection_error(reply_code::access_refused, text);
}

const std::shared_ptr<const auth::vhost_access>& amqp_connection::access() {
  // Read before fetching: what access() returns is as of this generation or later, so the cache
  // may be refreshed once too often, never kept past a change.
  uint64_t g = ctx_.users->generation();
  if (g != access_generation_) {
    access_ = ctx_.users->access(user_->name, vhost_->name());
    access_generation_ = g;
  }
  return access_;
}

void amqp_connection::handle_tune_ok(const connection_tune_ok& m) {
  const auto& s = ctx_.settings;
  // Differs: RabbitMQ drops the socket silently on these; Warren says why in connection.close.
  // 0 means "no limit" and is taken as the server's maximum.
  // One format for every refusal, as RabbitMQ's "negotiated ~w = ~w is ~w than the ~w allowed
  // value (~w)".
  auto refuse = [&](std::string_view what, uint32_t got, std::string_view cmp,
                    std::string_view bound, uint32_t limit) {
    connection_error(reply_code::not_allowed,
                     fmt::format("negotiated {} = {} is {} than the {} allowed value ({})", what,
                                 got, cmp, bound, limit),
                     m.amqp_class_id, m.amqp_method_id);
  };
  uint32_t fmax = m.frame_max == 0 ? s.frame_max : m.frame_max;
  if (fmax < frame_min_size)
    return refuse("frame_max", m.frame_max, "lower", "minimum", frame_min_size);
  if (fmax > s.frame_max) return refuse("frame_max", m.frame_max, "higher", "maximum", s.frame_max);
  uint16_t cmax = m.channel_max == 0 ? s.channel_max : m.channel_max;
  if (cmax > s.channel_max)
    return refuse("channel_max", m.channel_max, "higher", "maximum", s.channel_max);
  frame_max_ = fmax;
  channel_max_ = cmax;
  heartbeat_ = m.heartbeat;  // the client's choice; 0 disables heartbeats
  phase_ = phase::open_wait;
}

void amqp_connection::handle_open(const connection_open& m) {
  broker::vhost* v = ctx_.vhosts->find(m.virtual_host);
  if (!take_connection_slots(v, m)) return;
  if (!auth::user_store::may_access_vhost(*user_, m.virtual_host)) {
    node_slot_.reset();
    vhost_slot_.reset();
    user_slot_.reset();
    connection_error(
        reply_code::not_allowed,
        fmt::format("access to vhost '{}' refused for user '{}'", m.virtual_host, user_->name),
        m.amqp_class_id, m.amqp_method_id);
    return;
  }
  vhost_ = v;
  send(0, connection_open_ok{});
  phase_ = phase::open;
  // An alarm on before the connection opened: it starts blocked, and (as in RabbitMQ) hears so
  // when it first publishes, by which time a client has registered its blocked handler.
  if (ctx_.alarms) {
    alarm::alarm_set on = ctx_.alarms->on(conn().owner().index());
    if (on.any() && !blocked_) {
      blocked_ = true;
      blocked_reason_ = blocked_reason(on);
    }
  }
  spdlog::debug("{}: user '{}' opened vhost '{}'", describe(), user_->name, v->name());
}

// RabbitMQ's rabbit_reader order and texts: the node limit (is_over_node_connection_limit), the
// vhost's existence and limit (is_over_vhost_connection_limit), the user's limit
// (is_over_user_connection_limit); the vhost permission comes after. A limit lowered below the
// count refuses new connections only.
bool amqp_connection::take_connection_slots(broker::vhost* v, const connection_open& m) {
  auto refuse = [&](std::string text) {
    node_slot_.reset();
    vhost_slot_.reset();
    connection_error(reply_code::not_allowed, text, m.amqp_class_id, m.amqp_method_id);
    return false;
  };
  // A fenced node serves no one (docs/cluster.md): 320, as a node shutting down.
  if (ctx_.fence && ctx_.fence->refuses(clock::now())) {
    node_slot_.reset();
    vhost_slot_.reset();
    connection_error(reply_code::connection_forced,
                     fmt::format("connection refused: {}", ctx_.fence->refusal()), m.amqp_class_id,
                     m.amqp_method_id);
    return false;
  }
  if (ctx_.node_connections) {
    if (auto limit = ctx_.node_connections->try_acquire())
      return refuse(
          fmt::format("connection refused: node connection limit ({}) is reached", *limit));
    node_slot_ = common::limit_slot(ctx_.node_connections);
  }
  if (!v) return refuse(fmt::format("vhost {} not found", m.virtual_host));
  if (auto limit = v->connections().try_acquire())
    return refuse(
        fmt::format("access to vhost '{}' refused for user '{}': connection limit ({}) is reached",
                    m.virtual_host, user_->name, *limit));
  vhost_slot_ = common::limit_slot(&v->connections());
  user_counts_ = ctx_.users->counts(user_->name);
  if (auto limit = user_counts_->connections.try_acquire())
    return refuse(
        fmt::format("connection refused for user '{}': user connection limit ({}) is reached",
                    user_->name, *limit));
  user_slot_ = common::limit_slot(&user_counts_->connections);
  return true;
}

void amqp_connection::handle_channel_frame(const frame_view& f) {
  channel* ch = find_channel(f.channel);
  if (!ch) {
    if (f.type != frame_method) {
      connection_error(reply_code::unexpected_frame,
                       "expected method frame, got non method frame instead");
      return;
    }
    method m;
    decode_status st = decode_method(f.payload, m);
    if (st != decode_status::ok) {
      refuse_undecodable(f.payload, st);
      return;
    }
    if (std::holds_alternative<channel_open>(m)) {
      open_channel(f.channel);
      return;
    }
    if (std::holds_alternative<channel_close_ok>(m)) return;  // late answer to a crossing close
    connection_error(reply_code::channel_error, "expected 'channel.open'", method_class_id(m),
                     method_method_id(m));
    return;
  }
  if (ch->current_state() == channel::state::closing) {
    // After our channel.close, only close and close-ok are acted upon; the rest is dropped.
    if (f.type != frame_method) return;
    method m;
    if (decode_method(f.payload, m) != decode_status::ok) return;
    if (std::holds_alternative<channel_close_ok>(m)) {
      erase_channel(f.channel);
    } else if (std::holds_alternative<channel_close>(m)) {
      send(f.channel, channel_close_ok{});
      erase_channel(f.channel);
    } else if (std::holds_alternative<channel_open>(m)) {
      connection_error(reply_code::channel_error, "second 'channel.open' seen",
                       channel_open::amqp_class_id, channel_open::amqp_method_id);
    }
    return;
  }
  ch->handle_frame(f);
}

void amqp_connection::channel_idle() {
  if (!client_close_pending_ || phase_ == phase::closing || detaching_channels_) return;
  for (const auto& c : channels_)
    if (c->busy()) return;
  // As RabbitMQ, whose channels wait for their queues before the connection's close-ok: the
  // workers holding the channels' consumers drop them first, so an auto-delete queue they held
  // is gone, and its vhost knows it, before the client can declare it again elsewhere.
  detaching_channels_ = true;
  if (std::none_of(channels_.begin(), channels_.end(),
                   [](const auto& c) { return c->asked_for_deliveries(); })) {
    // Nothing of them on any worker to wait for: close-ok at once, without a round trip.
    for (const auto& c : channels_) c->detach_from_vhost();
    return finish_client_close();
  }
  auto barrier =
      std::make_shared<close_barrier>(conn().owner(), [c = conn().shared_from_this(), this] {
        if (!c->closing()) finish_client_close();
      });
  for (const auto& c : channels_) c->detach_from_vhost(barrier);
  barrier->arrive();
}

void amqp_connection::finish_client_close() {
  if (phase_ == phase::closing) return;
  client_close_pending_ = false;
  send(0, connection_close_ok{});
  phase_ = phase::closing;
  // As RabbitMQ, the connection's resources go with the close-ok (a client may redeclare an
  // exclusive queue on a new connection at once), not when the socket closes.
  channels_.clear();
  leave_vhost();
  // Differs: RabbitMQ discards input for up to the heartbeat timeout (at most 30 s); Warren for
  // client_close_linger. Neither half-closes first.
  conn().await_peer_close(client_close_linger);
}

void amqp_connection::channel_idle_soon() {
  boost::asio::post(conn().owner().io(), [c = conn().shared_from_this(), this] {
    if (!c->closing()) channel_idle();
  });
}

void amqp_connection::leave_vhost() {
  // The connection stops counting towards its limits with its close-ok, as its exclusive queues
  // go then too.
  node_slot_.reset();
  vhost_slot_.reset();
  user_slot_.reset();
  if (!vhost_ || left_vhost_) return;
  left_vhost_ = true;
  broker::vhost* v = vhost_;
  uint64_t id = id_;
  home_of(*v).post([v, id] { v->close_connection(id); });
}

void amqp_connection::open_channel(uint16_t id) {
  // Differs: RabbitMQ checks only the count of channels; the spec makes channel_max the highest
  // channel number, and Warren enforces both.
  if (id > channel_max_) {
    connection_error(
        reply_code::not_allowed,
        fmt::format("channel number {} is above the negotiated channel_max ({})", id, channel_max_),
        channel_open::amqp_class_id, channel_open::amqp_method_id);
    return;
  }
  if (channels_.size() >= channel_max_) {
    connection_error(reply_code::not_allowed,
                     fmt::format("number of channels opened ({}) has reached the negotiated "
                                 "channel_max ({})",
                                 channels_.size(), channel_max_));
    return;
  }
  // The user's max-channels, counted over all its connections (RabbitMQ's rabbit_reader text;
  // a connection error, with no method, as there).
  common::limit_slot slot;
  if (user_counts_) {
    if (auto limit = user_counts_->channels.try_acquire()) {
      connection_error(reply_code::not_allowed,
                       fmt::format("number of channels opened for user '{}' has reached the "
                                   "maximum allowed user limit of {}",
                                   user_->name, *limit));
      return;
    }
    slot = common::limit_slot(&user_counts_->channels);
  }
  auto it = std::lower_bound(channels_.begin(), channels_.end(), id,
                             [](const auto& c, uint16_t v) { return c->id() < v; });
  it = channels_.insert(it, std::make_unique<channel>(*this, id));
  (*it)->hold(std::move(slot));
  send(id, channel_open_ok{});
}

channel* amqp_connection::find_channel(uint16_t id) {
  auto it = std::lower_bound(channels_.begin(), channels_.end(), id,
                             [](const auto& c, uint16_t v) { return c->id() < v; });
  return it != channels_.end() && (*it)->id() == id ? it->get() : nullptr;
}

void amqp_connection::erase_channel(uint16_t id) {
  auto it = std::lower_bound(channels_.begin(), channels_.end(), id,
                             [](const auto& c, uint16_t v) { return c->id() < v; });
  if (it != channels_.end() && (*it)->id() == id) channels_.erase(it);
}

void amqp_connection::send_encoded_content(uint16_t ch, std::string_view encoded_properties,
                                           std::string_view body) {
  write_encoded_content_header_frame(conn().out(), ch, body.size(), encoded_properties);
  write_body_frames(conn().out(), ch, body, frame_max_);
  sent_since_tick_ = true;
}

void amqp_connection::send_delivery(uint16_t ch, const delivery_view& d,
                                    std::string_view encoded_properties,
                                    const broker::message_ptr& m) {
  std::string_view body = m->body;
  // Below this a copy costs less than a splice (a reference count, an entry, an iovec) and keeps
  // a burst of small deliveries in one contiguous write.
  constexpr size_t by_reference_from = 16 * 1024;
  if (body.size() < by_reference_from) {
    write_delivery(conn().out(), ch, d, encoded_properties, body, frame_max_);
  } else {
    net::connection& c = conn();
    write_delivery_head(c.out(), ch, d, encoded_properties, body.size());
    write_body_frames_by_reference(c.out(), ch, body, frame_max_,
                                   [&](std::string_view part) { c.append_shared(m, part); });
  }
  sent_since_tick_ = true;
}

void amqp_connection::channel_error(channel& ch, reply_code code, std::string_view text,
                                    uint16_t class_id, uint16_t method_id) {
  if (is_hard_error(code)) {
    connection_error(code, text, class_id, method_id);
    return;
  }
  channel_close c;
  c.reply_code = uint16_t(code);
  c.reply_text = reply_text(code, text);
  c.class_id = class_id;
  c.method_id = method_id;
  send(ch.id(), c);
  ch.mark_closing();
  // The channel waits for nothing now; a client's connection.close may have waited for it.
  if (client_close_pending_) channel_idle_soon();
}

void amqp_connection::connection_error(reply_code code, std::string_view text, uint16_t class_id,
                                       uint16_t method_id) {
  if (phase_ == phase::closing || conn().closing()) return;
  spdlog::warn("{}: closing connection: {} - {}", describe(), reply_code_name(code), text);
  connection_close c;
  c.reply_code = uint16_t(code);
  c.reply_text = reply_text(code, text);
  c.class_id = class_id;
  c.method_id = method_id;
  send(0, c);
  phase_ = phase::closing;
  channels_.clear();
  close_deadline_ = clock::now() + close_ok_timeout;
  if (blocked_) conn().pause_reading(false);  // we must read the close-ok
}

void amqp_connection::fatal_frame_error(std::string_view text) {
  // text already starts with "FRAME_ERROR - ".
  spdlog::warn("{}: {}", describe(), text);
  if (phase_ != phase::closing) {
    connection_close c;
    c.reply_code = uint16_t(reply_code::frame_error);
    c.reply_text = std::string(text.substr(0, 255));
    send(0, c);
  }
  phase_ = phase::closing;
  channels_.clear();
  conn().close_gracefully(close_ok_timeout);
}

void amqp_connection::on_tick(clock::time_point now) {
  // Sends only raise a flag (a clock read per frame cost more than the rest of a small
  // delivery's write): the heartbeat sees the last send to within a tick, which only ever makes
  // it come a little early.
  if (sent_since_tick_) {
    last_send_ = now;
    sent_since_tick_ = false;
  }
  // Byte rates for the management API, over the last 5 s or so.
  if (now - rate_at_ >= std::chrono::seconds(5)) {
    double secs = std::chrono::duration<double>(now - rate_at_).count();
    recv_rate_ = double(conn().bytes_received() - rate_bytes_in_) / secs;
    send_rate_ = double(conn().bytes_sent() - rate_bytes_out_) / secs;
    rate_bytes_in_ = conn().bytes_received();
    rate_bytes_out_ = conn().bytes_sent();
    rate_at_ = now;
    for (auto& ch : channels_) ch->sample_rates(secs);
  }
  if (phase_ == phase::closing) {
    if (now >= close_deadline_) conn().close_now();
    return;
  }
  if (phase_ != phase::open) {
    if (now - accepted_ >= ctx_.settings.handshake_timeout) {
      spdlog::warn("{}: handshake not completed within {} ms, closing", describe(),
                   ctx_.settings.handshake_timeout.count());
      conn().close_now();
    }
    return;
  }
  if (heartbeat_ == 0) return;
  // While we do not read, the peer's heartbeats wait in the socket (RabbitMQ likewise pauses
  // its heartbeat monitor for a blocked connection).
  if (reading_paused_) last_recv_ = now;
  auto interval = std::chrono::seconds(heartbeat_);
  if (now - last_recv_ >= 2 * interval) {
    // As RabbitMQ: a peer silent for two intervals is gone; no close method is sent.
    spdlog::warn("{}: missed heartbeats from client, timeout: {}s", describe(), heartbeat_);
    conn().close_now();
    return;
  }
  if (now - last_send_ >= interval / 2) {
    write_heartbeat_frame(conn().out());
    last_send_ = now;
    conn().flush();
  }
}

void amqp_connection::on_shutdown() {
  if (phase_ == phase::open) {
    connection_error(reply_code::connection_forced,
                     "broker forced connection closure with reason 'shutdown'");
    conn().flush();
    close_deadline_ = clock::now() + std::chrono::seconds(1);
  } else {
    conn().close_now();
  }
}

void amqp_connection::on_output_drained() {
  for (auto& c : channels_) c->on_output_drained();
}

void amqp_connection::on_closed() {
  // Channels tell the vhost they are gone (their unacked messages are requeued), then the
  // connection's exclusive queues are deleted: both posts go to the vhost in this order.
  channels_.clear();
  leave_vhost();
}

namespace {
// In-flight publishes per connection before reading pauses, and the level at which it resumes.
constexpr uint32_t inflight_high = 256;
constexpr uint32_t inflight_low = 64;
constexpr uint64_t inflight_high_bytes = 4u << 20;
constexpr uint64_t inflight_low_bytes = 1u << 20;
}  // namespace

void amqp_connection::note_publish() {
  published_ = true;
  if (blocked_) {
    tell_blocked();
    update_reading();
  }
}

void amqp_connection::publish_started(uint64_t bytes) {
  inflight_bytes_ += bytes;
  if ((++inflight_publishes_ >= inflight_high || inflight_bytes_ >= inflight_high_bytes) &&
      !flow_paused_) {
    flow_paused_ = true;
    update_reading();
  }
}

void amqp_connection::publish_finished(uint32_t n, uint64_t bytes) {
  inflight_publishes_ -= std::min(n, inflight_publishes_);
  inflight_bytes_ -= std::min(bytes, inflight_bytes_);
  if (flow_paused_ && inflight_publishes_ <= inflight_low &&
      inflight_bytes_ <= inflight_low_bytes) {
    flow_paused_ = false;
    update_reading();
  }
}

void amqp_connection::throttle(bool on) {
  if (on)
    ++throttled_channels_;
  else if (throttled_channels_ > 0)
    --throttled_channels_;
  update_reading();
}

void amqp_connection::update_reading() {
  if (phase_ == phase::closing || conn().closing()) return;
  reading_paused_ = flow_paused_ || throttled_channels_ > 0 || (blocked_ && published_);
  conn().pause_reading(reading_paused_);
}

void amqp_connection::set_blocked(bool blocked, std::string_view reason) {
  if (blocked == blocked_) return;
  blocked_ = blocked;
  blocked_reason_ = blocked ? std::string(reason) : std::string();
  if (blocked) {
    tell_blocked();
  } else if (blocked_told_) {
    blocked_told_ = false;
    if (phase_ == phase::open) {
      send(0, connection_unblocked{});
      conn().flush();
    }
  }
  update_reading();
}

void amqp_connection::tell_blocked() {
  if (phase_ != phase::open || !cap_blocked_ || blocked_told_) return;
  send(0, connection_blocked{blocked_reason_});
  blocked_told_ = true;
  conn().flush();
}

// ----------------------------------------------------------------------------- management

void amqp_connection::describe(broker::connection_view& v) const {
  auto& c = const_cast<amqp_connection*>(this)->conn();
  v.id = id_;
  v.worker = c.owner().index();
  v.peer_host = c.peer_address().to_string();
  v.peer_port = c.peer_port();
  auto local = c.local_endpoint();
  v.host = local.address().to_string();
  v.port = local.port();
  // As RabbitMQ: "1.2.3.4:5 -> 6.7.8.9:10", IPv6 addresses in brackets.
  v.name = net::host_port(c.peer_address(), v.peer_port) + " -> " +
           net::host_port(local.address(), v.port);
  if (user_) v.user = user_->name;
  if (vhost_) v.vhost = vhost_->name();
  switch (phase_) {
    case phase::header:
    case phase::start_ok:
      v.state = "starting";
      break;
    case phase::tune_ok:
      v.state = "tuning";
      break;
    case phase::open_wait:
      v.state = "opening";
      break;
    case phase::open:
      // RabbitMQ's states: "flow" while credit flow holds the publishers back.
      v.state =
          blocked_ ? (reading_paused_ ? "blocked" : "blocking") : (in_flow() ? "flow" : "running");
      break;
    case phase::closing:
      v.state = "closing";
      break;
  }
  v.auth_mechanism = mechanism_;
  if (const net::tls_session* t = c.tls()) {
    net::tls_description d = t->describe();
    v.ssl = true;
    v.ssl_protocol = std::move(d.protocol);
    v.ssl_key_exchange = std::move(d.key_exchange);
    v.ssl_cipher = std::move(d.cipher);
    v.ssl_hash = std::move(d.hash);
    v.peer_cert_subject = std::move(d.peer_subject);
    v.peer_cert_issuer = std::move(d.peer_issuer);
    v.peer_cert_validity = std::move(d.peer_validity);
  }
  v.client_properties = client_properties_;
  v.channel_max = channel_max_;
  v.frame_max = frame_max_;
  v.heartbeat = heartbeat_;
  v.connected_at = connected_at_;
  v.recv_oct = c.bytes_received();
  v.send_oct = c.bytes_sent();
  v.recv_cnt = c.read_calls();
  v.send_cnt = c.write_calls();
  v.send_pend = c.queued_bytes();
  v.recv_rate = recv_rate_;
  v.send_rate = send_rate_;
  v.channels.reserve(channels_.size());
  for (const auto& ch : channels_) ch->describe(v.channels.emplace_back());
}

void amqp_connection::force_close(std::string_view reason) {
  if (phase_ != phase::open) {
    conn().close_now();
    return;
  }
  connection_error(reply_code::connection_forced,
                   reason.empty() ? std::string_view("Closed via management plugin") : reason);
  conn().flush();
}

bool amqp_connection::fence(std::string_view reason) {
  // In its handshake: refused at connection.open (take_connection_slots); closing: on its way.
  if (phase_ != phase::open) return false;
  force_close(reason);
  return true;
}

void amqp_connection::describe_all(net::worker& w, std::vector<broker::connection_view>& out) {
  w.for_each_connection([&](net::connection& c) {
    if (auto* a = dynamic_cast<amqp_connection*>(c.handler()); a && !c.closed())
      a->describe(out.emplace_back());
  });
}

bool amqp_connection::force_close(net::worker& w, uint64_t id, std::string_view reason) {
  bool found = false;
  w.for_each_connection([&](net::connection& c) {
    if (auto* a = dynamic_cast<amqp_connection*>(c.handler()); a && a->id_ == id && !c.closed()) {
      a->force_close(reason);
      found = true;
    }
  });
  return found;
}

void amqp_connection::close_vhost(net::worker& w, const broker::vhost* vhost,
                                  std::string_view reason) {
  w.for_each_connection([&](net::connection& c) {
    if (auto* a = dynamic_cast<amqp_connection*>(c.handler()); a && a->vhost_ == vhost)
      a->force_close(reason);
  });
}

}  // namespace warren::amqp::server
