// etcd's HTTP/JSON gateway (v3 API, etcd 3.4), the wire format only: request bodies, answers
// parsed into plain values, and the watch stream split into its JSON objects. No sockets.
// Keys and values are base64 in the gateway's JSON; int64 fields are JSON strings, and fields
// at their zero value are left out (a PUT event has no "type", a failed txn no "succeeded").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace warren::cluster {

using json = nlohmann::json;

// The end of the range of every key starting with `prefix` (etcd's "prefix end": the prefix
// with its last byte below 0xff incremented and the rest dropped; "\0" for all keys).
std::string prefix_end(std::string_view prefix);

struct key_value {
  std::string key, value;
  int64_t create_revision = 0, mod_revision = 0, version = 0, lease = 0;
};

struct range_result {
  int64_t revision = 0;  // the store's revision when the range was read
  std::vector<key_value> kvs;
};

struct txn_result {
  int64_t revision = 0;
  bool succeeded = false;
  // The ranges the taken branch asked for (request_range responses, in order).
  std::vector<range_result> ranges;
};

struct lease_grant_result {
  int64_t id = 0;
  int64_t ttl = 0;
};

struct watch_event {
  bool deleted = false;  // DELETE; else PUT
  key_value kv;          // a delete carries the key and its mod_revision only
};

// One message of a watch stream.
struct watch_message {
  int64_t revision = 0;  // header revision
  bool created = false;
  bool canceled = false;
  int64_t compact_revision = 0;  // set when canceled because the start revision was compacted
  std::string cancel_reason;
  std::vector<watch_event> events;
};

// An operation inside a txn, in the gateway's JSON: request_put, request_range,
// request_delete_range.
json op_put(std::string_view key, std::string_view value, int64_t lease = 0);
json op_range(std::string_view key, std::string_view range_end = {});
json op_delete(std::string_view key, std::string_view range_end = {});
// Comparisons: the key's VERSION (0: absent), its LEASE, its VALUE.
json cmp_version_equal(std::string_view key, int64_t version);
json cmp_lease_equal(std::string_view key, int64_t lease);
json cmp_value_equal(std::string_view key, std::string_view value);
// The key's VERSION above `version` (0: the key exists).
json cmp_version_greater(std::string_view key, int64_t version);

json range_request(std::string_view key, std::string_view range_end = {}, int64_t revision = 0);
json put_request(std::string_view key, std::string_view value, int64_t lease = 0);
json delete_request(std::string_view key, std::string_view range_end = {});
json txn_request(json compare, json success, json failure);
json watch_create_request(std::string_view key, std::string_view range_end, int64_t start_revision);

// Parsers of answers. Each returns nullopt, with `error` set, when the JSON is not what the
// gateway sends (a bad base64 key, a number that is not one).
std::optional<range_result> parse_range(const json& j, std::string& error);
std::optional<txn_result> parse_txn(const json& j, std::string& error);
std::optional<lease_grant_result> parse_lease_grant(const json& j, std::string& error);
// The TTL the lease has now; 0 when etcd no longer knows the lease (expired or revoked). The
// answer is a stream message: {"result": {...}}.
std::optional<int64_t> parse_keepalive(const json& j, std::string& error);
std::optional<watch_message> parse_watch_message(const json& j, std::string& error);
// The error text of a gateway error body ({"error": ..., "code": N}), if it is one.
std::optional<std::string> gateway_error(const json& j);

// Splits the body of a streaming answer (watch) into its JSON objects. Fed the body's bytes in
// any pieces; returns each complete object's text as it ends. Objects are found by brace depth
// outside strings, so the separators between them (newlines) do not matter.
class json_stream_splitter {
 public:
  // Appends `bytes`; calls `on_object(text)` for each object completed. False when the stream
  // is not a sequence of objects (a byte outside an object that is not whitespace) or an object
  // grows past `max_object`.
  template <typename F>
  bool feed(std::string_view bytes, F&& on_object) {
    for (char c : bytes) {
      int r = step(c);
      if (r < 0) return false;
      if (r > 0) {
        on_object(std::string_view(current_));
        current_.clear();
      }
    }
    return true;
  }
  size_t buffered() const { return current_.size(); }
  static constexpr size_t max_object = 16 * 1024 * 1024;

 private:
  int step(char c);  // -1 error, 0 more, 1 an object ended with c
  std::string current_;
  int depth_ = 0;
  bool in_string_ = false, escaped_ = false;
};

}  // namespace warren::cluster
