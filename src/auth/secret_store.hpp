// Users' secrets (Colab's `userdata`): named values encrypted at rest, and
// the notebooks each may reach. Stored in <data-dir>/skylab.db, tables
// `auth_secrets` and `auth_secret_grants`; values are sealed with
// XChaCha20-Poly1305 under a server key kept in a root-owned 0600 file
// beside the database, bound to (owner, name) so that rows cannot be
// swapped between users or names. Values never leave this class except
// through `read`.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.hpp"
#include "common/mutex.hpp"
#include "common/result.hpp"

struct sqlite3;

namespace skylab::auth {

//! What a listing shows of a secret: never its value.
struct SecretInfo {
  std::string name;
  std::vector<std::string> grants;  //!< notebook paths with access, sorted
  std::int64_t updated = 0;         //!< unix seconds
};

//! Thread-safe (one connection behind a mutex). Every call does SQLite I/O:
//! call from worker threads only.
class SecretStore {
 public:
  static constexpr std::size_t kMaxValueBytes = std::size_t{64} * 1024;
  static constexpr std::size_t kMaxPerOwner = 100;
  static constexpr std::size_t kMaxGrantsPerSecret = 1000;
  static constexpr std::size_t kMaxPathBytes = 4096;

  //! `db_path`: the SQLite file (shared with AccountStore); `key_path`: the
  //! server key, created (0600, O_EXCL) with a random key when absent.
  //! Unavailable when the key file is unreadable, of the wrong size or not
  //! a regular file.
  static Result<std::shared_ptr<SecretStore>> open(const std::string& db_path,
                                                   const std::string& key_path,
                                                   const Clock& clock = real_clock());
  ~SecretStore();
  SecretStore(const SecretStore&) = delete;
  SecretStore& operator=(const SecretStore&) = delete;

  //! `[A-Za-z_][A-Za-z0-9_]{0,127}`, as Colab's secret names.
  static bool valid_name(std::string_view name);
  //! A notebook path as grants store it: without leading/trailing '/';
  //! BadRequest when empty, too long, with NUL or with "." / ".." parts.
  static Result<std::string> normalize_path(std::string_view path);

  //! Names and grants of `owner`'s secrets, sorted by name.
  Result<std::vector<SecretInfo>> list(std::string_view owner);
  //! Creates or replaces (grants kept). BadRequest for a bad name, TooLarge
  //! beyond kMaxValueBytes, Conflict beyond kMaxPerOwner secrets.
  Status put(std::string_view owner, std::string_view name, std::string_view value);
  //! Deletes the secret and its grants; NotFound when absent.
  Status remove(std::string_view owner, std::string_view name);
  //! Gives (or takes back) notebook `path` access to the secret; NotFound
  //! when the secret is absent. Granting twice is one grant.
  Status set_grant(std::string_view owner, std::string_view name, std::string_view path,
                   bool granted);

  //! After `owner` moved `from` to `to` through the server: grants of it and
  //! of notebooks below it follow (open notebooks keep their access).
  Status moved(std::string_view owner, std::string_view from, std::string_view to);
  //! After `owner` deleted `path` through the server: grants of it and below
  //! it end (a later notebook at that path does not inherit them).
  Status removed(std::string_view owner, std::string_view path);

  enum class Access { kGranted, kNotFound, kNoAccess };
  struct Read {
    Access access = Access::kNotFound;
    std::string value;  //!< only for kGranted
  };
  //! The value of `owner`'s secret `name` when every one of `paths` (the
  //! notebooks bound to the asking kernel; none means no access) has a
  //! grant. Internal when the value does not decrypt (tampered row, other key).
  Result<Read> read(std::string_view owner, std::string_view name,
                    const std::vector<std::string>& paths);

 private:
  SecretStore() = default;
  std::int64_t now() const;

  const Clock* clock_ = &real_clock();
  std::string key_;  //!< 32 bytes, locked in memory where possible
  Mutex mutex_;
  sqlite3* db_ GUARDED_BY(mutex_) = nullptr;
};

}  // namespace skylab::auth
