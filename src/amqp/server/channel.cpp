// Channel frames: content assembly and the methods served so far. Reply codes and texts follow
// RabbitMQ 3.10 (rabbit_channel, rabbit_command_assembler).
//
// Until the broker model lands (exchanges, queues, consumers), a vhost has only its predeclared
// exchanges and no queues, so every message is unroutable: dropped, returned when mandatory,
// and confirmed, exactly as RabbitMQ treats an unroutable message. Methods that need queues or
// declarations answer NOT_IMPLEMENTED.
#include "amqp/server/channel.hpp"

#include <fmt/format.h>

#include "amqp/server/connection.hpp"

namespace warren::amqp::server {

using namespace protocol;

void channel::unexpected_frame(std::string_view what, uint16_t class_id, uint16_t method_id) {
  conn_.connection_error(reply_code::unexpected_frame, what, class_id, method_id);
}

void channel::reset_content() {
  content_ = content_phase::none;
  std::string().swap(body_);
}

void channel::handle_frame(const frame_view& f) {
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
  switch (st) {
    case decode_status::ok:
      handle_method(m);
      return;
    case decode_status::unknown_method:
    case decode_status::syntax_error:
      conn_.refuse_undecodable(f.payload, st);
      return;
  }
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
  if (!decode_content_header(f.payload, header_)) {
    conn_.connection_error(reply_code::frame_error, "cannot decode content header",
                           publish_.amqp_class_id, publish_.amqp_method_id);
    return;
  }
  uint64_t max = conn_.context().settings.max_message_size;
  if (header_.body_size > max) {
    // Differs: RabbitMQ checks after receiving the whole body; refusing at the header spares
    // buffering it. The closing channel drops the body frames that follow.
    conn_.channel_error(*this, reply_code::precondition_failed,
                        fmt::format("message size {} is larger than configured max size {}",
                                    header_.body_size, max),
                        publish_.amqp_class_id, publish_.amqp_method_id);
    return;
  }
  if (header_.body_size == 0) {
    complete_publish();
    return;
  }
  body_.reserve(size_t(header_.body_size));
  content_ = content_phase::body;
}

void channel::handle_body(const frame_view& f) {
  if (body_.size() + f.payload.size() > header_.body_size) {
    // Differs: RabbitMQ does not check this and waits for a frame that never fits.
    unexpected_frame(
        fmt::format("content body frames carry more than the {} bytes declared", header_.body_size),
        publish_.amqp_class_id, publish_.amqp_method_id);
    return;
  }
  body_.append(reinterpret_cast<const char*>(f.payload.data()), f.payload.size());
  if (body_.size() == header_.body_size) complete_publish();
}

void channel::complete_publish() {
  content_ = content_phase::none;
  conn_.note_publish();
  uint64_t seq = confirm_mode_ ? ++publish_seq_ : 0;
  if (!conn_.vhost().has_exchange(publish_.exchange)) {
    conn_.channel_error(
        *this, reply_code::not_found,
        fmt::format("no exchange '{}' in vhost '{}'", publish_.exchange, conn_.vhost().name()),
        publish_.amqp_class_id, publish_.amqp_method_id);
    return;
  }
  const auto& uid = header_.properties.user_id;
  if (uid && *uid != conn_.user().name) {
    conn_.channel_error(*this, reply_code::precondition_failed,
                        fmt::format("user_id property set to '{}' but authenticated user was '{}'",
                                    *uid, conn_.user().name),
                        publish_.amqp_class_id, publish_.amqp_method_id);
    return;
  }
  // No queue exists to route to yet: the message is unroutable.
  if (publish_.mandatory) {
    basic_return ret;
    ret.reply_code = uint16_t(reply_code::no_route);
    ret.reply_text = "NO_ROUTE";
    ret.exchange = publish_.exchange;
    ret.routing_key = publish_.routing_key;
    conn_.send(id_, ret);
    conn_.send_content(id_, header_, body_);
  }
  if (confirm_mode_) conn_.send(id_, basic_ack{seq, false});
  reset_content();
}

void channel::handle_method(method& m) {
  const uint16_t cid = method_class_id(m), mid = method_method_id(m);
  auto not_implemented = [&] {
    conn_.connection_error(reply_code::not_implemented,
                           fmt::format("{} is not implemented yet", method_name(m)), cid, mid);
  };
  std::visit(
      [&](auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, channel_open>) {
          conn_.connection_error(reply_code::channel_error, "second 'channel.open' seen", cid, mid);
        } else if constexpr (std::is_same_v<T, channel_close>) {
          conn_.send(id_, channel_close_ok{});
          // The connection erases this channel; nothing may touch `this` afterwards.
          conn_.close_channel(id_);
        } else if constexpr (std::is_same_v<T, channel_close_ok>) {
          // Not closing: nothing to acknowledge. Ignored.
        } else if constexpr (std::is_same_v<T, channel_flow>) {
          // Differs: RabbitMQ refuses active=false (540); Warren honours it for deliveries.
          flow_active_ = x.active;
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
          prefetch_count_ = x.prefetch_count;
          conn_.send(id_, basic_qos_ok{});
        } else if constexpr (std::is_same_v<T, basic_recover> ||
                             std::is_same_v<T, basic_recover_async>) {
          // Nothing is ever delivered yet, so nothing is unacknowledged.
          if constexpr (std::is_same_v<T, basic_recover>) conn_.send(id_, basic_recover_ok{});
        } else if constexpr (std::is_same_v<T, basic_ack> || std::is_same_v<T, basic_nack> ||
                             std::is_same_v<T, basic_reject>) {
          conn_.channel_error(*this, reply_code::precondition_failed,
                              fmt::format("unknown delivery tag {}", x.delivery_tag), cid, mid);
        } else if constexpr (std::is_same_v<T, confirm_select>) {
          confirm_mode_ = true;
          if (!x.nowait) conn_.send(id_, confirm_select_ok{});
        } else if constexpr (std::is_same_v<T, exchange_declare> ||
                             std::is_same_v<T, exchange_delete> ||
                             std::is_same_v<T, exchange_bind> ||
                             std::is_same_v<T, exchange_unbind> ||
                             std::is_same_v<T, queue_declare> || std::is_same_v<T, queue_bind> ||
                             std::is_same_v<T, queue_unbind> || std::is_same_v<T, queue_purge> ||
                             std::is_same_v<T, queue_delete> || std::is_same_v<T, basic_consume> ||
                             std::is_same_v<T, basic_cancel> || std::is_same_v<T, basic_get> ||
                             std::is_same_v<T, tx_select> || std::is_same_v<T, tx_commit> ||
                             std::is_same_v<T, tx_rollback>) {
          not_implemented();
        } else {
          // Methods only a server sends (connection.*, basic.deliver, *-ok, ...).
          conn_.connection_error(
              reply_code::command_invalid,
              fmt::format("{} is not valid from a client on a channel", method_name(m)), cid, mid);
        }
      },
      m);
}

}  // namespace warren::amqp::server
