// The server's TLS certificate: loaded from PEM files, replaced when the
// files change (Let's Encrypt renewals) or on request (SIGHUP). Handshakes
// take the context current when they start; open connections keep theirs.
#pragma once

#include <sys/types.h>

#include <ctime>
#include <memory>
#include <string>

#include "common/mutex.hpp"
#include "common/result.hpp"

namespace boost::asio::ssl {
class context;
}

namespace skylab::http {

//! Thread-safe.
class TlsCertificate {
 public:
  //! `cert`: PEM certificate chain (leaf first); `key`: its PEM private key.
  TlsCertificate(std::string cert, std::string key);
  ~TlsCertificate();

  //! Builds a context from the files (TLS 1.2 or later). On success it
  //! becomes current(); on failure (missing, unreadable, mismatched files)
  //! the previous context stays current and the error says why.
  Status reload();
  //! reload() when the cert or key file's inode, size or mtime changed since
  //! the last load attempt; Ok with nothing done otherwise. `changed` tells.
  Status reload_if_changed(bool& changed);
  //! The context new handshakes use; null before the first successful load.
  std::shared_ptr<boost::asio::ssl::context> current() const;

 private:
  struct Stamp {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    timespec mtime{};
    bool operator==(const Stamp& o) const;
  };
  static Stamp stamp_of(const std::string& path);

  const std::string cert_, key_;
  mutable Mutex mu_;
  std::shared_ptr<boost::asio::ssl::context> ctx_ GUARDED_BY(mu_);
  Stamp cert_stamp_ GUARDED_BY(mu_);
  Stamp key_stamp_ GUARDED_BY(mu_);
};

}  // namespace skylab::http
