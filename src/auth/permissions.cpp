// Permission patterns on PCRE2, topic variable expansion and RabbitMQ's refusal texts.
#include "auth/permissions.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <fmt/format.h>
#include <pcre2.h>

#include "auth/user_store.hpp"

namespace warren::auth {

namespace {

// RabbitMQ's limits (rabbit_re): patterns up to 1024 bytes, matches up to 50 000 steps.
constexpr size_t max_pattern_bytes = 1024;
constexpr uint32_t match_limit = 50000;

struct code_deleter {
  void operator()(const pcre2_code* c) const { pcre2_code_free(const_cast<pcre2_code*>(c)); }
};
struct match_data_deleter {
  void operator()(pcre2_match_data* d) const { pcre2_match_data_free(d); }
};

// Read-only once built, so every thread may pass it to pcre2_match.
pcre2_match_context* limits() {
  static pcre2_match_context* ctx = [] {
    pcre2_match_context* c = pcre2_match_context_create(nullptr);
    pcre2_set_match_limit(c, match_limit);
    pcre2_set_depth_limit(c, match_limit);
    return c;
  }();
  return ctx;
}

pcre2_code* compile_regex(std::string_view source, std::string* error) {
  int code = 0;
  PCRE2_SIZE offset = 0;
  // Bytes, not UTF-8: names are matched as RabbitMQ's re matches binaries.
  pcre2_code* c = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(source.data()), source.size(), 0,
                                &code, &offset, nullptr);
  if (!c && error) {
    PCRE2_UCHAR text[256];
    pcre2_get_error_message(code, text, sizeof text);
    *error = fmt::format("{} at position {}", reinterpret_cast<const char*>(text), offset);
  }
  return c;
}

}  // namespace

std::string_view perm_name(perm p) {
  switch (p) {
    case perm::configure:
      return "configure";
    case perm::write:
      return "write";
    case perm::read:
      return "read";
  }
  return "?";
}

std::string_view resource_name(resource r) {
  return r == resource::exchange ? "exchange" : "queue";
}

// ----------------------------------------------------------------------------- pattern

pattern pattern::compile(std::string_view source) {
  pattern p;
  p.source_ = std::string(source);
  if (source.empty()) {
    p.kind_ = kind::empty;  // RabbitMQ reads "" as "^$"
  } else if (source == ".*") {
    p.kind_ = kind::anything;
  } else if (source.size() <= max_pattern_bytes) {
    if (pcre2_code* c = compile_regex(source, nullptr)) {
      // JIT when the platform has it; pcre2_match falls back to the interpreter otherwise.
      pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
      p.code_.reset(c, code_deleter{});
      p.kind_ = kind::regex;
    }
  }
  return p;
}

std::optional<std::string> pattern::check(std::string_view source) {
  if (source.size() > max_pattern_bytes)
    return fmt::format("regular expression is longer than {} bytes", max_pattern_bytes);
  if (source.empty() || source == ".*") return std::nullopt;
  std::string error;
  pcre2_code* c = compile_regex(source, &error);
  if (!c) return error;
  pcre2_code_free(c);
  return std::nullopt;
}

bool pattern::matches(std::string_view subject) const {
  switch (kind_) {
    case kind::nothing:
      return false;
    case kind::anything:
      return true;
    case kind::empty:
      return subject.empty();
    case kind::regex:
      break;
  }
  // One block per thread, big enough for the whole match (which is all a check needs).
  thread_local std::unique_ptr<pcre2_match_data, match_data_deleter> data{
      pcre2_match_data_create(1, nullptr)};
  int rc = pcre2_match(code_.get(), reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0,
                       0, data.get(), limits());
  // 0: matched with more groups than the block holds. Negative: no match, or an error (the step
  // limit): refused either way.
  return rc >= 0;
}

// ----------------------------------------------------------------------------- topic variables

std::string regex_escape(std::string_view value) {
  // rabbit_re:escape's characters.
  static constexpr std::string_view special = "\\^$.|?*+()[]{}-";
  std::string out;
  out.reserve(value.size());
  for (char ch : value) {
    if (special.find(ch) != std::string_view::npos) out += '\\';
    out += ch;
  }
  return out;
}

std::string expand_topic_variables(std::string_view text, const topic_variables& vars) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    size_t open = text.find('{', i);
    if (open == std::string_view::npos) break;
    out.append(text.substr(i, open - i));
    size_t close = text.find('}', open);
    std::optional<std::string_view> value;
    if (close != std::string_view::npos) {
      std::string_view name = text.substr(open + 1, close - open - 1);
      if (name == "username")
        value = vars.username;
      else if (name == "vhost")
        value = vars.vhost;
      else if (name == "client_id")
        value = vars.client_id;
    }
    if (value) {
      out += regex_escape(*value);
      i = close + 1;
    } else {
      out += '{';
      i = open + 1;
    }
  }
  out.append(text.substr(std::min(i, text.size())));
  return out;
}

// ----------------------------------------------------------------------------- vhost_access

vhost_access::vhost_access(const permission& p,
                           const std::map<std::string, topic_permission, std::less<>>* topics,
                           const topic_variables& vars)
    : configure_(pattern::compile(p.configure)),
      write_(pattern::compile(p.write)),
      read_(pattern::compile(p.read)) {
  if (!topics) return;
  for (const auto& [exchange, t] : *topics)
    topics_.emplace(exchange, topic_rule{pattern::compile(expand_topic_variables(t.write, vars)),
                                         pattern::compile(expand_topic_variables(t.read, vars))});
}

const pattern& vhost_access::of(perm p) const {
  switch (p) {
    case perm::configure:
      return configure_;
    case perm::write:
      return write_;
    case perm::read:
      break;
  }
  return read_;
}

std::string_view checked_name(resource r, std::string_view name) {
  return r == resource::exchange && name.empty() ? std::string_view("amq.default") : name;
}

bool vhost_access::allows(perm p, resource r, std::string_view name) const {
  return of(p).matches(checked_name(r, name));
}

bool vhost_access::allows_any(resource r, std::string_view name) const {
  return allows(perm::read, r, name) || allows(perm::write, r, name) ||
         allows(perm::configure, r, name);
}

const topic_rule* vhost_access::topic(std::string_view exchange) const {
  if (topics_.empty()) return nullptr;
  auto it = topics_.find(exchange);
  return it == topics_.end() ? nullptr : &it->second;
}

// ----------------------------------------------------------------------------- checks

std::optional<std::string> check_resource(const vhost_access* a, perm p, resource r,
                                          std::string_view name, std::string_view vhost,
                                          std::string_view user) {
  if (a && a->allows(p, r, name)) return std::nullopt;
  return resource_refusal(p, r, name, vhost, user);
}

std::optional<std::string> check_any_resource(const vhost_access* a, resource r,
                                              std::string_view name, std::string_view vhost,
                                              std::string_view user) {
  if (a && a->allows_any(r, name)) return std::nullopt;
  // RabbitMQ tries configure last, so a refusal reads like a regular declare's.
  return resource_refusal(perm::configure, r, name, vhost, user);
}

std::optional<std::string> check_topic(const vhost_access* a, perm p, std::string_view exchange,
                                       std::string_view routing_key, std::string_view vhost,
                                       std::string_view user) {
  const topic_rule* t = a ? a->topic(exchange) : nullptr;
  if (!t || (p == perm::write ? t->write : t->read).matches(routing_key)) return std::nullopt;
  return topic_refusal(p, routing_key, exchange, vhost, user);
}

// ----------------------------------------------------------------------------- texts

std::string resource_refusal(perm p, resource r, std::string_view name, std::string_view vhost,
                             std::string_view user) {
  return fmt::format("{} access to {} '{}' in vhost '{}' refused for user '{}'", perm_name(p),
                     resource_name(r), checked_name(r, name), vhost, user);
}

std::string topic_refusal(perm p, std::string_view routing_key, std::string_view exchange,
                          std::string_view vhost, std::string_view user) {
  return fmt::format("{} access to topic '{}' in exchange '{}' in vhost '{}' refused for user '{}'",
                     perm_name(p), routing_key, exchange, vhost, user);
}

}  // namespace warren::auth
