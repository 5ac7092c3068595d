// One browser user of warren-flood: a TCP connection from its own source address, the HTTP
// upgrade (WebSocket) or event-stream request, then the events. Owned by the flood, on its
// thread; destroyed only after the io_context has stopped, so handlers may hold `this`.
//
// An idle session keeps no buffer: reads land in the flood's scratch buffer, and only a partial
// frame or line is kept (the server's own rule, docs/architecture.md).
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "load-common/http_stream.hpp"
#include "web/ws_parser.hpp"

namespace warren::flood {

class flood;

class session {
 public:
  session(flood& f, uint64_t index);
  void start(std::string request);
  // Sends a close frame (WebSocket, if open) and closes the socket.
  void close();
  // Gives up on a handshake that has taken longer than `limit`; true if it did.
  bool check_timeout(std::chrono::steady_clock::time_point now, std::chrono::seconds limit);

 private:
  enum class state : uint8_t { connecting, handshake, open, closed };

  void on_connected(const boost::system::error_code& ec);
  void wait();
  void on_readable();
  // Each takes the bytes at the front of `data` it can use and returns how many that was.
  size_t handle_head(std::span<uint8_t> data);
  size_t handle_frames(std::span<uint8_t> data);
  size_t handle_stream(std::span<uint8_t> data);
  void handle_event(std::string_view json);
  void send_frame(web::ws_opcode op, std::string_view payload);
  void end_handshake();
  void shut(bool lost);
  std::string websocket_key() const;

  flood& f_;
  boost::asio::ip::tcp::socket socket_;
  std::string pending_;  // the request until sent, then an incomplete head, frame or line
  web::ws_parser parser_;
  load::chunked_decoder chunks_;
  load::sse_parser events_;
  int64_t last_seq_ = -1;
  uint32_t index_;
  uint32_t started_s_ = 0;  // steady seconds at connect(), for the handshake time-out
  state state_ = state::connecting;
  bool sse_;
  bool chunked_ = false;
};

}  // namespace warren::flood
