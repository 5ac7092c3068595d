// Salted password hashes in RabbitMQ's rabbit_password_hashing_sha256 format, so definitions
// exported from RabbitMQ import unchanged: base64(salt[4] ++ sha256(salt[4] ++ password)).
#pragma once

#include <string>
#include <string_view>

namespace warren::auth {

// Hashes with a fresh random 4-byte salt.
std::string hash_password(std::string_view password);
// Hashes with a given salt (tests and fixtures).
std::string hash_password_with_salt(std::string_view password, std::string_view salt4);
// Constant-time comparison against a stored hash; false for a malformed hash.
bool verify_password(std::string_view stored_hash, std::string_view password);

std::string base64_encode(std::string_view in);
// Empty optional-like result: returns false on malformed input.
bool base64_decode(std::string_view in, std::string& out);

}  // namespace warren::auth
