// etcd's JSON gateway: encoding requests, parsing answers (see etcd_codec.hpp).
#include "cluster/etcd_codec.hpp"

#include <charconv>

#include "web/base64.hpp"

namespace warren::cluster {

namespace {

std::string b64(std::string_view s) {
  return web::base64_encode(s);
}

// An int64 field: a JSON string of digits (the gateway's form) or a number; absent is 0.
bool int_field(const json& j, const char* name, int64_t& out, std::string& error) {
  out = 0;
  auto it = j.find(name);
  if (it == j.end()) return true;
  if (it->is_number_integer()) {
    out = it->get<int64_t>();
    return true;
  }
  if (it->is_string()) {
    const auto& s = it->get_ref<const std::string&>();
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (ec == std::errc() && p == s.data() + s.size()) return true;
  }
  error = std::string("field '") + name + "' is not an integer";
  return false;
}

bool bytes_field(const json& j, const char* name, std::string& out, std::string& error) {
  out.clear();
  auto it = j.find(name);
  if (it == j.end()) return true;
  if (it->is_string() && web::base64_decode(it->get_ref<const std::string&>(), out)) return true;
  error = std::string("field '") + name + "' is not base64";
  return false;
}

bool parse_kv(const json& j, key_value& kv, std::string& error) {
  if (!j.is_object()) {
    error = "a key-value is not an object";
    return false;
  }
  return bytes_field(j, "key", kv.key, error) && bytes_field(j, "value", kv.value, error) &&
         int_field(j, "create_revision", kv.create_revision, error) &&
         int_field(j, "mod_revision", kv.mod_revision, error) &&
         int_field(j, "version", kv.version, error) && int_field(j, "lease", kv.lease, error);
}

bool header_revision(const json& j, int64_t& out, std::string& error) {
  out = 0;
  auto h = j.find("header");
  if (h == j.end()) return true;
  if (!h->is_object()) {
    error = "header is not an object";
    return false;
  }
  return int_field(*h, "revision", out, error);
}

}  // namespace

std::string prefix_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

json op_put(std::string_view key, std::string_view value, int64_t lease) {
  return {{"request_put", put_request(key, value, lease)}};
}
json op_range(std::string_view key, std::string_view range_end) {
  return {{"request_range", range_request(key, range_end)}};
}
json op_delete(std::string_view key, std::string_view range_end) {
  return {{"request_delete_range", delete_request(key, range_end)}};
}
json cmp_version_equal(std::string_view key, int64_t version) {
  return {{"key", b64(key)},
          {"target", "VERSION"},
          {"result", "EQUAL"},
          {"version", std::to_string(version)}};
}
json cmp_lease_equal(std::string_view key, int64_t lease) {
  return {{"key", b64(key)},
          {"target", "LEASE"},
          {"result", "EQUAL"},
          {"lease", std::to_string(lease)}};
}
json cmp_version_greater(std::string_view key, int64_t version) {
  return {{"key", b64(key)},
          {"target", "VERSION"},
          {"result", "GREATER"},
          {"version", std::to_string(version)}};
}
json cmp_value_equal(std::string_view key, std::string_view value) {
  return {{"key", b64(key)}, {"target", "VALUE"}, {"result", "EQUAL"}, {"value", b64(value)}};
}

json range_request(std::string_view key, std::string_view range_end, int64_t revision) {
  json j = {{"key", b64(key)}};
  if (!range_end.empty()) j["range_end"] = b64(range_end);
  if (revision) j["revision"] = std::to_string(revision);
  return j;
}
json put_request(std::string_view key, std::string_view value, int64_t lease) {
  json j = {{"key", b64(key)}, {"value", b64(value)}};
  if (lease) j["lease"] = std::to_string(lease);
  return j;
}
json delete_request(std::string_view key, std::string_view range_end) {
  json j = {{"key", b64(key)}};
  if (!range_end.empty()) j["range_end"] = b64(range_end);
  return j;
}
json txn_request(json compare, json success, json failure) {
  return {{"compare", std::move(compare)},
          {"success", std::move(success)},
          {"failure", std::move(failure)}};
}
json watch_create_request(std::string_view key, std::string_view range_end,
                          int64_t start_revision) {
  json c = {{"key", b64(key)}};
  if (!range_end.empty()) c["range_end"] = b64(range_end);
  if (start_revision) c["start_revision"] = std::to_string(start_revision);
  return {{"create_request", std::move(c)}};
}

std::optional<range_result> parse_range(const json& j, std::string& error) {
  if (!j.is_object()) {
    error = "a range answer is not an object";
    return std::nullopt;
  }
  range_result r;
  if (!header_revision(j, r.revision, error)) return std::nullopt;
  if (auto it = j.find("kvs"); it != j.end()) {
    if (!it->is_array()) {
      error = "kvs is not an array";
      return std::nullopt;
    }
    r.kvs.reserve(it->size());
    for (const auto& x : *it)
      if (!parse_kv(x, r.kvs.emplace_back(), error)) return std::nullopt;
  }
  return r;
}

std::optional<txn_result> parse_txn(const json& j, std::string& error) {
  if (!j.is_object()) {
    error = "a txn answer is not an object";
    return std::nullopt;
  }
  txn_result r;
  if (!header_revision(j, r.revision, error)) return std::nullopt;
  auto s = j.find("succeeded");
  r.succeeded = s != j.end() && s->is_boolean() && s->get<bool>();
  if (auto it = j.find("responses"); it != j.end() && it->is_array())
    for (const auto& resp : *it)
      if (auto rr = resp.find("response_range"); rr != resp.end()) {
        auto x = parse_range(*rr, error);
        if (!x) return std::nullopt;
        r.ranges.push_back(std::move(*x));
      }
  return r;
}

std::optional<lease_grant_result> parse_lease_grant(const json& j, std::string& error) {
  lease_grant_result r;
  if (!j.is_object() || !int_field(j, "ID", r.id, error) || !int_field(j, "TTL", r.ttl, error))
    return std::nullopt;
  if (r.id == 0) {
    error = "lease grant without an ID";
    return std::nullopt;
  }
  return r;
}

std::optional<int64_t> parse_keepalive(const json& j, std::string& error) {
  auto it = j.find("result");
  if (!j.is_object() || it == j.end() || !it->is_object()) {
    error = "a keepalive answer has no result";
    return std::nullopt;
  }
  int64_t ttl = 0;
  if (!int_field(*it, "TTL", ttl, error)) return std::nullopt;
  return ttl;
}

std::optional<watch_message> parse_watch_message(const json& j, std::string& error) {
  auto it = j.find("result");
  if (!j.is_object() || it == j.end() || !it->is_object()) {
    if (auto e = gateway_error(j)) {
      error = *e;
    } else {
      error = "a watch message has no result";
    }
    return std::nullopt;
  }
  const json& r = *it;
  watch_message m;
  if (!header_revision(r, m.revision, error) ||
      !int_field(r, "compact_revision", m.compact_revision, error))
    return std::nullopt;
  auto flag = [&r](const char* name) {
    auto f = r.find(name);
    return f != r.end() && f->is_boolean() && f->get<bool>();
  };
  m.created = flag("created");
  m.canceled = flag("canceled");
  if (auto c = r.find("cancel_reason"); c != r.end() && c->is_string()) m.cancel_reason = *c;
  if (auto ev = r.find("events"); ev != r.end()) {
    if (!ev->is_array()) {
      error = "events is not an array";
      return std::nullopt;
    }
    for (const auto& e : *ev) {
      watch_event& out = m.events.emplace_back();
      auto t = e.find("type");
      out.deleted = t != e.end() && t->is_string() && *t == "DELETE";
      auto kv = e.find("kv");
      if (kv == e.end() || !parse_kv(*kv, out.kv, error)) {
        if (error.empty()) error = "an event has no kv";
        return std::nullopt;
      }
    }
  }
  return m;
}

std::optional<std::string> gateway_error(const json& j) {
  if (!j.is_object()) return std::nullopt;
  auto e = j.find("error");
  if (e == j.end()) return std::nullopt;
  if (e->is_string()) return e->get<std::string>();
  if (auto m = j.find("message"); m != j.end() && m->is_string()) return m->get<std::string>();
  return e->dump();
}

int json_stream_splitter::step(char c) {
  if (depth_ == 0) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') return 0;
    if (c != '{') return -1;
  }
  if (current_.size() >= max_object) return -1;
  current_ += c;
  if (in_string_) {
    if (escaped_)
      escaped_ = false;
    else if (c == '\\')
      escaped_ = true;
    else if (c == '"')
      in_string_ = false;
    return 0;
  }
  if (c == '"') {
    in_string_ = true;
  } else if (c == '{' || c == '[') {
    ++depth_;
  } else if (c == '}' || c == ']') {
    if (--depth_ == 0) return 1;
    if (depth_ < 0) return -1;
  }
  return 0;
}

}  // namespace warren::cluster
