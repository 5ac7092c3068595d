// Verification of the JSON Web Tokens (RFC 7519, JWS compact form of RFC 7515) that identify
// browser users: HS256 with a shared secret, optionally RS256 with an RSA public key. Only the
// algorithms configured are accepted, never "none", whatever the token's header says.
#pragma once

#include <openssl/types.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace warren::web {

struct jwt_config {
  std::string hs256_secret;      // empty: HS256 refused
  std::string rs256_public_pem;  // PEM "PUBLIC KEY" (SubjectPublicKeyInfo); empty: RS256 refused
  int64_t leeway_seconds = 30;   // clock skew allowed on exp and nbf
  bool require_exp = false;      // refuse tokens without exp
  std::string issuer;            // non-empty: iss must equal it
  std::string audience;          // non-empty: aud (a string or a list) must contain it
  size_t max_token_size = 8192;
};

struct jwt_claims {
  // The user id (required, non-empty).
  std::string sub;
  // Rooms the user may join and may publish to, when the claims are present.
  std::optional<std::vector<std::string>> rooms;
  std::optional<std::vector<std::string>> publish;
  // Seconds since the epoch (fractions dropped), if present.
  std::optional<int64_t> exp;
  // Every claim, for what the gateway reads later.
  nlohmann::json all;
};

// The outcome of verify(): claims, or an error sentence for the 401 response.
struct jwt_result {
  jwt_claims claims;
  std::string error;
  bool ok() const { return error.empty(); }
};

// Built at start-up from the configuration; read-only afterwards, so one instance may serve all
// workers (OpenSSL 3 allows concurrent verification with one EVP_PKEY).
class jwt_verifier {
 public:
  // Throws std::invalid_argument for a configuration that cannot work: no algorithm, or a PEM
  // that is not an RSA public key of at least 2048 bits.
  explicit jwt_verifier(jwt_config config);
  ~jwt_verifier();
  jwt_verifier(const jwt_verifier&) = delete;
  jwt_verifier& operator=(const jwt_verifier&) = delete;

  // Checks, in order: size, three base64url segments, header JSON with an accepted alg and no
  // crit, the signature (before the payload is read), payload JSON, exp, nbf, iss, aud, sub,
  // rooms/publish. `now` is seconds since the epoch.
  jwt_result verify(std::string_view token, int64_t now) const;
  jwt_result verify(std::string_view token) const;  // now = the system clock

 private:
  struct pkey_free {
    void operator()(EVP_PKEY* k) const;
  };
  jwt_config config_;
  std::unique_ptr<EVP_PKEY, pkey_free> rsa_key_;
};

// Signs `claims` as an HS256 token (header {"alg":"HS256","typ":"JWT"}): the gateway's
// development tokens (--web-dev-tokens), test clients and load tools.
std::string jwt_sign_hs256(const nlohmann::json& claims, std::string_view secret);

}  // namespace warren::web
