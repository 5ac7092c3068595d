// Percent-decoding of request targets (RFC 3986 2.1), shared by the management API and the web
// gateway: path segments, and query values where '+' also means a space (HTML forms).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace warren::http {

// nullopt for a '%' not followed by two hex digits.
std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space = false);

// The value of a query parameter ("a=1&b=2"), decoded with plus_is_space; nullopt if absent, ""
// for "name" or "name=" or a value that does not decode.
std::optional<std::string> query_param(std::string_view query, std::string_view name);
// Every value of a repeated parameter ("family=a&family=b"), in order, decoded likewise.
std::vector<std::string> query_params(std::string_view query, std::string_view name);

}  // namespace warren::http
