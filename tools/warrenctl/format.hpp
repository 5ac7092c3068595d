// warrenctl's output, in rabbitmqctl's words and layout, from the management API's JSON. Pure:
// no sockets, no files, so every command's output is golden-tested (tests/format_test.cpp).
//
// Listings print a banner (rabbitmqctl's lines, e.g. "Listing queues for vhost / ..."), a header
// of column names and one tab-separated row per object:
//   -q/--quiet           no banner
//   -s/--silent          no banner and no header
//   --no-table-headers   no header
//   --formatter json     a JSON array of objects with the columns as keys, no banner
// Cells as rabbitmqctl prints them: booleans true/false, lists [a, b], argument tables
// [{"x-max-length",10}] ([] when empty), a missing field an empty cell.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace warren::ctl {

using json = nlohmann::json;

struct output_options {
  bool quiet = false;
  bool silent = false;
  bool no_table_headers = false;
  bool json = false;  // --formatter json
};

// One rabbitmqctl column and where its value comes from in an API object.
struct column {
  std::string name;           // as rabbitmqctl calls it (the header)
  std::string field;          // the API's field, dotted for a nested one ("queue.name")
  std::string constant = {};  // when set, the value of every row (source_kind is "exchange")
};

// A listing command: its banner, its default columns and how its names map to API fields.
struct listing_spec {
  std::string command;  // list_queues, ...
  std::vector<std::string> default_columns;
  // Fields to ask for with ?columns= (empty: the request takes no columns parameter).
  bool api_takes_columns = false;
};

// The specs of every list_* command; nullptr for another name.
const listing_spec* find_listing(std::string_view command);

// The columns for `spec` given the names on the command line (empty: the defaults). An unknown
// name is refused by the caller, not here: any name maps to the API field of the same name.
std::vector<column> columns_for(const listing_spec& spec, const std::vector<std::string>& names);

// The banner lines of a listing, e.g. {"Timeout: 60.0 seconds ...", "Listing queues for vhost
// / ..."}.
std::vector<std::string> listing_banner(const listing_spec& spec, std::string_view vhost);

// A listing's output: the banner, then the rows of `items` (an array of API objects), filtered
// by vhost for list_permissions.
std::string format_listing(const listing_spec& spec, std::string_view vhost,
                           const std::vector<column>& columns, const json& items,
                           const output_options& o);

// One cell as rabbitmqctl's table prints it.
std::string cell_text(const json& value);

// status: from GET /api/overview and the node's object of GET /api/nodes.
std::string format_status(const json& overview, const json& node, const output_options& o);

// cluster_status: rabbitmqctl's sections (Basics, Disk Nodes, Running Nodes, Versions, Alarms,
// Network Partitions, Listeners) from GET /api/overview and GET /api/nodes, and Warren's
// "Fenced Nodes" (nodes that hold no lease in etcd and refuse clients).
std::string format_cluster_status(const json& overview, const json& nodes, const output_options& o);

// The banner and any result line of a command that changes something, e.g. "Adding user
// \"bob\" ...". Empty with -q or -s. `lines` comes from banner_for.
std::string format_lines(const std::vector<std::string>& lines, const output_options& o);

// list_vhost_limits and list_user_limits, from GET /api/vhost-limits or /api/user-limits (a list
// of {"vhost"|"user": name, "value": {limits}}). One vhost or user (`key` empty): the banner, then
// its limits as one JSON object (nothing when it has none), as rabbitmqctl prints them. --global
// (`key` "vhost" or "user"): a table of the name and its limits' JSON.
std::string format_limits(const std::string& banner, const std::string& key, const json& items,
                          const output_options& o);

// Every byte but RFC 3986's unreserved ones percent-encoded, so "/" is "%2F": a vhost or a
// name as one path segment of the API.
std::string path_segment(std::string_view s);

// The API's error reason from an error body ({"error": ..., "reason": ...}), or the body itself.
std::string error_reason(int status, std::string_view body);

}  // namespace warren::ctl
