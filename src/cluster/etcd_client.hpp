// An asynchronous client of etcd's HTTP/JSON gateway (v3 API), on one Boost.Asio io_context.
// Hand-written over Beast because Debian 12 packages no C++ etcd client, and the gRPC route would
// need etcd's protos with their gogoproto and google-api imports (docs/cluster.md).
//
// Owned by one thread, the one running its io_context (in warren: the `cluster` thread); every
// method is called there and every callback runs there.
//
// Unary calls (range, put, txn, delete, lease grant/revoke) go one at a time, in the order asked,
// over one keep-alive connection to the current endpoint. Lease renewals go the same way in a lane
// of their own (a second connection), so that a call that waits out a silent endpoint never holds
// a renewal back past the lease's deadline. A transport failure
// (refused, reset, timed out) or an etcd "unavailable" answer moves to the next endpoint and
// tries again, each endpoint once per call; then the call fails. A write retried after a
// time-out may have been applied by the first endpoint: callers make their writes conditional
// (txn) or idempotent. A watch is a long-lived streaming answer on its own connection.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "cluster/etcd_codec.hpp"

namespace warren::cluster {

struct etcd_endpoint {
  std::string host;
  std::string port;
  std::string text() const { return "http://" + host + ":" + port; }
};

// "http://host:port[,http://host:port...]": the endpoints, or nullopt with `error` set (https
// is not supported yet; a missing port is 2379).
std::optional<std::vector<etcd_endpoint>> parse_endpoints(std::string_view list,
                                                          std::string& error);

class etcd_watch;

// How one call is made. `attempt_timeout`: how long each try on an endpoint may take (0: the
// client's request timeout). `first`: queued before every call of its lane not yet sent.
// `renewal`: in the renewals' lane (its own connection and queue), not behind other calls.
struct etcd_call_options {
  std::chrono::milliseconds attempt_timeout{0};
  bool first = false;
  bool renewal = false;
};

class etcd_client : public std::enable_shared_from_this<etcd_client> {
 public:
  // error: empty on success. A gateway error (etcd refused the request: a lease not found, a
  // compacted revision) is an error too, with etcd's text.
  using callback = std::function<void(const std::string& error, const json& answer)>;

  etcd_client(boost::asio::io_context& io, std::vector<etcd_endpoint> endpoints,
              std::chrono::milliseconds request_timeout);
  ~etcd_client();

  // POSTs `body` to `path` (e.g. "/v3/kv/range") and calls back with the answer's JSON.
  void call(std::string path, json body, callback cb, etcd_call_options opts = {});

  void range(std::string_view key, std::string_view range_end,
             std::function<void(const std::string&, range_result)> cb);
  void put(std::string_view key, std::string_view value, int64_t lease,
           std::function<void(const std::string&)> cb);
  void txn(json compare, json success, json failure,
           std::function<void(const std::string&, txn_result)> cb);
  void delete_range(std::string_view key, std::string_view range_end,
                    std::function<void(const std::string&)> cb);
  void lease_grant(int64_t ttl_seconds,
                   std::function<void(const std::string&, lease_grant_result)> cb);
  // ttl: the lease's TTL after the renewal; 0 when etcd no longer has the lease. In the renewals'
  // lane, beside other calls; each try on an endpoint may take `attempt_timeout` (0: the request
  // timeout), so that a silent endpoint costs a renewal little of the lease's time.
  void lease_keepalive(int64_t id, std::function<void(const std::string&, int64_t ttl)> cb,
                       std::chrono::milliseconds attempt_timeout = {});
  void lease_revoke(int64_t id, std::function<void(const std::string&)> cb);

  // Watches [key, range_end) from `start_revision` (0: from now). `on_message` gets each message
  // of the stream; `on_end` once, when the stream ends (error text, never empty) or fails to
  // start on every endpoint. Not called after etcd_watch::cancel(). A watch has no read time-out
  // (an idle prefix sends nothing), so a member that goes silent (a cut link) or loses its leader
  // would leave it quietly stale: the watch is also ended when a call of this client finds its
  // endpoint failing, which the lease's renewals (every TTL/3) do within a renewal or two.
  std::shared_ptr<etcd_watch> watch(std::string_view key, std::string_view range_end,
                                    int64_t start_revision,
                                    std::function<void(const watch_message&)> on_message,
                                    std::function<void(const std::string&)> on_end);

  // Drops queued calls without calling them back and closes the connections; callbacks of calls
  // in flight are not called either.
  void close();

  // The endpoint last moved to or answered by, in either lane: where a new watch or a lane's new
  // connection starts.
  const etcd_endpoint& current_endpoint() const { return endpoints_[current_]; }
  const std::vector<etcd_endpoint>& endpoints() const { return endpoints_; }
  boost::asio::io_context& io() { return io_; }
  std::chrono::milliseconds request_timeout() const { return timeout_; }
  // Inside a call's callback: when the try that was answered was sent. etcd handled the request
  // after this, so a lease renewed by it lasts at least its TTL from this time.
  std::chrono::steady_clock::time_point answered_attempt_sent() const { return answered_sent_; }

 private:
  struct pending;
  struct connection;
  // Calls that go one at a time over one connection: the lane's endpoint is where that connection
  // goes (or its next try).
  struct lane {
    std::deque<std::shared_ptr<pending>> queue;
    bool busy = false;
    std::shared_ptr<connection> conn;  // the keep-alive connection, if open
    size_t endpoint = 0;
  };
  void pump(lane& l);
  void attempt(std::shared_ptr<pending> p);
  void finish(std::shared_ptr<pending> p, const std::string& error, const json& answer);
  // `suspect`: the endpoint itself failed (no answer in time, refused, unavailable), rather than
  // a kept-alive connection it had closed. The watches on a suspect endpoint are ended, so that
  // their owners read again through an endpoint that answers.
  void fail_over(std::shared_ptr<pending> p, const std::string& why, bool suspect = true);
  void end_watches_on(size_t endpoint, const std::string& why);

  boost::asio::io_context& io_;
  std::vector<etcd_endpoint> endpoints_;
  size_t current_ = 0;
  std::chrono::milliseconds timeout_;
  lane calls_, renewals_;
  bool closed_ = false;
  std::chrono::steady_clock::time_point answered_sent_{};
  std::vector<std::weak_ptr<etcd_watch>> watches_;
};

// One watch stream; cancel() closes it. Lives on the client's thread.
class etcd_watch : public std::enable_shared_from_this<etcd_watch> {
 public:
  void cancel();
  ~etcd_watch();

 private:
  friend class etcd_client;
  struct state;
  explicit etcd_watch(std::shared_ptr<state> s) : s_(std::move(s)) {}
  std::shared_ptr<state> s_;
};

}  // namespace warren::cluster
