// HMAC-SHA256 over "base64url(header).base64url(payload)".
#include "load-common/jwt_sign.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <stdexcept>

#include "web/base64.hpp"

namespace warren::load {

std::string jwt_sign_hs256(std::string_view secret, const nlohmann::json& claims) {
  static const std::string header = web::base64url_encode(R"({"alg":"HS256","typ":"JWT"})");
  std::string token = header;
  token += '.';
  token += web::base64url_encode(claims.dump());
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!HMAC(EVP_sha256(), secret.data(), int(secret.size()),
            reinterpret_cast<const unsigned char*>(token.data()), token.size(), mac, &n))
    throw std::runtime_error("HMAC-SHA256 failed");
  token += '.';
  token += web::base64url_encode(std::string_view(reinterpret_cast<const char*>(mac), n));
  return token;
}

}  // namespace warren::load
