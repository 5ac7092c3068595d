// Definitions (users, permissions, exchanges, queues, bindings) as plain values, and their
// JSON in RabbitMQ's definitions format (what `GET /api/definitions` and `rabbitmqctl
// export_definitions` write in RabbitMQ 3.10). Pure conversion: no broker, no sockets; the
// management resource (definitions.hpp) moves these values to and from the vhosts.
//
// Field tables (arguments) to JSON and back:
//
// | field value               | JSON                      | back to a field value       |
// | ------------------------- | ------------------------- | --------------------------- |
// | bool                      | true / false              | bool ('t')                  |
// | any integer, 8 to 64 bits | integer                   | signed 32 ('I') or 64 ('l') |
// | float, double             | number                    | double ('d')                |
// | string ('S')              | string                    | string ('S')                |
// | table ('F'), array ('A')  | object, array             | table, array                |
// | void ('V')                | null                      | void (RabbitMQ refuses)     |
// | decimal ('D')             | number (value / 10^scale) | double: lossy               |
// | byte array ('x')          | string                    | string: lossy               |
// | timestamp ('T')           | integer (seconds)         | integer: lossy              |
// | NaN, infinities           | null                      | void: lossy                 |
//
// Integers come back as signed 32-bit when they fit and signed 64-bit otherwise, whatever their
// width was, as pika and the Java client send them (RabbitMQ's import makes every integer 64-bit,
// which its redeclaration check does not mind; Warren's does, see integer_value). An integer
// above 2^63-1 is refused. Bytes that are not UTF-8 are written as U+FFFD. Keys keep the order
// of the table (JSON objects are written in that order).
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "auth/user_store.hpp"
#include "common/field_table.hpp"
#include "federation/parameters.hpp"

namespace warren::mgmt {

using json = nlohmann::ordered_json;

// The RabbitMQ version whose definitions format (and behaviour, docs/compatibility.md) Warren
// follows, reported as rabbit_version and rabbitmq_version; product_name and product_version
// say what is really answering.
inline constexpr std::string_view rabbitmq_compat_version = "3.10.8";
inline constexpr std::string_view hashing_algorithm = "rabbit_password_hashing_sha256";

struct exchange_def {
  std::string vhost;
  std::string name;
  std::string type;
  bool durable = true;
  bool auto_delete = false;
  bool internal = false;
  common::field_table arguments;
  bool operator==(const exchange_def&) const = default;
};

struct queue_def {
  std::string vhost;
  std::string name;
  bool durable = true;
  bool auto_delete = false;
  common::field_table arguments;
  // In a cluster: the node the queue lives on, exported as "node" (never read back: a queue
  // imported is declared on the node importing it).
  std::string node;
  bool operator==(const queue_def&) const = default;
};

struct binding_def {
  std::string vhost;
  std::string source;
  std::string destination;
  bool to_queue = true;  // destination_type "queue", else "exchange"
  std::string routing_key;
  common::field_table arguments;
  bool operator==(const binding_def&) const = default;
};

struct permission_def {
  std::string user;
  std::string vhost;
  auth::permission perm;
  bool operator==(const permission_def&) const = default;
};

struct topic_permission_def {
  std::string user;
  std::string vhost;
  std::string exchange;
  auth::topic_permission perm;
  bool operator==(const topic_permission_def&) const = default;
};

// A user as the file has it: the hash in RabbitMQ's sha256 format (a plain "password" in the
// file is hashed while parsing).
// RabbitMQ's limits of a vhost or a user, as set (name -> value; negative: no limit).
using limit_map = std::map<std::string, int64_t, std::less<>>;

struct user_def {
  std::string name;
  std::string password_hash;
  std::vector<std::string> tags;
  // "limits": max-connections, max-channels. Absent from an imported file: left as they are.
  std::optional<limit_map> limits;
  bool operator==(const user_def&) const = default;
};

// A vhost's limits, which RabbitMQ keeps as the runtime parameter of component "vhost-limits",
// name "limits", and exports among the "parameters".
struct vhost_limits_def {
  std::string vhost;
  limit_map limits;
  bool operator==(const vhost_limits_def&) const = default;
};

struct definitions {
  std::vector<user_def> users;
  // Runtime parameters (other than vhost limits) and policies, checked as the API checks them.
  std::vector<federation::parameter> runtime_parameters;
  std::vector<federation::policy> policies;
  std::vector<std::string> vhosts;
  std::vector<permission_def> permissions;
  std::vector<topic_permission_def> topic_permissions;
  std::vector<vhost_limits_def> vhost_limits;
  std::vector<exchange_def> exchanges;
  std::vector<queue_def> queues;
  std::vector<binding_def> bindings;
  // Parts Warren does not implement: counted so that an import can say what it skipped.
  size_t ignored_parameters = 0;  // parameters of components Warren does not know
  size_t ignored_global_parameters = 0;
  size_t ignored_policies = 0;
};

// --- field tables ---
json to_json(const common::field_value& v);
json to_json(const common::field_table& t);
// Objects only; nullopt with `error` set for what a field table cannot hold.
std::optional<common::field_table> table_from_json(const json& j, std::string& error);

// --- whole documents ---
struct export_info {
  std::string product_version;  // Warren's own version
  // Set for GET /api/definitions/{vhost}: RabbitMQ's per-vhost layout (no users, vhosts or
  // permissions; items without their "vhost" key).
  std::optional<std::string> only_vhost;
};
json export_json(const definitions& d, const export_info& info);
// JSON text as the API sends it: invalid UTF-8 replaced, not thrown.
std::string dump(const json& j);

// Parses and checks a definitions document. With `only_vhost` (POST /api/definitions/{vhost})
// every exchange, queue and binding goes to that vhost whatever the file says, and users,
// vhosts and permissions are ignored, as RabbitMQ does. The error is the reason for a 400.
std::variant<definitions, std::string> parse_definitions(
    std::string_view body, const std::optional<std::string>& only_vhost = std::nullopt);

// --- users and permissions, to and from the user store ---
// Users (with their permissions and topic permissions) as definitions, sorted by name.
void add_users(definitions& d, const std::vector<auth::user_ptr>& users);

}  // namespace warren::mgmt
