// JWS compact verification with OpenSSL: HMAC-SHA256 compared in constant time, RSASSA-PKCS1-v1_5
// with SHA-256 through EVP_DigestVerify. Claims are read with nlohmann::json.
#include "web/jwt.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <chrono>
#include <cmath>
#include <stdexcept>

#include "web/base64.hpp"

namespace warren::web {
namespace {

jwt_result failure(std::string why) {
  jwt_result r;
  r.error = std::move(why);
  return r;
}

// A NumericDate (RFC 7519 2): a JSON number of seconds, possibly with a fraction.
// Dates beyond about 285 million years are refused, so adding the leeway cannot overflow.
std::optional<int64_t> numeric_date(const nlohmann::json& v) {
  constexpr int64_t limit = int64_t(1) << 53;
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(limit)) return std::nullopt;
    return int64_t(u);
  }
  if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    if (i > limit || i < -limit) return std::nullopt;
    return i;
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (!std::isfinite(d) || d > double(limit) || d < -double(limit)) return std::nullopt;
    return int64_t(std::floor(d));
  }
  return std::nullopt;
}

// An alg worth repeating in an error: short and alphanumeric (the token is untrusted input).
bool printable_alg(std::string_view alg) {
  if (alg.empty() || alg.size() > 10) return false;
  for (char c : alg)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  return true;
}

// A claim that must be a list of strings when present.
bool string_list(const nlohmann::json& v, std::vector<std::string>& out) {
  if (!v.is_array()) return false;
  for (const auto& e : v) {
    if (!e.is_string()) return false;
    out.push_back(e.get<std::string>());
  }
  return true;
}

bool verify_hs256(std::string_view secret, std::string_view signing_input, std::string_view sig) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!HMAC(EVP_sha256(), secret.data(), int(secret.size()),
            reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac,
            &n))
    return false;
  return sig.size() == n && CRYPTO_memcmp(mac, sig.data(), n) == 0;
}

}  // namespace

std::string jwt_sign_hs256(const nlohmann::json& claims, std::string_view secret) {
  std::string input =
      base64url_encode(R"({"alg":"HS256","typ":"JWT"})") + "." +
      base64url_encode(claims.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), secret.data(), int(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &n);
  return input + "." + base64url_encode(std::string_view(reinterpret_cast<char*>(mac), n));
}

namespace {

bool verify_rs256(EVP_PKEY* key, std::string_view signing_input, std::string_view sig) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1)
    return false;
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                          reinterpret_cast<const unsigned char*>(signing_input.data()),
                          signing_input.size()) == 1;
}

}  // namespace

void jwt_verifier::pkey_free::operator()(EVP_PKEY* k) const {
  EVP_PKEY_free(k);
}

jwt_verifier::jwt_verifier(jwt_config config) : config_(std::move(config)) {
  if (config_.hs256_secret.empty() && config_.rs256_public_pem.empty())
    throw std::invalid_argument("JWT: neither an HS256 secret nor an RS256 public key is set");
  if (!config_.rs256_public_pem.empty()) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(config_.rs256_public_pem.data(), int(config_.rs256_public_pem.size())),
        BIO_free);
    if (bio) rsa_key_.reset(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
    if (!rsa_key_) throw std::invalid_argument("JWT: the RS256 key is not a PEM public key");
    if (EVP_PKEY_get_base_id(rsa_key_.get()) != EVP_PKEY_RSA)
      throw std::invalid_argument("JWT: the RS256 key is not an RSA key");
    if (EVP_PKEY_get_bits(rsa_key_.get()) < 2048)
      throw std::invalid_argument("JWT: the RS256 key is shorter than 2048 bits");
  }
}

jwt_verifier::~jwt_verifier() = default;

jwt_result jwt_verifier::verify(std::string_view token) const {
  auto now = std::chrono::duration_cast<std::chrono::seconds>(
      std::chrono::system_clock::now().time_since_epoch());
  return verify(token, now.count());
}

jwt_result jwt_verifier::verify(std::string_view token, int64_t now) const {
  if (token.empty()) return failure("no token");
  if (token.size() > config_.max_token_size) return failure("token too long");

  // header.payload.signature
  size_t dot1 = token.find('.');
  size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos)
    return failure("token must have three dot-separated parts");
  std::string_view header_b64 = token.substr(0, dot1);
  std::string_view payload_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
  std::string_view sig_b64 = token.substr(dot2 + 1);

  std::string header_json, payload_json, sig;
  if (!base64url_decode(header_b64, header_json)) return failure("token header is not base64url");
  if (!base64url_decode(payload_b64, payload_json))
    return failure("token payload is not base64url");
  if (!base64url_decode(sig_b64, sig)) return failure("token signature is not base64url");

  nlohmann::json header = nlohmann::json::parse(header_json, nullptr, false);
  if (header.is_discarded() || !header.is_object())
    return failure("token header is not a JSON object");
  auto alg_it = header.find("alg");
  if (alg_it == header.end() || !alg_it->is_string()) return failure("token header has no alg");
  const std::string& alg = alg_it->get_ref<const std::string&>();
  // RFC 7515 4.1.11: extensions we do not understand must not be ignored.
  if (header.contains("crit")) return failure("token header has crit extensions");

  std::string_view signing_input = token.substr(0, dot2);
  if (alg == "HS256" && !config_.hs256_secret.empty()) {
    if (!verify_hs256(config_.hs256_secret, signing_input, sig))
      return failure("token signature is invalid");
  } else if (alg == "RS256" && rsa_key_) {
    if (!verify_rs256(rsa_key_.get(), signing_input, sig))
      return failure("token signature is invalid");
  } else if (alg == "none") {
    return failure("unsigned tokens (alg none) are not accepted");
  } else {
    return failure(printable_alg(alg) ? "token algorithm " + alg + " is not accepted"
                                      : std::string("token algorithm is not accepted"));
  }

  // Signed by us: now the claims.
  jwt_result r;
  nlohmann::json& claims = r.claims.all;
  claims = nlohmann::json::parse(payload_json, nullptr, false);
  if (claims.is_discarded() || !claims.is_object())
    return failure("token payload is not a JSON object");

  if (auto it = claims.find("exp"); it != claims.end()) {
    auto exp = numeric_date(*it);
    if (!exp) return failure("token exp is not a number");
    if (now >= *exp + config_.leeway_seconds) return failure("token has expired");
    r.claims.exp = exp;
  } else if (config_.require_exp) {
    return failure("token has no exp");
  }
  if (auto it = claims.find("nbf"); it != claims.end()) {
    auto nbf = numeric_date(*it);
    if (!nbf) return failure("token nbf is not a number");
    if (now + config_.leeway_seconds < *nbf) return failure("token is not valid yet");
  }
  if (!config_.issuer.empty()) {
    auto it = claims.find("iss");
    if (it == claims.end() || !it->is_string() || *it != config_.issuer)
      return failure("token issuer is not accepted");
  }
  if (!config_.audience.empty()) {
    auto it = claims.find("aud");
    bool match = false;
    if (it != claims.end()) {
      if (it->is_string()) {
        match = *it == config_.audience;
      } else if (it->is_array()) {
        for (const auto& a : *it) match = match || (a.is_string() && a == config_.audience);
      }
    }
    if (!match) return failure("token audience is not accepted");
  }
  auto sub = claims.find("sub");
  if (sub == claims.end() || !sub->is_string() || sub->get_ref<const std::string&>().empty())
    return failure("token has no sub (user id)");
  r.claims.sub = sub->get<std::string>();
  for (auto [name, field] :
       {std::pair{"rooms", &r.claims.rooms}, std::pair{"publish", &r.claims.publish}}) {
    auto it = claims.find(name);
    if (it == claims.end()) continue;
    std::vector<std::string> list;
    if (!string_list(*it, list))
      return failure(std::string("token claim ") + name + " is not a list of strings");
    *field = std::move(list);
  }
  return r;
}

}  // namespace warren::web
