// A gateway connection's WebSocket (gateway_handler.hpp): frames in, the browser's requests
// (publish, join, leave, members, read), replies and events out, the close handshake.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "mgmt/definitions_json.hpp"
#include "net/worker.hpp"
#include "web/gateway.hpp"
#include "web/gateway_handler.hpp"
#include "web/ws_deflate.hpp"
#include "web/ws_frame.hpp"
#include "web/ws_state.hpp"

namespace warren::web {

using json = nlohmann::json;

size_t gateway_handler::ws_data(std::span<const uint8_t> data) {
  // net::connection hands us its own mutable buffers (the worker's scratch buffer or the saved
  // partial frame); the parser unmasks frames in place there.
  std::span<uint8_t> buf(const_cast<uint8_t*>(data.data()), data.size());
  size_t used = 0;
  for (;;) {
    auto r = ws_->parser.parse(buf.subspan(used));
    used += r.consumed;
    switch (r.event.kind) {
      case ws_event_kind::need_more:
        return used;
      case ws_event_kind::message:
        if (!ws_->close.accepts_data()) continue;
        if (r.event.opcode != ws_opcode::text) {
          ws_close(ws_close::unsupported_data, "only text messages are accepted");
          return data.size();
        }
        ws_message(r.event.data);
        if (conn().closing()) return data.size();
        continue;
      case ws_event_kind::ping:
        ws_->close.on_ping(conn().out(), r.event.data);
        conn().flush_soon();
        continue;
      case ws_event_kind::pong:
        continue;
      case ws_event_kind::close:
        detach();
        ws_->close.on_peer_close(conn().out(), r.event.code);
        conn().close_gracefully(std::chrono::seconds(1));
        return data.size();
      case ws_event_kind::error:
        detach();
        ws_->close.fail(conn().out(), r.event.code, r.event.data);
        conn().close_gracefully(std::chrono::seconds(1));
        return data.size();
    }
  }
}

void gateway_handler::ws_send(const std::string& text) {
  if (!ws_ || !ws_->close.may_send_data()) return;
  if (ws_->deflate) {
    std::string z;
    g_.deflater(conn().owner().index()).compress(text, z);
    ws_append_message(conn().out(), ws_opcode::text, z, 0, true);
  } else {
    ws_append_message(conn().out(), ws_opcode::text, text);
  }
}

void gateway_handler::ws_close(uint16_t code, std::string_view reason) {
  detach();
  if (ws_->close.close(conn().out(), code, reason))
    conn().close_gracefully(std::chrono::seconds(2));
}

void gateway_handler::ws_message(std::string_view text) {
  json req = json::parse(text, nullptr, false);
  json id = nullptr;
  std::string op;
  std::string room;
  auto answer = [this, &op, &room, &id](int code, std::string_view error, const json& extra) {
    ws_reply(op, room, id, code, error, extra);
  };
  if (!req.is_object()) return answer(400, "expected a JSON object", json::object());
  if (req.contains("id")) id = req["id"];
  if (!req.contains("op") || !req["op"].is_string())
    return answer(400, "missing \"op\"", json::object());
  op = req["op"].get<std::string>();
  if (op == "ping") return answer(200, {}, json::object());
  if (op == "read") return ws_read(req, id);
  if (op != "join" && op != "leave" && op != "publish" && op != "members")
    return answer(400, "unknown op", json::object());
  if (!req.contains("room") || !req["room"].is_string() ||
      !valid_name(req["room"].get_ref<const std::string&>()))
    return answer(400, "missing or invalid \"room\"", json::object());
  room = req["room"].get<std::string>();
  if (op != "members") {
    if (!take_token()) {
      ++strikes_;
      if (strikes_ > 4 * g_.settings().publish_rate + 10) {
        ws_close(ws_close::policy_violation, "rate limit exceeded");
        return;
      }
      return answer(429, "rate limit exceeded", json::object());
    }
    strikes_ = 0;
  }
  if ((op == "join" || op == "members") && !rights_->may_join(room))
    return answer(403, "the token does not allow this room", json::object());
  if (op == "publish" && !rights_->may_publish(room))
    return answer(403, "the token does not allow publishing to this room", json::object());
  if (op == "publish" && !req.contains("data"))
    return answer(400, "missing \"data\"", json::object());
  if (op == "publish" && g_.alarm_on(conn().owner().index()))
    return answer(503, "publishing is refused while a resource alarm is on", json::object());
  std::string data = op == "publish"
                         ? mgmt::dump((req.contains("data") ? req["data"] : json(nullptr)))
                         : std::string();
  auto self = self_;
  net::worker* w = &conn().owner();
  gateway* g = &g_;
  std::string user = session_->user;
  g_.home().post([self, w, g, user, op, room, id, data = std::move(data)]() mutable {
    run_room_op_async(*g, user, op, room, data, [self, w, op, room, id](op_outcome r) mutable {
      w->post(
          [self, op = std::move(op), room = std::move(room), id = std::move(id), r = std::move(r)] {
            if (gateway_handler* me = self->h; me && me->ws_ && !me->conn().closing())
              me->ws_reply(op, room, id, r.code, r.error, r.extra);
          });
    });
  });
}

void gateway_handler::ws_read(const json& req, const json& id) {
  // {"op":"read","seq":N}: the user's read position, as PUT /api/inbox/read sets it.
  if (!req.contains("seq") || !req["seq"].is_number_unsigned())
    return ws_reply("read", {}, id, 400, "missing or invalid \"seq\"", json::object());
  if (rights_->anonymous)
    return ws_reply("read", {}, id, 403, "anonymous connections have no inbox", json::object());
  auto self = self_;
  net::worker* w = &conn().owner();
  gateway* g = &g_;
  std::string user = session_->user;
  uint64_t seq = req["seq"].get<uint64_t>();
  g_.home().post([self, w, g, user, seq, id] {
    // In a cluster the read position is kept by the inbox's owner.
    at_owner(*g, user, user, "read", {}, std::to_string(seq), [self, w, id](op_outcome r) {
      w->post([self, id, r = std::move(r)] {
        gateway_handler* me = self->h;
        if (!me || !me->ws_ || me->conn().closing()) return;
        if (r.code == 404)
          me->ws_reply("read", {}, id, 404, "nothing held", json::object());
        else if (r.code != 200)
          me->ws_reply("read", {}, id, r.code, r.error, json::object());
        else
          me->ws_reply("read", {}, id, 200, {}, json{{"unread", r.extra.value("unread", 0)}});
      });
    });
  });
}

void gateway_handler::ws_reply(const std::string& op, const std::string& room, const json& id,
                               int code, std::string_view error, const json& extra) {
  json r = {{"seq", nullptr},
            {"type", code == 200 ? "ok" : "error"},
            {"op", op.empty() ? json(nullptr) : json(op)}};
  if (!room.empty()) r["room"] = room;
  if (code != 200) {
    r["code"] = code;
    r["error"] = error;
  }
  if (!id.is_null()) r["id"] = id;
  for (auto& [k, v] : extra.items()) r[k] = v;
  ws_send(mgmt::dump(r));
  conn().flush_soon();
}

}  // namespace warren::web
