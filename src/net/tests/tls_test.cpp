// TLS connections over real loopback sockets, with certificates made here by OpenSSL's API: the
// handler sees plaintext split anyhow, large output survives the write queue's retries, a close
// says close_notify, client certificates are verified, and what is not TLS 1.2/1.3 is refused.
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>

#include "net/connection.hpp"
#include "net/listener.hpp"
#include "net/tls.hpp"

namespace warren::net {
namespace {

using boost::asio::ip::tcp;
namespace ssl = boost::asio::ssl;
namespace fs = std::filesystem;

// A key and a certificate for `cn`, signed by `issuer` (self-signed without one).
struct identity {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  identity(const std::string& cn, long serial, const identity* issuer = nullptr) {
    key = EVP_EC_gen("P-256");
    cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), serial);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("Warren tests"), -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer->cert) : name);
    if (!issuer) {  // a CA
      X509V3_CTX v3;
      X509V3_set_ctx_nodb(&v3);
      X509V3_set_ctx(&v3, cert, cert, nullptr, nullptr, 0);
      X509_EXTENSION* bc =
          X509V3_EXT_conf_nid(nullptr, &v3, NID_basic_constraints, "critical,CA:TRUE");
      X509_add_ext(cert, bc, -1);
      X509_EXTENSION_free(bc);
    }
    X509_sign(cert, issuer ? issuer->key : key, EVP_sha256());
  }
  ~identity() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
  void write(const fs::path& cert_file, const fs::path& key_file) const {
    FILE* f = std::fopen(cert_file.c_str(), "w");
    PEM_write_X509(f, cert);
    std::fclose(f);
    f = std::fopen(key_file.c_str(), "w");
    PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
  }
};

// Echoes complete lines; "who\n" answers the verified client certificate's CN; "bye\n" answers
// "ok\n" and closes gracefully.
class line_echo : public connection_handler {
 public:
  explicit line_echo(std::atomic<int>* closed) : closed_(closed) {}
  size_t on_data(std::span<const uint8_t> data) override {
    std::string_view s(reinterpret_cast<const char*>(data.data()), data.size());
    size_t used = 0;
    for (size_t nl; (nl = s.find('\n', used)) != std::string_view::npos; used = nl + 1) {
      std::string_view line = s.substr(used, nl - used);
      if (line == "bye") {
        conn().out() += "ok\n";
        conn().close_gracefully();
        return nl + 1;
      }
      if (line == "who") {
        const tls_session* t = conn().tls();
        conn().out() += (t ? t->peer_common_name() : "plain") + "\n";
        continue;
      }
      conn().out().append(line).append("\n");
    }
    return used;
  }
  void on_closed() override { ++*closed_; }

 private:
  std::atomic<int>* closed_;
};

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);  // as warren's main: OpenSSL writes with plain send()
    dir_ = fs::temp_directory_path() / ("warren-tls-test-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    ca_.write(dir_ / "ca.pem", dir_ / "ca.key");
    server_.write(dir_ / "server.pem", dir_ / "server.key");
    client_.write(dir_ / "client.pem", dir_ / "client.key");
  }
  void TearDown() override {
    if (lst_) lst_->stop();
    pool_.stop();
    pool_.join();
    fs::remove_all(dir_);
  }
  tls_settings settings(tls_verify verify = tls_verify::none, bool fail_if_none = false) {
    tls_settings s;
    s.cert_file = dir_ / "server.pem";
    s.key_file = dir_ / "server.key";
    s.ca_file = dir_ / "ca.pem";
    s.verify = verify;
    s.fail_if_no_peer_cert = fail_if_none;
    return s;
  }
  void serve(const tls_settings& s) {
    source_ = std::make_unique<tls_context_source>(std::make_shared<const tls_context>(s));
    lst_ = std::make_unique<listener>(
        pool_, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0),
        [this](std::shared_ptr<connection> c) {
          if (c->use_tls(source_->current())) c->start(std::make_unique<line_echo>(&closed_));
        },
        "test");
    lst_->start();
    pool_.start();
  }
  ssl::context client_context(bool with_cert = false) {
    ssl::context c(ssl::context::tls_client);
    c.load_verify_file((dir_ / "ca.pem").string());
    c.set_verify_mode(ssl::verify_peer);
    if (with_cert) {
      c.use_certificate_file((dir_ / "client.pem").string(), ssl::context::pem);
      c.use_private_key_file((dir_ / "client.key").string(), ssl::context::pem);
    }
    return c;
  }
  using stream = ssl::stream<tcp::socket>;
  std::unique_ptr<stream> dial(ssl::context& c) {
    auto s = std::make_unique<stream>(client_io_, c);
    s->next_layer().connect(
        tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), lst_->port()));
    s->handshake(ssl::stream_base::client);
    return s;
  }
  std::string line(stream& s, const std::string& send) {
    boost::asio::write(s, boost::asio::buffer(send));
    std::string got;
    size_t n = boost::asio::read_until(s, boost::asio::dynamic_buffer(got), '\n');
    return got.substr(0, n);
  }
  void wait_closed(int n) {
    for (int i = 0; i < 100 && closed_ < n; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  fs::path dir_;
  identity ca_{"Warren test CA", 1};
  identity server_{"127.0.0.1", 2, &ca_};
  identity client_{"carol", 3, &ca_};
  worker_pool pool_{2};
  std::unique_ptr<tls_context_source> source_;
  std::unique_ptr<listener> lst_;
  std::atomic<int> closed_{0};
  boost::asio::io_context client_io_;
};

TEST_F(TlsTest, EchoesLinesSplitAcrossRecords) {
  serve(settings());
  auto c = client_context();
  auto s = dial(c);
  // One line in three TLS records with pauses: the handler must see the pieces joined.
  for (std::string part : {"hel", "lo wor", "ld\nsecond\n"}) {
    boost::asio::write(*s, boost::asio::buffer(part));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::string got;
  size_t n = boost::asio::read_until(*s, boost::asio::dynamic_buffer(got), "second\n");
  EXPECT_EQ(got.substr(0, n), "hello world\nsecond\n");
  EXPECT_EQ(line(*s, "who\n"), "\n");  // no client certificate
  EXPECT_STREQ(SSL_get_version(s->native_handle()), "TLSv1.3");
}

TEST_F(TlsTest, LargeEchoThroughTheWriteQueue) {
  // 8 MB of lines written while the client reads concurrently (one async read and one async
  // write on the stream): the server's writes wait for the socket, reading pauses past the
  // watermark with records possibly held by OpenSSL, and everything resumes.
  serve(settings());
  auto c = client_context();
  auto s = dial(c);
  std::string one(1000, 'x');
  one += '\n';
  const size_t lines = 8000;
  std::string out;
  for (size_t i = 0; i < lines; ++i) out += one;
  std::string got(out.size(), '\0');
  boost::system::error_code wec, rec;
  boost::asio::async_write(*s, boost::asio::buffer(out),
                           [&](const boost::system::error_code& e, size_t) { wec = e; });
  boost::asio::async_read(*s, boost::asio::buffer(got),
                          [&](const boost::system::error_code& e, size_t) { rec = e; });
  client_io_.run_for(std::chrono::seconds(60));
  EXPECT_FALSE(wec) << wec.message();
  EXPECT_FALSE(rec) << rec.message();
  EXPECT_EQ(got, out);
}

TEST_F(TlsTest, GracefulCloseSendsCloseNotify) {
  serve(settings());
  auto c = client_context();
  auto s = dial(c);
  EXPECT_EQ(line(*s, "bye\n"), "ok\n");
  char b[16];
  boost::system::error_code ec;
  s->read_some(boost::asio::buffer(b), ec);
  // eof, not stream_truncated: the server ended the TLS stream before the TCP one.
  EXPECT_EQ(ec, boost::asio::error::eof) << ec.message();
  s->next_layer().close();
  wait_closed(1);
  EXPECT_EQ(closed_, 1);
}

TEST_F(TlsTest, PlainBytesAreRefusedWithoutHarm) {
  serve(settings());
  tcp::socket raw(client_io_);
  raw.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), lst_->port()));
  boost::asio::write(raw, boost::asio::buffer(std::string("AMQP\x00\x00\x09\x01", 8)));
  char b[512];
  boost::system::error_code ec;
  while (!ec) raw.read_some(boost::asio::buffer(b), ec);  // an alert, maybe, then the close
  wait_closed(1);
  EXPECT_EQ(closed_, 1);
  // The listener still serves TLS.
  auto c = client_context();
  auto s = dial(c);
  EXPECT_EQ(line(*s, "still\n"), "still\n");
}

TEST_F(TlsTest, OnlyTls12AndTls13AreAccepted) {
  serve(settings());
  for (int version : {TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION, TLS1_3_VERSION}) {
    auto c = client_context();
    SSL_CTX_set_security_level(c.native_handle(), 0);  // let the client offer old versions
    SSL_CTX_set_cipher_list(c.native_handle(), "ALL:@SECLEVEL=0");
    SSL_CTX_set_min_proto_version(c.native_handle(), version);
    SSL_CTX_set_max_proto_version(c.native_handle(), version);
    stream s(client_io_, c);
    s.next_layer().connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), lst_->port()));
    boost::system::error_code ec;
    s.handshake(ssl::stream_base::client, ec);
    EXPECT_EQ(!ec, version >= TLS1_2_VERSION) << std::hex << version << ": " << ec.message();
  }
}

TEST_F(TlsTest, ClientCertificateIsVerifiedAndNamesThePeer) {
  serve(settings(tls_verify::peer, /*fail_if_none=*/true));
  auto with = client_context(true);
  auto s = dial(with);
  EXPECT_EQ(line(*s, "who\n"), "carol\n");
  // Without a certificate: refused during the handshake (TLS 1.3 reports it on the first read).
  auto without = client_context(false);
  stream bare(client_io_, without);
  bare.next_layer().connect(
      tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), lst_->port()));
  boost::system::error_code ec;
  bare.handshake(ssl::stream_base::client, ec);
  if (!ec) {
    boost::asio::write(bare, boost::asio::buffer(std::string("who\n")), ec);
    char b[16];
    if (!ec) bare.read_some(boost::asio::buffer(b), ec);
  }
  EXPECT_TRUE(ec);
  // A certificate from another CA does not verify.
  identity stranger_ca("Other CA", 9);
  identity stranger("mallory", 10, &stranger_ca);
  stranger.write(dir_ / "stranger.pem", dir_ / "stranger.key");
  auto other = client_context(false);
  other.use_certificate_file((dir_ / "stranger.pem").string(), ssl::context::pem);
  other.use_private_key_file((dir_ / "stranger.key").string(), ssl::context::pem);
  stream m(client_io_, other);
  m.next_layer().connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), lst_->port()));
  ec.clear();
  m.handshake(ssl::stream_base::client, ec);
  if (!ec) {
    boost::asio::write(m, boost::asio::buffer(std::string("who\n")), ec);
    char b[16];
    if (!ec) m.read_some(boost::asio::buffer(b), ec);
  }
  EXPECT_TRUE(ec);
}

TEST_F(TlsTest, ReloadChangesNewHandshakesOnly) {
  serve(settings());
  auto c = client_context();
  auto old = dial(c);
  auto serial = [](stream& s) {
    X509* x = SSL_get1_peer_certificate(s.native_handle());
    long v = ASN1_INTEGER_get(X509_get0_serialNumber(x));
    X509_free(x);
    return v;
  };
  EXPECT_EQ(serial(*old), 2);
  identity renewed("127.0.0.1", 20, &ca_);
  renewed.write(dir_ / "server.pem", dir_ / "server.key");
  EXPECT_NE(source_->reload().find("serial 14"), std::string::npos);  // 20, in hex
  auto fresh = dial(c);
  EXPECT_EQ(serial(*fresh), 20);
  EXPECT_EQ(line(*old, "still here\n"), "still here\n");
  EXPECT_EQ(line(*fresh, "new\n"), "new\n");
  // A broken file leaves the current context in place.
  std::ofstream(dir_ / "server.key") << "not a key\n";
  EXPECT_THROW(source_->reload(), std::runtime_error);
  auto after = dial(c);
  EXPECT_EQ(serial(*after), 20);
}

TEST_F(TlsTest, BadFilesAreClearErrors) {
  auto message = [](const tls_settings& s) {
    try {
      tls_context ctx(s);
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto s = settings();
  s.cert_file = dir_ / "missing.pem";
  EXPECT_NE(message(s).find("--tls-cert " + s.cert_file + ": cannot read"), std::string::npos)
      << message(s);
  s = settings();
  s.cert_file = dir_ / "server.key";  // a key where the certificate should be
  EXPECT_NE(message(s).find("not a PEM certificate"), std::string::npos) << message(s);
  s = settings();
  s.key_file = dir_ / "client.key";  // another certificate's key
  EXPECT_NE(message(s).find("does not match the certificate"), std::string::npos) << message(s);
  s = settings(tls_verify::peer);
  s.ca_file.clear();
  EXPECT_NE(message(s).find("--tls-verify peer needs --tls-ca"), std::string::npos) << message(s);
}

}  // namespace
}  // namespace warren::net
