#include "http/tls.hpp"
#include "common/mutex.hpp"

#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <boost/asio/ssl/context.hpp>

namespace skylab::http {

namespace ssl = boost::asio::ssl;

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
  if (!ec) ctx->use_certificate_chain_file(cert_, ec);
  if (ec) return Error::bad_request("TLS certificate " + cert_ + ": " + ec.message());
  ctx->use_private_key_file(key_, ssl::context::pem, ec);
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
