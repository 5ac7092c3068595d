// Response head parsing and the chunked decoder's state machine.
#include "load-common/http_stream.hpp"

#include <algorithm>

namespace warren::load {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x | 0x20) == (y | 0x20);
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

response_head parse_response_head(std::string_view bytes) {
  response_head h;
  size_t end = bytes.find("\r\n\r\n");
  if (end == std::string_view::npos) return h;
  h.size = end + 4;
  std::string_view head = bytes.substr(0, end + 2);
  size_t eol = head.find("\r\n");
  std::string_view status_line = head.substr(0, eol);
  // "HTTP/1.1 101 Switching Protocols"
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." || status_line[8] != ' ') {
    h.status = -1;
    return h;
  }
  int code = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (status_line[i] < '0' || status_line[i] > '9') {
      h.status = -1;
      return h;
    }
    code = code * 10 + (status_line[i] - '0');
  }
  h.status = code;
  head.remove_prefix(eol + 2);
  while (!head.empty()) {
    eol = head.find("\r\n");
    std::string_view line = head.substr(0, eol);
    head.remove_prefix(eol + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = line.substr(0, colon), value = trim(line.substr(colon + 1));
    if (iequals(name, "Transfer-Encoding")) {
      // The last coding is the one that frames the body.
      size_t comma = value.rfind(',');
      h.chunked = iequals(trim(comma == std::string_view::npos ? value : value.substr(comma + 1)),
                          "chunked");
    } else if (iequals(name, "Sec-WebSocket-Accept")) {
      h.websocket_accept = value;
    } else if (iequals(name, "Content-Type")) {
      h.content_type = value;
    }
  }
  return h;
}

size_t chunked_decoder::decode(std::span<char> in) {
  size_t out = 0;
  size_t i = 0;
  while (i < in.size()) {
    switch (state_) {
      case state::size: {
        char c = in[i];
        int d = hex_digit(c);
        if (d >= 0) {
          if (left_ >> 56) {
            state_ = state::failed;
            return out;
          }
          left_ = left_ << 4 | uint64_t(d);
          any_digit_ = true;
          ++i;
        } else if (!any_digit_) {
          state_ = state::failed;
          return out;
        } else if (c == ';' || c == ' ' || c == '\t') {
          state_ = state::extension;
        } else if (c == '\r') {
          state_ = state::size_lf;
          ++i;
        } else {
          state_ = state::failed;
          return out;
        }
        break;
      }
      case state::extension:
        // Chunk extensions are skipped up to the line's end.
        if (in[i] == '\r') state_ = state::size_lf;
        ++i;
        break;
      case state::size_lf:
        if (in[i] != '\n') {
          state_ = state::failed;
          return out;
        }
        ++i;
        any_digit_ = false;
        state_ = left_ == 0 ? state::done : state::data;
        break;
      case state::data: {
        size_t n = size_t(std::min<uint64_t>(left_, in.size() - i));
        if (out != i) std::copy(in.begin() + i, in.begin() + i + n, in.begin() + out);
        out += n;
        i += n;
        left_ -= n;
        if (left_ == 0) state_ = state::data_cr;
        break;
      }
      case state::data_cr:
      case state::data_lf:
        if (in[i] != (state_ == state::data_cr ? '\r' : '\n')) {
          state_ = state::failed;
          return out;
        }
        ++i;
        state_ = state_ == state::data_cr ? state::data_lf : state::size;
        break;
      case state::done:
      case state::failed:
        return out;
    }
  }
  return out;
}

}  // namespace warren::load
