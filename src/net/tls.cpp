// The TLS server context (files, versions, ciphers, verification) and the description of a
// session for the management API. The reading and writing of a session is in
// connection_tls.cpp, beside the plain connection's.
#include "net/tls.hpp"

#include "common/memory.hpp"

#include <boost/asio/ssl/context.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <stdexcept>

namespace warren::net {

namespace {

// TLS 1.2: forward secrecy (ECDHE) and AEAD only, as Mozilla's "intermediate" profile without
// DHE. TLS 1.3's suites are all AEAD with ECDHE or DHE; its three standard ones are kept.
constexpr const char* tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
constexpr const char* tls13_suites =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// A file named by `flag` must exist and be readable: say so plainly before OpenSSL's terser
// reasons ("no start line") can.
void check_readable(std::string_view flag, const std::string& path) {
  if (path.empty()) throw std::runtime_error(fmt::format("{} is not set", flag));
  std::ifstream f(path);
  if (!f)
    throw std::runtime_error(
        fmt::format("{} {}: cannot read: {}", flag, path, std::strerror(errno)));
}

std::string name_text(X509_NAME* name) {
  if (!name) return {};
  BIO* b = BIO_new(BIO_s_mem());
  if (!b) return {};
  // RFC 4514 order (most specific first, comma-separated), as RabbitMQ prints subjects.
  X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  std::string out(data, size_t(std::max(0L, n)));
  BIO_free(b);
  return out;
}

std::string time_text(const ASN1_TIME* t) {
  std::tm tm{};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return {};
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

std::string serial_text(X509* x) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), nullptr);
  if (!bn) return {};
  char* hex = BN_bn2hex(bn);
  std::string out = hex ? hex : "";
  OPENSSL_free(hex);
  BN_free(bn);
  return out;
}

std::string common_name(X509* x) {
  X509_NAME* name = x ? X509_get_subject_name(x) : nullptr;
  if (!name) return {};
  int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (i < 0) return {};
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
  if (n < 0) return {};
  std::string out(reinterpret_cast<char*>(utf8), size_t(n));
  OPENSSL_free(utf8);
  return out;
}

// Erlang's names for a cipher, which RabbitMQ shows.
std::string cipher_text(const SSL_CIPHER* c) {
  switch (SSL_CIPHER_get_cipher_nid(c)) {
    case NID_aes_128_gcm:
      return "aes_128_gcm";
    case NID_aes_256_gcm:
      return "aes_256_gcm";
    case NID_chacha20_poly1305:
      return "chacha20_poly1305";
    case NID_aes_128_ccm:
      return "aes_128_ccm";
    default: {
      const char* sn = OBJ_nid2sn(SSL_CIPHER_get_cipher_nid(c));
      return sn ? lower(sn) : "unknown";
    }
  }
}

std::string key_exchange_text(const SSL_CIPHER* c) {
  std::string kx;
  switch (SSL_CIPHER_get_kx_nid(c)) {
    case NID_kx_any:
      return "any";  // TLS 1.3: the suite does not fix it
    case NID_kx_ecdhe:
      kx = "ecdhe";
      break;
    case NID_kx_dhe:
      kx = "dhe";
      break;
    case NID_kx_rsa:
      return "rsa";
    default:
      return "unknown";
  }
  switch (SSL_CIPHER_get_auth_nid(c)) {
    case NID_auth_rsa:
      return kx + "_rsa";
    case NID_auth_ecdsa:
      return kx + "_ecdsa";
    default:
      return kx;
  }
}

}  // namespace

std::string tls_error_text() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    if (!out.empty()) out += "; ";
    out += reason ? reason : fmt::format("OpenSSL error {:#x}", e);
  }
  return out.empty() ? "unknown error" : out;
}

struct tls_context::impl {
  boost::asio::ssl::context ctx{boost::asio::ssl::context::tls_server};
};

tls_context::tls_context(const tls_settings& s) : impl_(std::make_unique<impl>()), settings_(s) {
  check_readable("--tls-cert", s.cert_file);
  check_readable("--tls-key", s.key_file);
  if (!s.ca_file.empty()) check_readable("--tls-ca", s.ca_file);
  if (s.verify == tls_verify::peer && s.ca_file.empty())
    throw std::runtime_error(
        "--tls-verify peer needs --tls-ca: the CA certificates client certificates are checked "
        "against");
  ERR_clear_error();
  SSL_CTX* c = impl_->ctx.native_handle();
  auto fail = [](std::string text) {
    throw std::runtime_error(fmt::format("{}: {}", text, tls_error_text()));
  };
  if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1)
    fail("TLS: cannot set TLS 1.2 as the minimum");
  // No renegotiation (a TLS 1.2 client cannot make a write wait for a read), no compression.
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  if (SSL_CTX_set_cipher_list(c, tls12_ciphers) != 1) fail("TLS: cipher list refused");
  if (SSL_CTX_set_ciphersuites(c, tls13_suites) != 1) fail("TLS: TLS 1.3 suites refused");
  // RELEASE_BUFFERS: an idle session holds no record buffers. ACCEPT_MOVING_WRITE_BUFFER: a
  // retried write may come from the output string after it grew (and moved).
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Resumption by stateless tickets only: the server keeps nothing per past session.
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  static const unsigned char sid_ctx[] = "warren";
  SSL_CTX_set_session_id_context(c, sid_ctx, sizeof sid_ctx - 1);
  // An encrypted key would make OpenSSL prompt on the terminal: refuse it instead.
  SSL_CTX_set_default_passwd_cb(c, [](char*, int, int, void*) { return 0; });

  boost::system::error_code ec;
  impl_->ctx.use_certificate_chain_file(s.cert_file, ec);
  if (ec) {
    ERR_clear_error();
    throw std::runtime_error(
        fmt::format("--tls-cert {}: not a PEM certificate ({})", s.cert_file, ec.message()));
  }
  impl_->ctx.use_private_key_file(s.key_file, boost::asio::ssl::context::pem, ec);
  if (ec) {
    ERR_clear_error();
    std::string why = ec.message();
    if (why.find("mismatch") != std::string::npos)
      throw std::runtime_error(fmt::format(
          "--tls-key {}: does not match the certificate in {} ({})", s.key_file, s.cert_file, why));
    throw std::runtime_error(
        fmt::format("--tls-key {}: not an unencrypted PEM private key ({})", s.key_file, why));
  }
  if (SSL_CTX_check_private_key(c) != 1) {
    std::string why = tls_error_text();
    throw std::runtime_error(fmt::format("--tls-key {}: does not match the certificate in {} ({})",
                                         s.key_file, s.cert_file, why));
  }
  if (!s.ca_file.empty()) {
    impl_->ctx.load_verify_file(s.ca_file, ec);
    if (ec) {
      ERR_clear_error();
      throw std::runtime_error(
          fmt::format("--tls-ca {}: not PEM CA certificates ({})", s.ca_file, ec.message()));
    }
    // Tell clients which CAs we accept, so they pick the right certificate.
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(s.ca_file.c_str()))
      SSL_CTX_set_client_CA_list(c, names);
    ERR_clear_error();
  }
  if (s.verify == tls_verify::peer) {
    int mode = SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE;
    if (s.fail_if_no_peer_cert) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(c, mode, nullptr);
  } else {
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
  }

  X509* cert = SSL_CTX_get0_certificate(c);
  summary_ =
      fmt::format("subject {}, serial {}, valid until {}", name_text(X509_get_subject_name(cert)),
                  serial_text(cert), time_text(X509_get0_notAfter(cert)));
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0)
    spdlog::warn("TLS: the certificate in {} has expired ({})", s.cert_file, summary_);
  else if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0)
    spdlog::warn("TLS: the certificate in {} is not valid yet ({})", s.cert_file, summary_);
}

tls_context::~tls_context() = default;

ssl_ctx_st* tls_context::native() const {
  return impl_->ctx.native_handle();
}

std::string tls_context_source::reload() {
  auto fresh = std::make_shared<const tls_context>(current()->settings());
  std::string summary = fresh->certificate_summary();
  std::lock_guard lock(mutex_);
  current_ = std::move(fresh);
  return summary;
}

tls_session::tls_session(std::shared_ptr<const tls_context> ctx, int fd) : ctx_(std::move(ctx)) {
  ssl_ = SSL_new(ctx_->native());
  if (!ssl_ || SSL_set_fd(ssl_, fd) != 1) {
    if (ssl_) SSL_free(ssl_);
    throw std::runtime_error("TLS: cannot create a session: " + tls_error_text());
  }
  SSL_set_accept_state(ssl_);
}

tls_session::~tls_session() {
  SSL_free(ssl_);
}

tls_description tls_session::describe() const {
  tls_description d;
  if (!established_) return d;  // still in its handshake: nothing settled yet
  d.protocol = lower(SSL_get_version(ssl_));
  if (const SSL_CIPHER* c = SSL_get_current_cipher(ssl_)) {
    d.key_exchange = key_exchange_text(c);
    d.cipher = cipher_text(c);
    if (SSL_CIPHER_is_aead(c)) {
      d.hash = "aead";
    } else {
      const char* sn = OBJ_nid2sn(SSL_CIPHER_get_digest_nid(c));
      d.hash = sn ? lower(sn) : "unknown";
    }
  }
  if (X509* peer = SSL_get0_peer_certificate(ssl_)) {
    d.peer_certificate = true;
    d.peer_subject = name_text(X509_get_subject_name(peer));
    d.peer_issuer = name_text(X509_get_issuer_name(peer));
    d.peer_validity = fmt::format("{} - {}", time_text(X509_get0_notBefore(peer)),
                                  time_text(X509_get0_notAfter(peer)));
  }
  return d;
}

bool tls_session::peer_verified() const {
  return established_ && ctx_->settings().verify == tls_verify::peer &&
         SSL_get0_peer_certificate(ssl_) != nullptr && SSL_get_verify_result(ssl_) == X509_V_OK;
}

std::string tls_session::peer_common_name() const {
  return peer_verified() ? common_name(SSL_get0_peer_certificate(ssl_)) : std::string();
}

namespace {

std::atomic<uint64_t> handshakes_since_trim{0};
std::atomic<int64_t> last_handshake_ms{0};

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void note_handshake_done() {
  handshakes_since_trim.fetch_add(1, std::memory_order_relaxed);
  last_handshake_ms.store(steady_ms(), std::memory_order_relaxed);
}

bool trim_after_handshakes() {
  if (handshakes_since_trim.load(std::memory_order_relaxed) == 0) return false;
  if (steady_ms() - last_handshake_ms.load(std::memory_order_relaxed) < 1000) return false;
  // One worker wins the trim; the others see 0.
  if (handshakes_since_trim.exchange(0, std::memory_order_relaxed) == 0) return false;
  release_free_memory();
  return true;
}

}  // namespace warren::net
