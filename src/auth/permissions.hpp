// RabbitMQ's access control, compiled: the configure/write/read patterns a user has in a vhost
// and the topic permissions of its exchanges, checked on every AMQP and management operation.
// Patterns are PCRE (what RabbitMQ's Erlang `re` is), compiled once when a user changes
// (user_store), matched unanchored as RabbitMQ does; "" means "^$", an invalid pattern allows
// nothing. Compiled objects are immutable and shared by every worker: matching is thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

// PCRE2's compiled pattern (pcre2.h, 8-bit code units), kept out of this header.
struct pcre2_real_code_8;

namespace warren::auth {

struct permission;
struct topic_permission;

// RabbitMQ's three kinds of access.
enum class perm : uint8_t { configure, write, read };
std::string_view perm_name(perm p);

// The resources they apply to.
enum class resource : uint8_t { exchange, queue };
std::string_view resource_name(resource r);

// One permission pattern.
class pattern {
 public:
  pattern() = default;  // allows nothing
  // Never fails: an invalid pattern allows nothing (RabbitMQ denies on a regex error).
  static pattern compile(std::string_view source);
  // Why `source` cannot be set as a permission pattern (RabbitMQ refuses it: longer than 1024
  // bytes, or not a regular expression); nullopt if it can.
  static std::optional<std::string> check(std::string_view source);

  // Any thread. An unanchored search, as Erlang's re:run; a match that exceeds RabbitMQ's
  // limit of 50 000 steps counts as no match.
  bool matches(std::string_view subject) const;
  const std::string& source() const { return source_; }

 private:
  // ".*" and "" are by far the most common patterns: they need no regex.
  enum class kind : uint8_t { nothing, anything, empty, regex };
  kind kind_ = kind::nothing;
  std::shared_ptr<const pcre2_real_code_8> code_;
  std::string source_;
};

// Topic permissions: the variables RabbitMQ expands in their patterns. A variable without a value
// stays as written: RabbitMQ has a client id only for MQTT, so over AMQP 0-9-1 "{client_id}" is
// left in the pattern (and then matches those literal characters).
struct topic_variables {
  std::string_view username;
  std::string_view vhost;
  std::optional<std::string_view> client_id;
};
// Replaces "{username}", "{vhost}" and "{client_id}" by their values, escaped for a regex as
// RabbitMQ 4.x does (a name with a '.' matches only a '.').
std::string expand_topic_variables(std::string_view pattern, const topic_variables& vars);
// A value escaped so that a regex matches exactly it.
std::string regex_escape(std::string_view value);

struct topic_rule {
  pattern write;
  pattern read;
};

// What one user may do in one vhost. Built by the user store for each (user, vhost) with a
// permission, when the user changes; immutable afterwards, so connections on any worker share it.
class vhost_access {
 public:
  // `topics`: the user's topic permissions in this vhost, by exchange (may be null).
  vhost_access(const permission& p,
               const std::map<std::string, topic_permission, std::less<>>* topics,
               const topic_variables& vars);

  // RabbitMQ's check_resource_access: the default exchange "" is checked as "amq.default".
  bool allows(perm p, resource r, std::string_view name) const;
  // A passive declare needs any of the three (RabbitMQ 4.3).
  bool allows_any(resource r, std::string_view name) const;
  // The topic permission on `exchange`, or null: without one, every routing key is allowed.
  const topic_rule* topic(std::string_view exchange) const;

 private:
  const pattern& of(perm p) const;

  pattern configure_, write_, read_;
  std::map<std::string, topic_rule, std::less<>> topics_;
};

// The checks as the AMQP and HTTP layers make them: nullopt if allowed, else the refusal text
// (below). `a` null: the user has no permission in the vhost, and every resource is refused.
// A topic check allows what has no topic permission (RabbitMQ's internal backend); the caller
// makes it only for topic exchanges.
std::optional<std::string> check_resource(const vhost_access* a, perm p, resource r,
                                          std::string_view name, std::string_view vhost,
                                          std::string_view user);
std::optional<std::string> check_any_resource(const vhost_access* a, resource r,
                                              std::string_view name, std::string_view vhost,
                                              std::string_view user);
std::optional<std::string> check_topic(const vhost_access* a, perm p, std::string_view exchange,
                                       std::string_view routing_key, std::string_view vhost,
                                       std::string_view user);

// The name a check uses: "" (the default exchange) is "amq.default".
std::string_view checked_name(resource r, std::string_view name);

// RabbitMQ's refusal texts (rabbit_access_control), without the "ACCESS_REFUSED - " that the AMQP
// reply puts before them:
//   write access to exchange 'amq.default' in vhost '/' refused for user 'u'
//   write access to topic 'a.b' in exchange 'amq.topic' in vhost '/' refused for user 'u'
std::string resource_refusal(perm p, resource r, std::string_view name, std::string_view vhost,
                             std::string_view user);
std::string topic_refusal(perm p, std::string_view routing_key, std::string_view exchange,
                          std::string_view vhost, std::string_view user);

}  // namespace warren::auth
