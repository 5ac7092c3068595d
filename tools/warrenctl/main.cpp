// warrenctl: rabbitmqctl's everyday commands for Warren, over the management HTTP API: to the
// local broker through its control socket (<data-dir>/warren.sock, no password: the socket
// file is readable by the broker's user only) or to --url with basic auth. Output formatting is
// in format.cpp; this file maps commands to requests.
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "warrenctl/client.hpp"
#include "warrenctl/format.hpp"

using namespace warren::ctl;

namespace {

// rabbitmqctl's exit codes (sysexits.h).
constexpr int exit_ok = 0;
constexpr int exit_usage = 64;
constexpr int exit_dataerr = 65;
constexpr int exit_unavailable = 69;
constexpr int exit_software = 70;
constexpr int exit_noperm = 77;

// A command failed: its text goes to stderr after "Error:".
struct failure {
  int code;
  std::string text;
};

struct settings {
  std::string data_dir = "./var";
  std::string socket;
  std::string url;
  std::string username = "guest";
  std::string password = "guest";
  std::string vhost = "/";
  std::string formatter = "table";
  output_options out;
  bool if_empty = false;
  bool if_unused = false;
  bool global = false;         // list_vhost_limits, list_user_limits
  std::string user = "guest";  // list_user_limits
};

class session {
 public:
  explicit session(endpoint to) : to_(std::move(to)) {}

  // The body of a 2xx answer; a failure otherwise.
  std::string call(const std::string& method, const std::string& target,
                   const std::string& body = {},
                   const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    reply r;
    try {
      r = send_request(to_, method, target, body, headers);
    } catch (const unreachable& e) {
      if (e.not_running)
        throw failure{exit_unavailable,
                      fmt::format("the broker is not running: cannot connect to {}", e.what())};
      if (e.permission)
        throw failure{exit_noperm, fmt::format("cannot connect to {}: run warrenctl as the "
                                               "user that runs the broker",
                                               e.what())};
      throw failure{exit_unavailable, fmt::format("cannot connect to {}", e.what())};
    } catch (const std::exception& e) {
      throw failure{exit_software, fmt::format("{}: {}", to_.describe(), e.what())};
    }
    if (r.status >= 200 && r.status < 300) return r.body;
    std::string reason = error_reason(r.status, r.body);
    int code = r.status == 401 || r.status == 403 ? exit_noperm
               : r.status >= 500                  ? exit_software
                                                  : exit_dataerr;
    if (r.status == 401) reason = "Access refused: " + reason;
    throw failure{code, reason};
  }

  json get_json(const std::string& target) {
    std::string body = call("GET", target);
    auto j = json::parse(body, nullptr, false);
    if (j.is_discarded())
      throw failure{exit_software, fmt::format("GET {}: the answer is not JSON", target)};
    return j;
  }

 private:
  endpoint to_;
};

std::string read_all(std::istream& in) {
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void need_args(const std::string& command, const std::vector<std::string>& args, size_t min,
               size_t max, const std::string& usage) {
  if (args.size() < min || args.size() > max)
    throw failure{exit_usage,
                  fmt::format("{}: expected {}\nUsage: warrenctl {}", command,
                              args.size() < min ? "more arguments" : "fewer arguments", usage)};
}

std::string node_name(session& s) {
  try {
    auto overview = s.get_json("/api/overview");
    if (overview.is_object() && overview.contains("node") && overview["node"].is_string())
      return overview["node"].get<std::string>();
  } catch (const failure&) {
  }
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return std::string("warren@") + host;
}

// A limits definition as rabbitmqctl takes it: a JSON object.
json limits_definition(const std::string& text) {
  json def = json::parse(text, nullptr, false);
  if (!def.is_object())
    throw failure{exit_dataerr, fmt::format("Could not parse JSON document: {}", text)};
  return def;
}

// rabbitmqctl's limit commands over /api/vhost-limits and /api/user-limits. False for another
// command.
bool run_limits(const std::string& command, const std::vector<std::string>& args,
                const settings& st, session& s, std::string& out) {
  const output_options& o = st.out;
  const std::string vl = "/api/vhost-limits/" + path_segment(st.vhost);
  if (command == "set_vhost_limits") {
    need_args(command, args, 1, 1, "set_vhost_limits [-p <vhost>] <definition>");
    json def = limits_definition(args[0]);
    // As rabbitmqctl's: the definition replaces the vhost's limits, so those it leaves out go.
    json current = s.get_json(vl);
    for (auto it = def.begin(); it != def.end(); ++it)
      s.call("PUT", vl + "/" + path_segment(it.key()), json{{"value", it.value()}}.dump());
    if (current.is_array() && !current.empty())
      for (auto it = current[0]["value"].begin(); it != current[0]["value"].end(); ++it)
        if (!def.contains(it.key())) s.call("DELETE", vl + "/" + path_segment(it.key()));
    out = format_lines(
        {fmt::format("Setting vhost limits to \"{}\" for vhost \"{}\" ...", args[0], st.vhost)}, o);
    return true;
  }
  if (command == "clear_vhost_limits") {
    need_args(command, args, 0, 0, "clear_vhost_limits [-p <vhost>]");
    json current = s.get_json(vl);
    if (current.is_array() && !current.empty())
      for (auto it = current[0]["value"].begin(); it != current[0]["value"].end(); ++it)
        s.call("DELETE", vl + "/" + path_segment(it.key()));
    out = format_lines({fmt::format("Clearing vhost \"{}\" limits ...", st.vhost)}, o);
    return true;
  }
  if (command == "list_vhost_limits") {
    need_args(command, args, 0, 0, "list_vhost_limits [-p <vhost>] [--global]");
    out = st.global ? format_limits("Listing limits for all vhosts ...", "vhost",
                                    s.get_json("/api/vhost-limits"), o)
                    : format_limits(fmt::format("Listing limits for vhost \"{}\" ...", st.vhost),
                                    "", s.get_json(vl), o);
    return true;
  }
  if (command == "set_user_limits") {
    need_args(command, args, 2, 2, "set_user_limits <username> <definition>");
    json def = limits_definition(args[1]);
    // As rabbitmqctl's: merged into the user's limits.
    for (auto it = def.begin(); it != def.end(); ++it)
      s.call("PUT", "/api/user-limits/" + path_segment(args[0]) + "/" + path_segment(it.key()),
             json{{"value", it.value()}}.dump());
    out = format_lines(
        {fmt::format("Setting user limits to \"{}\" for user \"{}\" ...", args[1], args[0])}, o);
    return true;
  }
  if (command == "clear_user_limits") {
    need_args(command, args, 2, 2, "clear_user_limits <username> <limit_type> | all");
    s.call("DELETE", "/api/user-limits/" + path_segment(args[0]) + "/" + path_segment(args[1]));
    out = format_lines(
        {args[1] == "all"
             ? fmt::format("Clearing all limits for user \"{}\" ...", args[0])
             : fmt::format("Clearing \"{}\" limit for user \"{}\" ...", args[1], args[0])},
        o);
    return true;
  }
  if (command == "list_user_limits") {
    need_args(command, args, 0, 0, "list_user_limits [--user <username>] [--global]");
    out = st.global ? format_limits("Listing limits for all users ...", "user",
                                    s.get_json("/api/user-limits"), o)
                    : format_limits(fmt::format("Listing limits for user \"{}\" ...", st.user), "",
                                    s.get_json("/api/user-limits/" + path_segment(st.user)), o);
    return true;
  }
  return false;
}

// Runs one command; what it prints to stdout is returned.
std::string run(const std::string& command, const std::vector<std::string>& args,
                const settings& st, session& s) {
  const output_options& o = st.out;
  const std::string v = path_segment(st.vhost);
  if (const listing_spec* spec = find_listing(command)) {
    if (command != "list_queues" && command != "list_exchanges" && command != "list_bindings" &&
        command != "list_connections" && command != "list_channels" &&
        command != "list_consumers" && !args.empty())
      need_args(command, args, 0, 0, command);
    auto columns = columns_for(*spec, args);
    std::string target;
    if (command == "list_queues") target = "/api/queues/" + v;
    if (command == "list_exchanges") target = "/api/exchanges/" + v;
    if (command == "list_bindings") target = "/api/bindings/" + v;
    if (command == "list_connections") target = "/api/connections";
    if (command == "list_channels") target = "/api/channels";
    if (command == "list_consumers") target = "/api/consumers/" + v;
    if (command == "list_users") target = "/api/users";
    if (command == "list_vhosts") target = "/api/vhosts";
    if (command == "list_permissions") target = "/api/permissions";
    if (spec->api_takes_columns) {
      std::string fields;
      for (const auto& c : columns) {
        if (!c.constant.empty()) continue;
        std::string top = c.field.substr(0, c.field.find('.'));
        if (fields.find("," + top + ",") != std::string::npos) continue;
        {
          fields += fields.empty() ? "," : "";
          fields += top + ",";
        }
      }
      if (!fields.empty()) target += "?columns=" + fields.substr(1, fields.size() - 2);
    }
    return format_listing(*spec, st.vhost, columns, s.get_json(target), o);
  }
  if (command == "status") {
    need_args(command, args, 0, 0, "status");
    json overview = s.get_json("/api/overview");
    json nodes = s.get_json("/api/nodes");
    json node = json::object();
    if (nodes.is_array() && !nodes.empty()) {
      node = nodes[0];
      for (const auto& n : nodes)
        if (n.value("name", "") == overview.value("node", "")) node = n;
    }
    return format_status(overview, node, o);
  }
  if (command == "cluster_status") {
    need_args(command, args, 0, 0, "cluster_status");
    return format_cluster_status(s.get_json("/api/overview"), s.get_json("/api/nodes"), o);
  }
  if (command == "close_connection") {
    need_args(command, args, 2, 2, "close_connection <connection name> <explanation>");
    std::string out =
        format_lines({fmt::format("Closing connection {}, reason: {}...", args[0], args[1])}, o);
    s.call("DELETE", "/api/connections/" + path_segment(args[0]), {}, {{"X-Reason", args[1]}});
    return out;
  }
  if (command == "purge_queue") {
    need_args(command, args, 1, 1, "purge_queue [-p <vhost>] <queue>");
    s.call("DELETE", "/api/queues/" + v + "/" + path_segment(args[0]) + "/contents");
    return format_lines({fmt::format("Purging queue '{}' in vhost '{}' ...", args[0], st.vhost)},
                        o);
  }
  if (command == "delete_queue") {
    need_args(command, args, 1, 1, "delete_queue [-p <vhost>] <queue> [--if-empty] [--if-unused]");
    std::string q = "/api/queues/" + v + "/" + path_segment(args[0]);
    json before = s.get_json(q);
    std::string query;
    if (st.if_empty) query += "if-empty=true";
    if (st.if_unused) query += std::string(query.empty() ? "" : "&") + "if-unused=true";
    s.call("DELETE", q + (query.empty() ? "" : "?" + query));
    std::string conditions;
    if (st.if_empty) conditions += "if queue is empty ";
    if (st.if_unused) conditions += std::string(st.if_empty ? "and " : "") + "if queue is unused ";
    std::string out = format_lines(
        {fmt::format("Deleting queue '{}' on vhost '{}' {}...", args[0], st.vhost, conditions)}, o);
    if (o.json)
      return json{{"result", "ok"}, {"messages", before.value("messages", 0)}}.dump() + "\n";
    return out + fmt::format("Queue was successfully deleted with {} messages\n",
                             cell_text(before.value("messages", json(0))));
  }
  if (command == "add_user") {
    need_args(command, args, 2, 2, "add_user <username> <password>");
    std::string u = "/api/users/" + path_segment(args[0]);
    bool exists = true;
    try {
      s.call("GET", u);
    } catch (const failure& f) {
      if (f.code != exit_dataerr) throw;
      exists = false;
    }
    if (exists) throw failure{exit_dataerr, fmt::format("User \"{}\" already exists", args[0])};
    s.call("PUT", u, json{{"password", args[1]}, {"tags", ""}}.dump());
    return format_lines({fmt::format("Adding user \"{}\" ...", args[0])}, o);
  }
  if (command == "delete_user") {
    need_args(command, args, 1, 1, "delete_user <username>");
    s.call("DELETE", "/api/users/" + path_segment(args[0]));
    return format_lines({fmt::format("Deleting user \"{}\" ...", args[0])}, o);
  }
  if (command == "change_password") {
    need_args(command, args, 2, 2, "change_password <username> <password>");
    std::string u = "/api/users/" + path_segment(args[0]);
    json user = s.get_json(u);  // keep its tags
    json tags = user.value("tags", json(""));
    std::string joined;
    if (tags.is_array()) {
      for (const auto& t : tags) {
        joined += joined.empty() ? "" : ",";
        joined += t.get<std::string>();
      }
    } else if (tags.is_string()) {
      joined = tags.get<std::string>();
    }
    s.call("PUT", u, json{{"password", args[1]}, {"tags", joined}}.dump());
    return format_lines({fmt::format("Changing password for user \"{}\" ...", args[0])}, o);
  }
  if (command == "set_user_tags") {
    need_args(command, args, 1, 1000, "set_user_tags <username> <tag> [...]");
    std::string u = "/api/users/" + path_segment(args[0]);
    json user = s.get_json(u);  // keep its password
    std::string tags, listed;
    for (size_t i = 1; i < args.size(); ++i) {
      {
        tags += i > 1 ? "," : "";
        tags += args[i];
      }
      {
        listed += i > 1 ? ", " : "";
        listed += args[i];
      }
    }
    json body = {{"password_hash", user.value("password_hash", "")}, {"tags", tags}};
    if (user.contains("hashing_algorithm")) body["hashing_algorithm"] = user["hashing_algorithm"];
    s.call("PUT", u, body.dump());
    return format_lines({fmt::format("Setting tags for user \"{}\" to [{}] ...", args[0], listed)},
                        o);
  }
  if (command == "set_permissions") {
    need_args(command, args, 4, 4, "set_permissions [-p <vhost>] <username> <conf> <write> <read>");
    s.call("PUT", "/api/permissions/" + v + "/" + path_segment(args[0]),
           json{{"configure", args[1]}, {"write", args[2]}, {"read", args[3]}}.dump());
    return format_lines(
        {fmt::format("Setting permissions for user \"{}\" in vhost \"{}\" ...", args[0], st.vhost)},
        o);
  }
  if (command == "add_vhost") {
    need_args(command, args, 1, 1, "add_vhost <vhost>");
    s.call("PUT", "/api/vhosts/" + path_segment(args[0]), "{}");
    return format_lines({fmt::format("Adding vhost \"{}\" ...", args[0])}, o);
  }
  if (command == "delete_vhost") {
    need_args(command, args, 1, 1, "delete_vhost <vhost>");
    s.call("DELETE", "/api/vhosts/" + path_segment(args[0]));
    return format_lines({fmt::format("Deleting vhost \"{}\" ...", args[0])}, o);
  }
  if (command == "export_definitions") {
    need_args(command, args, 1, 1, "export_definitions <file | ->");
    std::string defs = s.call("GET", "/api/definitions");
    if (args[0] == "-") return defs + (defs.empty() || defs.back() != '\n' ? "\n" : "");
    std::ofstream f(args[0], std::ios::binary | std::ios::trunc);
    f << defs;
    f.close();
    if (!f) throw failure{exit_software, fmt::format("cannot write {}", args[0])};
    return format_lines(
        {fmt::format("Exporting definitions in JSON to a file at \"{}\" ...", args[0])}, o);
  }
  if (command == "import_definitions") {
    need_args(command, args, 1, 1, "import_definitions <file | ->");
    std::string defs;
    if (args[0] == "-") {
      defs = read_all(std::cin);
    } else {
      std::ifstream f(args[0], std::ios::binary);
      if (!f) throw failure{exit_dataerr, fmt::format("cannot read {}", args[0])};
      defs = read_all(f);
    }
    s.call("POST", "/api/definitions", defs);
    return format_lines(
        {args[0] == "-"
             ? std::string("Importing definitions in JSON from standard input ...")
             : fmt::format("Importing definitions in JSON from a file at \"{}\" ...", args[0])},
        o);
  }
  if (command == "set_vm_memory_high_watermark") {
    json body;
    std::string banner;
    if (!args.empty() && args[0] == "absolute") {
      need_args(command, args, 2, 2, "set_vm_memory_high_watermark absolute <size>");
      body = {{"absolute", args[1]}};
      banner = fmt::format("Setting memory threshold on {} to {} bytes ...", node_name(s), args[1]);
    } else {
      need_args(command, args, 1, 1, "set_vm_memory_high_watermark <fraction>");
      double fraction = 0;
      size_t used = 0;
      try {
        fraction = std::stod(args[0], &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != args[0].size() || fraction < 0 || fraction > 1)
        throw failure{exit_usage, "the fraction must be a number from 0 to 1"};
      body = {{"fraction", fraction}};
      banner = fmt::format("Setting memory threshold on {} to {} ...", node_name(s), args[0]);
    }
    s.call("PUT", "/api/warren/vm-memory-high-watermark", body.dump());
    return format_lines({banner}, o);
  }
  if (std::string out; run_limits(command, args, st, s, out)) return out;
  throw failure{exit_usage, fmt::format("unknown command '{}' (see warrenctl --help)", command)};
}

const char* const commands_help[][2] = {
    {"list_queues [<column> ...]", "queues of the vhost (default columns: name messages)"},
    {"list_exchanges [<column> ...]", "exchanges of the vhost (name type)"},
    {"list_bindings [<column> ...]",
     "bindings of the vhost (source_name source_kind destination_name destination_kind "
     "routing_key arguments)"},
    {"list_connections [<column> ...]", "connections (user peer_host peer_port state)"},
    {"list_channels [<column> ...]",
     "channels (name user consumer_count messages_unacknowledged; name stands for pid)"},
    {"list_consumers [<column> ...]",
     "consumers of the vhost (queue_name channel_pid consumer_tag ack_required prefetch_count "
     "active arguments)"},
    {"list_users", "users (user tags)"},
    {"list_vhosts", "vhosts (name)"},
    {"list_permissions", "permissions in the vhost (user configure write read)"},
    {"status", "the node: version, uptime, memory, alarms, file descriptors, listeners"},
    {"cluster_status", "the cluster: its nodes (running or not, fenced), versions, listeners"},
    {"close_connection <name> <reason>", "closes a connection (DELETE with X-Reason)"},
    {"purge_queue <queue>", "removes a queue's ready messages"},
    {"delete_queue <queue> [--if-empty] [--if-unused]", "deletes a queue"},
    {"add_user <user> <password>", "adds a user without tags"},
    {"delete_user <user>", "deletes a user"},
    {"change_password <user> <password>", "changes a password, keeping the tags"},
    {"set_user_tags <user> <tag> ...", "replaces a user's tags"},
    {"set_permissions <user> <conf> <write> <read>", "sets a user's permissions in the vhost"},
    {"add_vhost <vhost>", "adds a vhost"},
    {"delete_vhost <vhost>", "deletes a vhost"},
    {"export_definitions <file | ->", "writes the definitions (GET /api/definitions)"},
    {"import_definitions <file | ->", "loads definitions (POST /api/definitions)"},
    {"set_vm_memory_high_watermark <fraction>", "sets the memory alarm's threshold"},
    {"set_vhost_limits <definition>",
     "replaces the vhost's limits, e.g. '{\"max-connections\": 10, \"max-queues\": 100}'"},
    {"clear_vhost_limits", "clears the vhost's limits"},
    {"list_vhost_limits [--global]", "the vhost's limits (--global: every vhost's)"},
    {"set_user_limits <user> <definition>",
     "sets user limits, e.g. '{\"max-connections\": 10, \"max-channels\": 20}'"},
    {"clear_user_limits <user> <limit | all>", "clears one or all of a user's limits"},
    {"list_user_limits [--user <user>] [--global]", "a user's limits (default guest)"},
    {"set_vm_memory_high_watermark absolute <size>", "... as a size (e.g. 200MiB)"},
};

std::string footer() {
  std::string f = "\nCommands:\n";
  for (const auto& c : commands_help) f += fmt::format("  {}\n      {}\n", c[0], c[1]);
  f += "\nThe local broker is reached over its control socket, <data-dir>/warren.sock (warren "
       "--ctl-socket),\nwithout a password: the socket is accessible to the broker's user only. "
       "--url reaches any\nbroker's management API with basic auth instead.\n"
       "\nset_vm_memory_high_watermark sends PUT /api/warren/vm-memory-high-watermark with the "
       "body\n{\"fraction\":0.4} or {\"absolute\":\"200MiB\"} (a Warren extension of the API; "
       "sizes as\nwarren's --vm-memory-high-watermark-absolute takes them).\n"
       "\nExit codes (rabbitmqctl's): 0 ok, 64 usage, 65 refused by the broker (bad input, not "
       "found),\n69 broker not running or unreachable, 70 broker or protocol error, 77 access "
       "refused.\n";
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  settings st;
  CLI::App app{
      "warrenctl: manage a Warren broker with rabbitmqctl's commands and output, over the "
      "management HTTP API.",
      "warrenctl"};
  app.footer(footer());
  app.add_option("--data-dir", st.data_dir,
                 "The broker's data directory: its control socket is <data-dir>/warren.sock")
      ->capture_default_str();
  app.add_option("--socket", st.socket, "The broker's control socket (instead of --data-dir)");
  app.add_option("--url", st.url,
                 "A management API to reach over TCP instead, e.g. http://host:15672");
  app.add_option("-u,--username", st.username, "User for --url (basic auth)")
      ->capture_default_str();
  app.add_option("--password", st.password, "Password for --url")->capture_default_str();
  app.add_option("-p,--vhost", st.vhost, "Virtual host")->capture_default_str();
  app.add_flag("-q,--quiet", st.out.quiet, "No banner");
  app.add_flag("-s,--silent", st.out.silent, "No banner and no table header");
  app.add_flag("--no-table-headers", st.out.no_table_headers, "No table header");
  app.add_option("--formatter", st.formatter, "table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  app.add_flag("--if-empty", st.if_empty, "delete_queue: only if it has no messages");
  app.add_flag("--if-unused", st.if_unused, "delete_queue: only if it has no consumers");
  app.add_flag("--global", st.global,
               "list_vhost_limits, list_user_limits: of every vhost or user");
  app.add_option("--user", st.user, "list_user_limits: the user")->capture_default_str();
  std::vector<std::string> words;
  app.add_option("command", words, "A command and its arguments (see below)");
  app.positionals_at_end(false);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? exit_ok : exit_usage;
  }
  if (words.empty()) {
    std::cerr << app.help();
    return exit_usage;
  }
  st.out.json = st.formatter == "json";
  endpoint to;
  if (!st.url.empty()) {
    auto parsed = parse_url(st.url);
    if (!parsed) {
      std::cerr << "Error:\n--url: expected http://host[:port][/prefix], got " << st.url << "\n";
      return exit_usage;
    }
    to = *parsed;
    to.username = st.username;
    to.password = st.password;
  } else {
    to.socket_path = st.socket.empty() ? st.data_dir + "/warren.sock" : st.socket;
  }
  std::string command = words.front();
  std::vector<std::string> args(words.begin() + 1, words.end());
  session s(to);
  try {
    std::cout << run(command, args, st, s) << std::flush;
  } catch (const failure& f) {
    std::cout << std::flush;
    std::cerr << "Error:\n" << f.text << "\n";
    return f.code;
  }
  return exit_ok;
}
