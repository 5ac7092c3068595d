// Fuzzes JWT verification (web/jwt). A forged signature stops verification early, so the fuzzer
// also signs what it is given: the first byte's low two bits pick the mode
//   0  the rest is a token, verified as it is (framing, base64url, header JSON, alg rules);
//   1  the rest is "header JSON \0 payload JSON", made into a token signed with the HS256 secret
//      (the claims checks are reached);
//   2  the same signed with the RS256 key;
// and the next bits pick the verifier's configuration (issuer, audience, exp required, leeway).
// Checks: no crash; what verifies has a non-empty sub, is not expired, and carries the issuer and
// audience asked for; a token verified in mode 1 re-signed by jwt_sign_hs256 verifies again.
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <array>
#include <memory>
#include <string>

#include "fuzz_support.hpp"
#include "web/base64.hpp"
#include "web/jwt.hpp"

using namespace warren::web;

namespace {

constexpr std::string_view secret = "fuzz-secret";
constexpr int64_t now = 1'700'000'000;  // a fixed clock: the outcome depends on the input only

struct keys {
  EVP_PKEY* rsa = nullptr;
  std::string public_pem;
  std::array<std::unique_ptr<jwt_verifier>, 16> verifiers;
};

const keys& setup() {
  static keys* k = [] {
    auto* k = new keys;
    k->rsa = EVP_RSA_gen(2048);
    FUZZ_CHECK(k->rsa);
    BIO* bio = BIO_new(BIO_s_mem());
    FUZZ_CHECK(PEM_write_bio_PUBKEY(bio, k->rsa) == 1);
    char* p = nullptr;
    long n = BIO_get_mem_data(bio, &p);
    k->public_pem.assign(p, size_t(n));
    BIO_free(bio);
    for (size_t i = 0; i < k->verifiers.size(); ++i) {
      jwt_config c;
      c.hs256_secret = std::string(secret);
      c.rs256_public_pem = k->public_pem;
      if (i & 1) c.issuer = "warren-iss";
      if (i & 2) c.audience = "warren-aud";
      c.require_exp = i & 4;
      c.leeway_seconds = (i & 8) ? 0 : 30;
      k->verifiers[i] = std::make_unique<jwt_verifier>(c);
    }
    return k;
  }();
  return *k;
}

std::string rs256_sign(EVP_PKEY* key, std::string_view input) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  FUZZ_CHECK(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1);
  size_t n = 0;
  FUZZ_CHECK(EVP_DigestSign(ctx.get(), nullptr, &n,
                            reinterpret_cast<const unsigned char*>(input.data()),
                            input.size()) == 1);
  std::string sig(n, '\0');
  FUZZ_CHECK(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &n,
                            reinterpret_cast<const unsigned char*>(input.data()),
                            input.size()) == 1);
  sig.resize(n);
  return sig;
}

std::string hs256_sign(std::string_view input) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), secret.data(), int(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &n);
  return std::string(reinterpret_cast<char*>(mac), n);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const keys& k = setup();
  const int mode = data[0] & 3;
  const jwt_verifier& v = *k.verifiers[(data[0] >> 2) & 15];
  std::string_view in = warren::fuzz::as_text(data + 1, size - 1);
  std::string token;
  if (mode == 0 || mode == 3) {
    token = std::string(in);
  } else {
    size_t nul = in.find('\0');
    std::string_view header = in.substr(0, nul);
    std::string_view payload = nul == std::string_view::npos ? "" : in.substr(nul + 1);
    std::string input = base64url_encode(header) + "." + base64url_encode(payload);
    std::string sig = mode == 1 ? hs256_sign(input) : rs256_sign(k.rsa, input);
    token = input + "." + base64url_encode(sig);
  }
  jwt_result r = v.verify(token, now);
  if (!r.ok()) return 0;
  FUZZ_CHECK(!r.claims.sub.empty());
  FUZZ_CHECK(r.claims.all.is_object());
  if (r.claims.exp) FUZZ_CHECK(now < *r.claims.exp + 30);
  if (mode == 1) {
    // The claims as verified, signed again: the same user comes out.
    std::string again = jwt_sign_hs256(r.claims.all, secret);
    jwt_result r2 = v.verify(again, now);
    FUZZ_CHECK(r2.ok() && r2.claims.sub == r.claims.sub && r2.claims.rooms == r.claims.rooms &&
               r2.claims.publish == r.claims.publish);
  }
  return 0;
}
