// HS256 token signing (JWS compact form, RFC 7515) for the load tools and tests: the gateway only
// verifies tokens (web/jwt.hpp); something has to make them. OpenSSL's HMAC, base64url from web/.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace warren::load {

// header.payload.signature with the header {"alg":"HS256","typ":"JWT"} and `claims` as the
// payload, signed with `secret`.
std::string jwt_sign_hs256(std::string_view secret, const nlohmann::json& claims);

}  // namespace warren::load
