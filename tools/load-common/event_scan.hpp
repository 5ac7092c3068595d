// A cheap look into the events a gateway pushes, for the load tools: the fields they count and
// time by, found by scanning for their keys instead of parsing the JSON (a flood client may read
// a million events a second on a core it shares with the server under test).
//
// Understood: Warren's events and replies (docs/web-api.md: "seq", "type", "op", and the send
// time "t" that warren-msggen puts in "data"), and a bare {"t": ...} as nchan relays a published
// body. The scan trusts its input to be the JSON it expects; what it cannot find it reports as
// absent.
#pragma once

#include <cstdint>
#include <string_view>

namespace warren::load {

struct event_info {
  bool has_seq = false;   // "seq" is a number (replies to operations have null)
  int64_t seq = 0;
  std::string_view type;  // "message", "history", "reset", "ok", "error", ...; empty if none
  std::string_view op;    // replies: the operation answered
  bool has_t = false;     // a "t" key with an unsigned integer: the send time
  uint64_t t = 0;
};

event_info scan_event(std::string_view json);

// Microseconds since the epoch on the system clock: the time base of "t". Sender and receiver
// must share a clock, i.e. run on one machine.
uint64_t now_us();

}  // namespace warren::load
