// JWT verification with tokens made here: HS256 signed with OpenSSL's HMAC, RS256 with an RSA
// key generated in the test; then every way a token can be wrong, each with its own error.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <memory>

#include "web/base64.hpp"
#include "web/jwt.hpp"

namespace warren::web {
namespace {

using json = nlohmann::json;

constexpr int64_t now = 1700000000;
const std::string secret = "correct horse battery staple";

std::string hs256(std::string_view key, std::string_view input) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), key.data(), int(key.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &n);
  return std::string(reinterpret_cast<char*>(mac), n);
}

std::string b64(const json& j) {
  return base64url_encode(j.dump());
}

// header.payload signed with HS256 under `key`.
std::string make_hs256(const json& payload, std::string_view key = secret,
                       const json& header = {{"alg", "HS256"}, {"typ", "JWT"}}) {
  std::string input = b64(header) + "." + b64(payload);
  return input + "." + base64url_encode(hs256(key, input));
}

using pkey_ptr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

pkey_ptr rsa_key(unsigned bits) {
  return pkey_ptr(EVP_RSA_gen(bits), EVP_PKEY_free);
}

std::string public_pem(EVP_PKEY* k) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_PUBKEY(bio.get(), k);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, size_t(n));
}

std::string make_rs256(EVP_PKEY* k, const json& payload) {
  std::string input = b64(json{{"alg", "RS256"}}) + "." + b64(payload);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EXPECT_EQ(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, k), 1);
  size_t n = 0;
  EVP_DigestSign(ctx.get(), nullptr, &n, reinterpret_cast<const unsigned char*>(input.data()),
                 input.size());
  std::string sig(n, '\0');
  EXPECT_EQ(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &n,
                           reinterpret_cast<const unsigned char*>(input.data()), input.size()),
            1);
  sig.resize(n);
  return input + "." + base64url_encode(sig);
}

jwt_config hs_config() {
  jwt_config c;
  c.hs256_secret = secret;
  return c;
}

json claims() {
  return {{"sub", "alice"}, {"exp", now + 3600}, {"rooms", {"lobby", "dev"}}, {"publish", {"dev"}}};
}

std::string error_of(const jwt_verifier& v, std::string_view token) {
  jwt_result r = v.verify(token, now);
  return r.ok() ? "ok" : r.error;
}

TEST(Jwt, ValidHs256TokenGivesItsClaims) {
  jwt_verifier v(hs_config());
  jwt_result r = v.verify(make_hs256(claims()), now);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.claims.sub, "alice");
  EXPECT_EQ(r.claims.rooms, (std::vector<std::string>{"lobby", "dev"}));
  EXPECT_EQ(r.claims.publish, (std::vector<std::string>{"dev"}));
  EXPECT_EQ(r.claims.exp, now + 3600);
  EXPECT_EQ(r.claims.all["sub"], "alice");
  // Without rooms and publish, the lists are absent (not empty).
  jwt_result bare = v.verify(make_hs256({{"sub", "bob"}}), now);
  ASSERT_TRUE(bare.ok()) << bare.error;
  EXPECT_FALSE(bare.claims.rooms);
  EXPECT_FALSE(bare.claims.publish);
  EXPECT_FALSE(bare.claims.exp);
}

TEST(Jwt, KnownTokenFromRfc7515StyleInputs) {
  // A token built by hand, independent of make_hs256: header {"alg":"HS256"} and payload
  // {"sub":"u1"}, both base64url without padding, HMAC over "header.payload".
  std::string input = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9";
  std::string token = input + "." + base64url_encode(hs256("k", input));
  jwt_config c;
  c.hs256_secret = "k";
  jwt_verifier v(c);
  EXPECT_EQ(error_of(v, token), "ok");
}

TEST(Jwt, SignatureChecks) {
  jwt_verifier v(hs_config());
  EXPECT_EQ(error_of(v, make_hs256(claims(), "another secret")), "token signature is invalid");
  std::string t = make_hs256(claims());
  // Flip a signature character (keeping it canonical base64url).
  std::string bad_sig = t;
  char& c = bad_sig[bad_sig.size() - 5];
  c = c == 'A' ? 'B' : 'A';
  EXPECT_EQ(error_of(v, bad_sig), "token signature is invalid");
  // Swap the payload for one granting more, keeping the old signature.
  size_t d1 = t.find('.'), d2 = t.rfind('.');
  json more = claims();
  more["sub"] = "admin";
  std::string swapped = t.substr(0, d1 + 1) + b64(more) + t.substr(d2);
  EXPECT_EQ(error_of(v, swapped), "token signature is invalid");
  // A truncated signature, and none at all.
  std::string sig;
  ASSERT_TRUE(base64url_decode(t.substr(d2 + 1), sig));
  EXPECT_EQ(error_of(v, t.substr(0, d2 + 1) + base64url_encode(sig.substr(0, 31))),
            "token signature is invalid");
  EXPECT_EQ(error_of(v, t.substr(0, d2 + 1)), "token signature is invalid");
}

TEST(Jwt, TimeClaimsWithLeeway) {
  jwt_verifier v(hs_config());  // leeway 30 s
  auto with = [](json j) {
    j["sub"] = "alice";
    return make_hs256(j);
  };
  EXPECT_EQ(error_of(v, with({{"exp", now - 100}})), "token has expired");
  EXPECT_EQ(error_of(v, with({{"exp", now - 30}})), "token has expired");
  EXPECT_EQ(error_of(v, with({{"exp", now - 29}})), "ok");
  EXPECT_EQ(error_of(v, with({{"exp", now + 1.5}})), "ok");
  EXPECT_EQ(error_of(v, with({{"nbf", now + 100}})), "token is not valid yet");
  EXPECT_EQ(error_of(v, with({{"nbf", now + 30}})), "ok");
  EXPECT_EQ(error_of(v, with({{"nbf", now + 31}})), "token is not valid yet");
  EXPECT_EQ(error_of(v, with({{"exp", "tomorrow"}})), "token exp is not a number");
  EXPECT_EQ(error_of(v, with({{"nbf", true}})), "token nbf is not a number");
  EXPECT_EQ(error_of(v, with({{"exp", 1e300}})), "token exp is not a number");
  EXPECT_EQ(error_of(v, with({{"exp", UINT64_MAX}})), "token exp is not a number");

  jwt_config strict = hs_config();
  strict.leeway_seconds = 0;
  strict.require_exp = true;
  jwt_verifier s(strict);
  EXPECT_EQ(error_of(s, with({{"exp", now}})), "token has expired");
  EXPECT_EQ(error_of(s, with({{"exp", now + 1}})), "ok");
  EXPECT_EQ(error_of(s, with({})), "token has no exp");
}

TEST(Jwt, AlgorithmsOtherThanTheConfiguredOnesAreRefused) {
  jwt_verifier v(hs_config());
  json p = claims();
  // alg none with an empty signature, and with a signature.
  std::string none = b64(json{{"alg", "none"}}) + "." + b64(p) + ".";
  EXPECT_EQ(error_of(v, none), "unsigned tokens (alg none) are not accepted");
  EXPECT_EQ(error_of(v, make_hs256(p, secret, {{"alg", "none"}})),
            "unsigned tokens (alg none) are not accepted");
  EXPECT_EQ(error_of(v, make_hs256(p, secret, {{"alg", "HS512"}})),
            "token algorithm HS512 is not accepted");
  EXPECT_EQ(error_of(v, make_hs256(p, secret, {{"alg", "hs256"}})),
            "token algorithm hs256 is not accepted");
  EXPECT_EQ(error_of(v, make_hs256(p, secret, {{"alg", "RS256"}})),
            "token algorithm RS256 is not accepted");
  EXPECT_EQ(error_of(v, make_hs256(p, secret, {{"alg", "<script>"}})),
            "token algorithm is not accepted");
  EXPECT_EQ(error_of(v, make_hs256(p, secret, {{"typ", "JWT"}})), "token header has no alg");
  EXPECT_EQ(error_of(v, make_hs256(p, secret, {{"alg", 256}})), "token header has no alg");
  EXPECT_EQ(error_of(v, make_hs256(p, secret, {{"alg", "HS256"}, {"crit", {"exp"}}})),
            "token header has crit extensions");
}

TEST(Jwt, MalformedTokens) {
  jwt_verifier v(hs_config());
  std::string t = make_hs256(claims());
  size_t d1 = t.find('.'), d2 = t.rfind('.');
  EXPECT_EQ(error_of(v, ""), "no token");
  EXPECT_EQ(error_of(v, "abc"), "token must have three dot-separated parts");
  EXPECT_EQ(error_of(v, t.substr(0, d2)), "token must have three dot-separated parts");
  EXPECT_EQ(error_of(v, t + ".x"), "token must have three dot-separated parts");
  EXPECT_EQ(error_of(v, "a.b.c.d"), "token must have three dot-separated parts");
  EXPECT_EQ(error_of(v, std::string(9000, 'a')), "token too long");
  // base64 with padding or the standard alphabet, and junk.
  EXPECT_EQ(error_of(v, t.substr(0, d1) + "=" + t.substr(d1)), "token header is not base64url");
  EXPECT_EQ(error_of(v, t.substr(0, d2) + "=" + t.substr(d2)), "token payload is not base64url");
  EXPECT_EQ(error_of(v, t + "="), "token signature is not base64url");
  EXPECT_EQ(error_of(v, "ab+c" + t.substr(d1)), "token header is not base64url");
  EXPECT_EQ(error_of(v, "a" + t.substr(d1)), "token header is not base64url");
  // Not JSON, or JSON that is not an object.
  auto signed_parts = [](std::string_view header, std::string_view payload) {
    std::string input = base64url_encode(header) + "." + base64url_encode(payload);
    return input + "." + base64url_encode(hs256(secret, input));
  };
  EXPECT_EQ(error_of(v, signed_parts("{\"alg\":", "{}")), "token header is not a JSON object");
  EXPECT_EQ(error_of(v, signed_parts("[\"HS256\"]", "{}")), "token header is not a JSON object");
  EXPECT_EQ(error_of(v, signed_parts("{\"alg\":\"HS256\"}", "{\"sub\":")),
            "token payload is not a JSON object");
  EXPECT_EQ(error_of(v, signed_parts("{\"alg\":\"HS256\"}", "\"alice\"")),
            "token payload is not a JSON object");
  EXPECT_EQ(error_of(v, signed_parts("{\"alg\":\"HS256\"}", "{\"sub\":\"alice\"}")), "ok");
}

TEST(Jwt, ClaimShapes) {
  jwt_verifier v(hs_config());
  EXPECT_EQ(error_of(v, make_hs256({{"exp", now + 10}})), "token has no sub (user id)");
  EXPECT_EQ(error_of(v, make_hs256({{"sub", ""}})), "token has no sub (user id)");
  EXPECT_EQ(error_of(v, make_hs256({{"sub", 42}})), "token has no sub (user id)");
  EXPECT_EQ(error_of(v, make_hs256({{"sub", "a"}, {"rooms", "lobby"}})),
            "token claim rooms is not a list of strings");
  EXPECT_EQ(error_of(v, make_hs256({{"sub", "a"}, {"rooms", {"lobby", 7}}})),
            "token claim rooms is not a list of strings");
  EXPECT_EQ(error_of(v, make_hs256({{"sub", "a"}, {"publish", {{"room", "x"}}}})),
            "token claim publish is not a list of strings");
  jwt_result empty = v.verify(make_hs256({{"sub", "a"}, {"rooms", json::array()}}), now);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty.claims.rooms, std::vector<std::string>{});
}

TEST(Jwt, IssuerAndAudience) {
  jwt_config c = hs_config();
  c.issuer = "https://login.example";
  c.audience = "warren";
  jwt_verifier v(c);
  json p = {{"sub", "a"}, {"iss", "https://login.example"}, {"aud", "warren"}};
  EXPECT_EQ(error_of(v, make_hs256(p)), "ok");
  p["aud"] = {"other", "warren"};
  EXPECT_EQ(error_of(v, make_hs256(p)), "ok");
  p["aud"] = {"other"};
  EXPECT_EQ(error_of(v, make_hs256(p)), "token audience is not accepted");
  p.erase("aud");
  EXPECT_EQ(error_of(v, make_hs256(p)), "token audience is not accepted");
  p["aud"] = "warren";
  p["iss"] = "https://evil.example";
  EXPECT_EQ(error_of(v, make_hs256(p)), "token issuer is not accepted");
  p.erase("iss");
  EXPECT_EQ(error_of(v, make_hs256(p)), "token issuer is not accepted");
  // Not configured: not checked.
  jwt_verifier open(hs_config());
  EXPECT_EQ(error_of(open, make_hs256({{"sub", "a"}, {"iss", "anyone"}, {"aud", 5}})), "ok");
}

TEST(Jwt, Rs256) {
  pkey_ptr key = rsa_key(2048);
  ASSERT_TRUE(key);
  jwt_config c;
  c.rs256_public_pem = public_pem(key.get());
  jwt_verifier v(c);
  std::string t = make_rs256(key.get(), claims());
  jwt_result r = v.verify(t, now);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.claims.sub, "alice");

  // Tampered payload, and a token signed by another key.
  size_t d1 = t.find('.'), d2 = t.rfind('.');
  json more = claims();
  more["sub"] = "admin";
  EXPECT_EQ(error_of(v, t.substr(0, d1 + 1) + b64(more) + t.substr(d2)),
            "token signature is invalid");
  pkey_ptr other = rsa_key(2048);
  EXPECT_EQ(error_of(v, make_rs256(other.get(), claims())), "token signature is invalid");

  // HS256 is not configured here: the classic confusion of signing HMAC with the public key.
  EXPECT_EQ(error_of(v, make_hs256(claims(), c.rs256_public_pem)),
            "token algorithm HS256 is not accepted");

  // Both configured: each token by its own alg.
  c.hs256_secret = secret;
  jwt_verifier both(c);
  EXPECT_EQ(error_of(both, t), "ok");
  EXPECT_EQ(error_of(both, make_hs256(claims())), "ok");
  EXPECT_EQ(error_of(both, make_hs256(claims(), c.rs256_public_pem)), "token signature is invalid");
}

TEST(Jwt, ConfigurationErrors) {
  EXPECT_THROW(jwt_verifier(jwt_config{}), std::invalid_argument);
  jwt_config c;
  c.rs256_public_pem = "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n";
  EXPECT_THROW(jwt_verifier{c}, std::invalid_argument);
  pkey_ptr small = rsa_key(1024);
  c.rs256_public_pem = public_pem(small.get());
  EXPECT_THROW(jwt_verifier{c}, std::invalid_argument);
  pkey_ptr ec(EVP_EC_gen("P-256"), EVP_PKEY_free);
  ASSERT_TRUE(ec);
  c.rs256_public_pem = public_pem(ec.get());
  EXPECT_THROW(jwt_verifier{c}, std::invalid_argument);
}

}  // namespace
}  // namespace warren::web
