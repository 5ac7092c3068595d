// Base64 (RFC 4648): the standard alphabet with padding for Sec-WebSocket-Key/Accept, and the
// URL-safe alphabet without padding that JWTs use. Decoding is strict: no whitespace, padding
// exactly where the alphabet calls for it, and unused trailing bits zero, so each byte string
// has exactly one accepted encoding.
#pragma once

#include <string>
#include <string_view>

namespace warren::web {

std::string base64_encode(std::string_view in);
std::string base64url_encode(std::string_view in);  // no padding

// False on any character outside the alphabet, wrong length or padding, or non-zero unused bits.
bool base64_decode(std::string_view in, std::string& out);
bool base64url_decode(std::string_view in, std::string& out);  // rejects padding

}  // namespace warren::web
