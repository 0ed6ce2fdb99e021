#include "http/tls.hpp"
#include "common/mutex.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ssl/context.hpp>
#include <cerrno>
#include <cstring>

#include "common/safe_fs.hpp"

namespace skylab::http {

namespace ssl = boost::asio::ssl;

namespace {

constexpr std::size_t kMaxPemBytes = 1u << 20;

//! The bytes of a PEM file: a regular file (symlinks followed, as certbot's
//! live/ links are) of at most kMaxPemBytes. Opened non-blocking, so that a
//! FIFO or a device put in its place is refused at once rather than
//! blocking the server's I/O thread, which reloads it.
Result<std::string> read_pem(const std::string& path, const std::string& what) {
  safe_fs::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (fd.get() < 0) return Error::bad_request(what + " " + path + ": " + std::strerror(errno));
  auto pem = safe_fs::read_regular(fd.get(), kMaxPemBytes);
  if (!pem.ok()) return Error::bad_request(what + " " + path + ": " + pem.error().message);
  return pem;
}

}  // namespace

bool TlsCertificate::Stamp::operator==(const Stamp& o) const {
  return dev == o.dev && ino == o.ino && size == o.size && mtime.tv_sec == o.mtime.tv_sec &&
         mtime.tv_nsec == o.mtime.tv_nsec;
}

TlsCertificate::Stamp TlsCertificate::stamp_of(const std::string& path) {
  Stamp s;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    s.dev = st.st_dev;
    s.ino = st.st_ino;
    s.size = st.st_size;
    s.mtime = st.st_mtim;
  }
  return s;
}

TlsCertificate::TlsCertificate(std::string cert, std::string key)
    : cert_(std::move(cert)), key_(std::move(key)) {}
TlsCertificate::~TlsCertificate() = default;

Status TlsCertificate::reload() {
  // Stamps first: a file replaced while we read it is read again next poll.
  Stamp cs = stamp_of(cert_), ks = stamp_of(key_);
  {
    MutexLock lock(mu_);
    cert_stamp_ = cs;
    key_stamp_ = ks;
  }
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  boost::system::error_code ec;
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                       ssl::context::single_dh_use,
                   ec);
  // No renegotiation (a client-driven CPU cost), the server's cipher order.
  SSL_CTX_set_options(ctx->native_handle(),
                      SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  auto cert_pem = read_pem(cert_, "TLS certificate");
  if (!cert_pem.ok()) return cert_pem.error();
  auto key_pem = read_pem(key_, "TLS key");
  if (!key_pem.ok()) return key_pem.error();
  if (!ec) ctx->use_certificate_chain(boost::asio::buffer(cert_pem.value()), ec);
  if (ec) return Error::bad_request("TLS certificate " + cert_ + ": " + ec.message());
  ctx->use_private_key(boost::asio::buffer(key_pem.value()), ssl::context::pem, ec);
  // The key's PEM is not left in freed memory.
  OPENSSL_cleanse(key_pem.value().data(), key_pem.value().size());
  if (ec) return Error::bad_request("TLS key " + key_ + ": " + ec.message());
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    ERR_clear_error();
    return Error::bad_request("TLS key " + key_ + " does not match the certificate " + cert_);
  }
  MutexLock lock(mu_);
  ctx_ = std::move(ctx);
  return ok_status();
}

Status TlsCertificate::reload_if_changed(bool& changed) {
  Stamp cs = stamp_of(cert_), ks = stamp_of(key_);
  {
    MutexLock lock(mu_);
    changed = !(cs == cert_stamp_) || !(ks == key_stamp_);
  }
  if (!changed) return ok_status();
  return reload();
}

std::shared_ptr<ssl::context> TlsCertificate::current() const {
  MutexLock lock(mu_);
  return ctx_;
}

}  // namespace skylab::http
