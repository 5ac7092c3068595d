// The client's side of the streaming HTTP responses the flood tool reads: the response head of
// a WebSocket upgrade or an event stream, chunked transfer coding decoded in place, and the
// Server-Sent Events line format. Pure: bytes in, results out, input split anywhere.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace warren::load {

struct response_head {
  size_t size = 0;  // bytes of the head, blank line included; 0: not all here yet
  int status = 0;   // -1: not an HTTP/1.x status line
  bool chunked = false;
  std::string_view websocket_accept;  // Sec-WebSocket-Accept, pointing into the input
  std::string_view content_type;
};

// Parses the head at the front of `bytes` once its blank line has arrived.
response_head parse_response_head(std::string_view bytes);

// Transfer-Encoding: chunked, decoded in place: decode() moves the body bytes of `in` to its
// front and returns how many there are. Keeps a few bytes of state between calls, never the
// input. After the last (empty) chunk, done() and the rest is ignored.
class chunked_decoder {
 public:
  size_t decode(std::span<char> in);
  bool failed() const { return state_ == state::failed; }
  bool done() const { return state_ == state::done; }

 private:
  enum class state : uint8_t { size, extension, size_lf, data, data_cr, data_lf, done, failed };
  uint64_t left_ = 0;
  state state_ = state::size;
  bool any_digit_ = false;
};

// text/event-stream (the WHATWG HTML "server-sent events" format): feed() calls on_event with
// each event's data (its data lines joined by "\n") as its blank line arrives. Comments and the
// id/event/retry fields are skipped. Keeps only an incomplete line and the data lines of an
// event in progress, both empty between events.
class sse_parser {
 public:
  template <typename F>
  void feed(std::string_view bytes, F&& on_event) {
    while (!bytes.empty()) {
      size_t nl = bytes.find('\n');
      if (nl == std::string_view::npos) {
        carry_.append(bytes);
        return;
      }
      std::string_view line = bytes.substr(0, nl);
      bytes.remove_prefix(nl + 1);
      if (!carry_.empty()) {
        carry_.append(line);
        line_done(carry_, on_event);
        std::string().swap(carry_);
      } else {
        line_done(line, on_event);
      }
    }
  }
  size_t events() const { return events_; }

 private:
  template <typename F>
  void line_done(std::string_view line, F& on_event) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
      if (has_data_) {
        ++events_;
        if (!data_.empty() && data_.back() == '\n') data_.pop_back();
        on_event(std::string_view(data_));
        std::string().swap(data_);
        has_data_ = false;
      }
      return;
    }
    if (line.substr(0, 5) != "data:") return;
    line.remove_prefix(5);
    if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    data_.append(line);
    data_ += '\n';
    has_data_ = true;
  }

  std::string carry_;
  std::string data_;
  size_t events_ = 0;
  bool has_data_ = false;
};

}  // namespace warren::load
