// What the gateway delivers to browsers (docs/web-api.md, "Events"): a JSON object whose
// sequence number differs per inbox while the rest is the same for every recipient. So the rest
// is rendered once per message and shared: an event is its seq plus a pointer to the common
// tail, and a room message to 10 000 members costs 10 000 small entries, one body.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace warren::web {

// `,"type":"message","room":...,"from":...,"data":...,"ts":...}`: everything after the seq.
using event_tail = std::shared_ptr<const std::string>;

struct event {
  uint64_t seq = 0;
  event_tail tail;
  int64_t expires_ms = 0;  // when it stops being held (ms since the epoch); 0: never
  // Delivered live only, never held: its seq is the inbox's last held one (so a resume from it
  // neither skips nor repeats anything), and a receiver takes it whatever its position.
  bool transient = false;
};

// `{"seq":N` + tail.
inline void append_event_json(std::string& out, const event& e) {
  out += "{\"seq\":";
  out += std::to_string(e.seq);
  out += *e.tail;
}
inline size_t event_json_size(const event& e) {
  return 8 + 20 + e.tail->size();  // an upper bound
}

}  // namespace warren::web
