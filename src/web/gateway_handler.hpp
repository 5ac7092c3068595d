// One connection to the web gateway, on the worker that accepted it. It starts as HTTP/1.1
// (Beast's parser, held only while a request is being read) and either answers requests (the
// APIs, static files; keep-alive, one request at a time) or becomes a transport: a WebSocket
// (our codec, web/ws_*), an SSE stream, a chunked stream or a waiting long-poll, attached to the
// user's inbox in the hub.
//
// Memory of an idle WebSocket: this object (about 200 bytes), the WebSocket parser and closing
// state (about 80), the hub's link (about 80) and net::connection; no buffers (input lands in
// the worker's scratch buffer, output is released after a burst).
#pragma once

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "net/connection.hpp"
#include "web/hub.hpp"

namespace warren::auth {
struct user;
}

namespace warren::web {

class gateway;
struct ws_state;

// Shared by the handler's files: request values.
inline constexpr size_t max_name = 200;  // user ids and room names, in bytes
// A non-negative integer, or nullopt.
std::optional<uint64_t> parse_u64(std::string_view s);
bool valid_name(std::string_view s);
std::string error_json(std::string_view error, std::string_view reason);

// The answers a publish of the HTTP API waits for besides its store: those of the nodes it was
// handed to (broker::vhost::send_to_node) and of other shards. answer() is the publish's
// broker::shard_answer (called from any thread); expect() says, once the publish returned, how
// many answers come; then()'s function runs once, on whichever thread completes the count.
struct node_answers : std::enable_shared_from_this<node_answers> {
  std::function<void(uint64_t ticket, bool rejected)> answer();  // a broker::shard_answer
  void expect(uint32_t n);
  void then(std::function<void(uint64_t ticket, bool rejected)> done);

 private:
  void finish_if_complete(std::unique_lock<std::mutex>& lk);
  std::mutex mutex_;
  uint32_t got_ = 0;
  std::optional<uint32_t> expected_;
  uint64_t ticket_ = 0;
  bool rejected_ = false;
  std::function<void(uint64_t, bool)> done_;
};
// Runs `answer` once every node answered and the store synced `ticket` and theirs; `refused` when
// one did not store it.
void wait_for_nodes(node_answers& n, store::message_store* st, uint64_t ticket,
                    std::function<void()> answer, std::function<void()> refused);
// A message as the HTTP APIs publish it (JSON, persistent, `from` in a header).
std::shared_ptr<broker::message> make_message(std::string exchange, std::string key,
                                              std::string body,
                                              const std::optional<std::string>& from);
// Publishes on the hub's worker; true if routed (errors count as not routed). `ticket` receives
// the store ticket to wait for before answering.
bool publish(broker::vhost& v, broker::message_ptr m, uint64_t* ticket = nullptr);
// [{"user": U, "connections": n}, ...]
nlohmann::json members_json(const hub& h, const std::string& room);
// "bad_request" for 400, and so on.
std::string_view error_word(int status);

struct op_outcome {
  int code = 200;
  std::string error;
  nlohmann::json extra = nlohmann::json::object();  // fields of a successful answer
};
// A browser's room operation (join, leave, publish, members), on the hub's worker; the
// WebSocket and the HTTP paths both answer from it.
op_outcome run_room_op(gateway& g, const std::string& user, const std::string& op,
                       const std::string& room, const std::string& data);
// The same, asked of the room's owner node in a cluster (hub::call_owner) when that is another
// node; `done` runs on the hub's worker.
void run_room_op_async(gateway& g, const std::string& user, const std::string& op,
                       const std::string& room, const std::string& data,
                       std::function<void(op_outcome)> done);
// An operation run where its key lives (docs/cluster.md, "The web gateway across nodes"): a room
// operation, "presence" (of `user`), "follow"/"unfollow" (`user` follows `room`), "followers" (of
// `room`), "feed" (a post of `room`'s feed, `data` {"data", "expiration", "transient"}, answered
// once stored). On the hub's worker; `reply` gets {"code", "error", "extra"} there.
void owner_op(gateway& g, const std::string& user, const std::string& op, const std::string& room,
              const std::string& data, std::function<void(std::string)> reply);
// Runs owner_op here when `key` is this node's (or there is no cluster), else at its owner.
void at_owner(gateway& g, const std::string& key, const std::string& user, const std::string& op,
              const std::string& room, const std::string& data,
              std::function<void(op_outcome)> done);

// What a token lets its user do with rooms (jwt_claims' rooms/publish; docs/web-api.md).
struct room_rights {
  std::optional<std::vector<std::string>> join;
  std::optional<std::vector<std::string>> publish;
  bool anonymous = false;
  bool may_join(std::string_view room) const;
  bool may_publish(std::string_view room) const;
};

class gateway_handler final : public net::connection_handler, public event_receiver {
 public:
  gateway_handler(gateway& g, bool ip_counted);
  ~gateway_handler() override;

  size_t on_data(std::span<const uint8_t> data) override;
  void on_tick(std::chrono::steady_clock::time_point now) override;
  void on_shutdown() override;
  void on_output_drained() override;
  void on_closed() override;

  size_t on_events(const event* evs, size_t n) override;
  void on_replay(std::vector<event> evs) override;

  // The address has too many connections: 429, then close.
  void refuse_over_limit();
  // The node is fenced (docs/cluster.md): a new connection gets 503 with the reason; an open one
  // is closed (a WebSocket with 1001 and the reason).
  void refuse_fenced(std::string_view reason);
  void fence(std::string_view reason);

 private:
  using request = boost::beast::http::request<boost::beast::http::string_body>;
  enum class mode : uint8_t { http, waiting, ws, sse, stream, poll };
  struct self_ref {
    gateway_handler* h;
  };

  // Every change of mode goes through here, keeping the worker's count of open connections per
  // transport (gateway_stats).
  void set_mode(mode m);

  // HTTP
  size_t http_data(std::span<const uint8_t> data, bool& handled);
  void handle(request req);
  void respond(int status, std::string_view content_type, std::string_view body,
               std::string_view extra_headers = {});
  void respond_json(int status, const std::string& body) {
    respond(status, "application/json", body);
  }
  void respond_error(int status, std::string_view error, std::string_view reason,
                     std::string_view extra_headers = {});
  void finish_response();
  // Runs fn on the hub's worker; its string result (status, JSON body) comes back as the response.
  void on_hub(std::function<std::pair<int, std::string>()> fn);
  // The same, for an answer that comes later: fn gets the function that answers (any thread).
  void on_hub_async(std::function<void(std::function<void(int, std::string)>)> fn);
  // The same, answering only once the store has synced the ticket fn returns (0: at once).
  struct hub_answer {
    int status;
    std::string body;
    uint64_t ticket = 0;
    // In a cluster: the answers of the nodes the publish was handed to (another node owning the
    // user), waited for too; a node that did not store it makes the answer a 503.
    std::shared_ptr<web::node_answers> nodes;
  };
  void on_hub_synced(std::function<hub_answer()> fn);
  // A backend send's "ttl" (seconds) and "transient" into the message; false (answered 400) if
  // they are malformed.
  bool send_options(const nlohmann::json& body, broker::message& m);
  void reply(int status, std::string body);
  bool take_token();

  // Transports
  bool authenticate_browser(const request& req, std::string_view token);
  void start_ws(const request& req);
  void start_sse(const request& req, std::optional<uint64_t> since);
  void start_stream(const request& req, std::optional<uint64_t> since);
  void start_poll(const request& req, std::optional<uint64_t> since);
  void attach(std::optional<uint64_t> since);
  void detach();
  void write_event(const event& e);
  void finish_poll();

  // WebSocket
  size_t ws_data(std::span<const uint8_t> data);
  void ws_message(std::string_view text);
  void ws_read(const nlohmann::json& req, const nlohmann::json& id);
  void ws_send(const std::string& json);
  void ws_close(uint16_t code, std::string_view reason);
  // A reply to a client's operation: {"seq":null,"type":"ok"|"error","op",...} with `extra`.
  void ws_reply(const std::string& op, const std::string& room, const nlohmann::json& id, int code,
                std::string_view error, const nlohmann::json& extra);

  void backend(request& req, std::string_view path, const std::vector<std::string>& parts);
  std::optional<std::string> backend_refusal(const auth::user& user,
                                             boost::beast::http::verb method,
                                             const std::vector<std::string>& parts);
  // /api/inbox/{user}[/read] for a backend (gateway_http_api.cpp)
  void inbox_api(request& req, const std::vector<std::string>& parts);
  void answer_inbox_page(request& req, const std::string& user);
  void answer_set_read(request& req, const std::string& user);
  // /api/inbox[/read] for a browser with its bearer token
  void browser_inbox_op(request& req, const std::vector<std::string>& parts);
  void browser_http_op(request& req, const std::vector<std::string>& parts);

  gateway& g_;
  std::shared_ptr<self_ref> self_;
  link_ptr session_;  // attached to the inbox while a transport runs
  std::unique_ptr<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  std::unique_ptr<ws_state> ws_;
  std::unique_ptr<room_rights> rights_;
  std::string poll_out_;   // events gathered for a long-poll's answer
  std::string callback_;   // JSONP
  uint64_t last_seq_ = 0;  // the last event written (0: none yet)
  double tokens_;          // rate limit bucket
  std::chrono::steady_clock::time_point refill_at_;
  std::chrono::steady_clock::time_point last_in_;
  std::chrono::steady_clock::time_point last_out_;
  std::chrono::steady_clock::time_point deadline_;  // long-poll answer, or request head
  uint32_t strikes_ = 0;                            // operations refused by the rate limit in a row
  mode mode_ = mode::http;
  bool keep_alive_ = true;
  bool head_checked_ = false;
  bool ip_counted_;
  bool lagging_ = false;
  bool catching_up_ = false;
  bool ping_sent_ = false;
};

}  // namespace warren::web
