// The web gateway's settings (docs/web-api.md), filled from the configuration by main.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace warren::web {

struct gateway_settings {
  std::string vhost = "/";  // where warren.users, warren.rooms and warren.feed live
  // How long the live part of an inbox (rooms, cached events) outlives its last connection.
  std::chrono::seconds inbox_linger{300};
  size_t inbox_size = 1000;  // events held per inbox
  // How long an event is held (a send may ask for less); also bounds the store's inbox segments.
  std::chrono::milliseconds inbox_ttl{std::chrono::hours(24 * 7)};
  size_t room_history = 20;
  bool room_presence_events = false;
  std::vector<std::string> anonymous_rooms;  // joinable without a token, read-only
  uint32_t ws_max_message = 64 * 1024;
  uint32_t max_connections_per_ip = 1000;  // 0: no limit
  double publish_rate = 20;                // operations per second per connection (burst 2x)
  size_t max_header = 8192;
  size_t max_body = 1024 * 1024;
  size_t max_bulk_body = 64 * 1024 * 1024;  // POST /api/follows
  std::chrono::seconds heartbeat{15};       // SSE comments, stream newlines
  std::chrono::seconds ws_ping{30};         // a ping after this much silence; closed after 2x
  std::chrono::seconds poll_timeout{25};    // default wait of a long-poll
  std::chrono::seconds poll_timeout_max{120};
  bool dev_tokens = false;  // POST /api/dev-token: for the demo page only
  std::string jwt_secret;   // also signs dev tokens
  // Output queued for one connection beyond this: live events are not written but fetched
  // again from the inbox once the connection has drained (a slow reader never grows memory).
  size_t max_queued_output = 256 * 1024;
};

}  // namespace warren::web
