// One AMQP channel of a connection: its state, the assembly of content (method, header, body
// frames) and the handlers of the classes it serves. Owned by its amqp_connection.
#pragma once

#include <cstdint>
#include <string>

#include "amqp/protocol/frame.hpp"

namespace warren::amqp::server {

class amqp_connection;

class channel {
 public:
  enum class state : uint8_t { open, closing };

  channel(amqp_connection& conn, uint16_t id) : conn_(conn), id_(id) {}

  uint16_t id() const { return id_; }
  state current_state() const { return state_; }
  void mark_closing() {
    state_ = state::closing;
    reset_content();
  }
  bool flow_active() const { return flow_active_; }

  // Frames for this channel while it is open, in arrival order.
  void handle_frame(const protocol::frame_view& f);

 private:
  enum class content_phase : uint8_t { none, header, body };

  void handle_method(protocol::method& m);
  void handle_header(const protocol::frame_view& f);
  void handle_body(const protocol::frame_view& f);
  void complete_publish();
  void reset_content();
  void unexpected_frame(std::string_view what, uint16_t class_id, uint16_t method_id);

  amqp_connection& conn_;
  uint16_t id_;
  state state_ = state::open;
  content_phase content_ = content_phase::none;
  bool flow_active_ = true;
  bool confirm_mode_ = false;
  uint16_t prefetch_count_ = 0;  // basic.qos, kept for the consumers of the broker model
  uint64_t publish_seq_ = 0;     // last publish sequence number in confirm mode
  protocol::basic_publish publish_;
  protocol::content_header header_;
  std::string body_;
};

}  // namespace warren::amqp::server
