// Password hashing with OpenSSL's SHA-256 and RAND_bytes.
#include "auth/password.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <stdexcept>

namespace warren::auth {

std::string base64_encode(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), int(in.size()));
  out.resize(size_t(n));
  return out;
}

bool base64_decode(std::string_view in, std::string& out) {
  if (in.size() % 4 != 0) return false;
  out.assign(3 * in.size() / 4, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), int(in.size()));
  if (n < 0) return false;
  // EVP_DecodeBlock counts padding as zero bytes: drop them.
  size_t pad = 0;
  if (!in.empty() && in.back() == '=') ++pad;
  if (in.size() > 1 && in[in.size() - 2] == '=') ++pad;
  out.resize(size_t(n) - pad);
  return true;
}

std::string hash_password_with_salt(std::string_view password, std::string_view salt4) {
  std::string buf(salt4);
  buf.append(password);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(buf.data()), buf.size(), digest);
  std::string raw(salt4);
  raw.append(reinterpret_cast<const char*>(digest), sizeof digest);
  return base64_encode(raw);
}

std::string hash_password(std::string_view password) {
  unsigned char salt[4];
  if (RAND_bytes(salt, sizeof salt) != 1) throw std::runtime_error("RAND_bytes failed");
  return hash_password_with_salt(password,
                                 std::string_view(reinterpret_cast<const char*>(salt), 4));
}

bool verify_password(std::string_view stored_hash, std::string_view password) {
  std::string raw;
  if (!base64_decode(stored_hash, raw) || raw.size() != 4 + SHA256_DIGEST_LENGTH) return false;
  std::string expect = hash_password_with_salt(password, std::string_view(raw).substr(0, 4));
  return expect.size() == stored_hash.size() &&
         CRYPTO_memcmp(expect.data(), stored_hash.data(), expect.size()) == 0;
}

}  // namespace warren::auth
