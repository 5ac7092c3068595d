// TLS for net::connection: the server context (certificate, key, client-certificate checks,
// protocol versions, ciphers), which a reload replaces for new handshakes, and one connection's
// session. The context is configured through boost::asio::ssl::context; a session drives
// OpenSSL directly on the connection's non-blocking socket instead of boost::asio::ssl::stream,
// whose two 17 KB buffers per stream would dwarf an idle connection (see docs/security.md).
// Handlers see plaintext; they ask connection::tls() only for "is this TLS, who is the peer".
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

struct ssl_st;
struct ssl_ctx_st;

namespace warren::net {

enum class tls_verify : uint8_t {
  none,  // no client certificate is asked for
  peer,  // one is asked for and, when presented, must chain to the CA file
};

struct tls_settings {
  std::string cert_file;  // PEM: the server's certificate, then any intermediates
  std::string key_file;   // PEM: its private key (unencrypted)
  std::string ca_file;    // PEM: CAs for client certificates (needed with verify = peer)
  tls_verify verify = tls_verify::none;
  bool fail_if_no_peer_cert = false;  // with verify = peer: refuse a client without a certificate
};

// A server context built from files; immutable once built, shared by the sessions it started
// (they keep it alive after a reload replaced it). Any thread.
class tls_context {
 public:
  // Reads and checks the files; throws std::runtime_error saying which file and why (missing,
  // unreadable, not PEM, key not matching the certificate).
  explicit tls_context(const tls_settings& s);
  ~tls_context();
  tls_context(const tls_context&) = delete;
  tls_context& operator=(const tls_context&) = delete;

  ssl_ctx_st* native() const;
  const tls_settings& settings() const { return settings_; }
  // "subject CN=..., serial 1A2B, valid until 2027-01-01T00:00:00Z", for the log.
  const std::string& certificate_summary() const { return summary_; }

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  tls_settings settings_;
  std::string summary_;
};

// The context new handshakes use: set at start-up, replaced by a reload (SIGHUP). Any thread;
// read once per accepted connection.
class tls_context_source {
 public:
  explicit tls_context_source(std::shared_ptr<const tls_context> initial)
      : current_(std::move(initial)) {}
  std::shared_ptr<const tls_context> current() const {
    std::lock_guard lock(mutex_);
    return current_;
  }
  // Builds a context from the same settings as the current one; on success new handshakes use
  // it and the summary of its certificate is returned. Throws like tls_context's constructor,
  // leaving the current context in place.
  std::string reload();

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const tls_context> current_;
};

// What the management API shows of a TLS connection, in RabbitMQ's terms.
struct tls_description {
  std::string protocol;      // "tlsv1.3", "tlsv1.2"
  std::string key_exchange;  // "ecdhe_rsa", "ecdhe_ecdsa"; "any" for TLS 1.3
  std::string cipher;        // "aes_256_gcm", "chacha20_poly1305"
  std::string hash;          // "aead" for AEAD ciphers, else the MAC's digest ("sha384")
  bool peer_certificate = false;
  std::string peer_subject;   // RFC 4514, most specific first: "CN=alice,O=Example"
  std::string peer_issuer;    // likewise
  std::string peer_validity;  // "2026-01-01T00:00:00Z - 2027-01-01T00:00:00Z"
};

// One connection's TLS state. Owned by its net::connection, on that connection's worker. The
// OpenSSL object reads and writes the socket itself; with SSL_MODE_RELEASE_BUFFERS it holds no
// record buffer while the connection is idle. OpenSSL writes with send() without MSG_NOSIGNAL:
// the process must ignore SIGPIPE (warren's main does), or a peer's reset would end it.
class tls_session {
 public:
  // Throws std::runtime_error if OpenSSL cannot allocate the session.
  tls_session(std::shared_ptr<const tls_context> ctx, int fd);
  ~tls_session();
  tls_session(const tls_session&) = delete;
  tls_session& operator=(const tls_session&) = delete;

  ssl_st* native() const { return ssl_; }
  bool established() const { return established_; }
  // Empty until the handshake is done.
  tls_description describe() const;
  // A client certificate was presented and verified against the CA file (verify = peer).
  bool peer_verified() const;
  // The verified client certificate's subject CN (the first one); empty if none.
  std::string peer_common_name() const;

 private:
  friend class connection;
  std::shared_ptr<const tls_context> ctx_;
  ssl_st* ssl_ = nullptr;
  // Length of the SSL_write waiting to be retried (OpenSSL wants the same bytes again); 0: none.
  size_t write_len_ = 0;
  bool established_ = false;
  bool read_wants_write_ = false;  // SSL_read must send (an alert, a key update) first
  bool write_wants_read_ = false;  // SSL_write must receive first (not expected: no renegotiation)
  bool write_wait_armed_ = false;
  bool close_notify_sent_ = false;
};

// OpenSSL's reasons for the last failure on this thread, joined, and the queue cleared.
std::string tls_error_text();

// A TLS handshake has about 70 KB live at its peak (record buffers, the handshake's own buffer,
// key-exchange temporaries), which it frees when done; malloc keeps those pages on its free lists,
// so after a burst of handshakes the process keeps their peak, several KB per connection that
// stays (docs/security.md). note_handshake_done() counts one (any worker); trim_after_handshakes()
// (every worker's tick) hands the free pages back to the kernel (malloc_trim) once no handshake
// has finished for a second: once per burst, never under a steady stream of handshakes, whose
// buffers malloc reuses anyway. Returns whether it trimmed.
void note_handshake_done();
bool trim_after_handshakes();

}  // namespace warren::net
