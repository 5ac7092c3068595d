// A JSON value written as Erlang's ~tp writes the term RabbitMQ decoded it to (strings are
// binaries: <<"abc">>), for RabbitMQ's validation texts (runtime parameters, policies, limits).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace warren::federation {

std::string erlang_term(const nlohmann::ordered_json& v);

}  // namespace warren::federation
