// Erlang's ~tp rendering of a decoded JSON term, for RabbitMQ's validation texts.
#include "federation/erlang_term.hpp"

namespace warren::federation {

using json = nlohmann::ordered_json;

std::string erlang_term(const json& v) {
  if (v.is_string()) {
    std::string out = "<<\"";
    for (char c : v.get_ref<const std::string&>()) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    return out + "\">>";
  }
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_null()) return "null";
  if (v.is_number()) return v.dump();
  std::string out = v.is_array() ? "[" : "#{";
  bool first = true;
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (!first) out += ",";
    first = false;
    if (v.is_object()) out += erlang_term(json(it.key())) + " => ";
    out += erlang_term(*it);
  }
  return out + (v.is_array() ? "]" : "}");
}

}  // namespace warren::federation
