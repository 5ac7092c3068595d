// Key scanning over one event's JSON text.
#include "load-common/event_scan.hpp"

#include <time.h>

namespace warren::load {
namespace {

// Position just after `"key":` and any blanks, or npos.
size_t value_of(std::string_view json, std::string_view quoted_key) {
  size_t at = json.find(quoted_key);
  if (at == std::string_view::npos) return at;
  at += quoted_key.size();
  while (at < json.size() && (json[at] == ' ' || json[at] == '\t')) ++at;
  return at;
}

bool read_uint(std::string_view json, size_t at, uint64_t& out) {
  if (at >= json.size() || json[at] < '0' || json[at] > '9') return false;
  uint64_t v = 0;
  for (; at < json.size() && json[at] >= '0' && json[at] <= '9'; ++at) v = v * 10 + (json[at] - '0');
  out = v;
  return true;
}

std::string_view read_string(std::string_view json, size_t at) {
  if (at >= json.size() || json[at] != '"') return {};
  size_t end = json.find('"', at + 1);
  if (end == std::string_view::npos) return {};
  return json.substr(at + 1, end - at - 1);
}

}  // namespace

event_info scan_event(std::string_view json) {
  event_info e;
  uint64_t v = 0;
  size_t at = value_of(json, "\"seq\":");
  if (at != std::string_view::npos && read_uint(json, at, v)) {
    e.has_seq = true;
    e.seq = int64_t(v);
  }
  at = value_of(json, "\"type\":");
  if (at != std::string_view::npos) e.type = read_string(json, at);
  at = value_of(json, "\"op\":");
  if (at != std::string_view::npos) e.op = read_string(json, at);
  at = value_of(json, "\"t\":");
  if (at != std::string_view::npos && read_uint(json, at, v)) {
    e.has_t = true;
    e.t = v;
  }
  return e;
}

uint64_t now_us() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return uint64_t(ts.tv_sec) * 1000000 + uint64_t(ts.tv_nsec) / 1000;
}

}  // namespace warren::load
