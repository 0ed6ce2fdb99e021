// Shared by backup.cpp and restore.cpp; not a public interface.
#pragma once

#include <cstddef>
#include <string>

namespace skylab::backup {

inline constexpr const char* kManifestName = "MANIFEST.json";

//! Incremental SHA-256 (OpenSSL).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* p, std::size_t n);
  std::string hex();  //!< once

 private:
  void* ctx_;
};

//! The extended attributes a backup keeps and a restore sets: Skylab's own
//! (item ids that shares point at); nothing else (no security.*, no ACLs).
bool skylab_xattr(const std::string& name);

//! The first 16 bytes of an SQLite database file.
bool is_sqlite_header(const char* p, std::size_t n);

}  // namespace skylab::backup
