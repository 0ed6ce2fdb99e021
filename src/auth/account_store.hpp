// Accounts, browser sessions and per-user API tokens, stored in SQLite
// (`<data-dir>/skylab.db`, WAL), so that `skylab user ...` can administer
// the same data directory while the server runs. Tables: `users`,
// `auth_sessions`, `auth_tokens`, and `auth_schema` (version).
//
// Secrets are never stored: passwords as Argon2id hashes, session cookies
// and API tokens as SHA-256 digests.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth/auth.hpp"
#include "auth/crypto.hpp"
#include "common/clock.hpp"
#include "common/mutex.hpp"
#include "common/result.hpp"

struct sqlite3;

namespace skylab::auth {

//! 1 to 32 characters of [a-z0-9_-], starting with a letter or '_' (the
//! shape of a POSIX user name: runtimes will run under per-user uids).
bool valid_username(std::string_view name);
//! Empty when `password` is acceptable (8 to 1024 bytes, no NUL); otherwise why not.
std::string password_problem(std::string_view password);

//! API tokens start with this, so that they are recognizable in leaks and
//! told apart from the admin token cheaply.
inline constexpr std::string_view kApiTokenPrefix = "skt_";

struct UserRecord {
  std::string username;
  bool admin = false;
  bool disabled = false;
  std::int64_t created = 0;           //!< unix seconds
  std::int64_t password_changed = 0;  //!< unix seconds
  std::string email;                  //!< given at self sign-up; may be empty
};

struct TokenRecord {
  std::string id;  //!< public id, for listing and revoking
  std::string username;
  std::string name;  //!< the owner's label ("vscode", "cli")
  std::int64_t created = 0;
  std::optional<std::int64_t> expires;  //!< unix seconds; none: never
};

struct NewToken {
  TokenRecord record;
  std::string token;  //!< the secret; shown once, stored only as a digest
};

struct NewSession {
  std::string secret;  //!< the session cookie's value
  std::string xsrf;    //!< the XSRF token bound to it
  std::int64_t expires = 0;
  Identity identity;
};

struct AccountStoreOptions {
  std::string path;  //!< the SQLite file; created (0600) when missing
  PasswordHashParams hash = PasswordHashParams::interactive();
  std::int64_t session_lifetime_seconds = std::int64_t{14} * 24 * 3600;
  std::size_t max_sessions_per_user = 50;  //!< the oldest session ends beyond this
  std::size_t max_tokens_per_user = 100;   //!< creating more fails
  //! Unix seconds; the system clock when empty. Injected by tests.
  const Clock* clock = &real_clock();
};

//! Thread-safe (a write connection and a read connection, each behind its own
//! mutex; password hashing runs outside them). Other processes may use the
//! same file at the same time; while one holds the write lock, writes fail
//! after a short wait with Unavailable, and the request checks
//! (session_identity, token_identity, still_valid) still answer.
class AccountStore {
 public:
  static Result<std::shared_ptr<AccountStore>> open(AccountStoreOptions options);
  ~AccountStore();
  AccountStore(const AccountStore&) = delete;
  AccountStore& operator=(const AccountStore&) = delete;

  // -- accounts
  //! Creates an enabled account. Conflict when the name is taken.
  Status add_user(std::string_view name, std::string_view password, bool admin,
                  std::string_view email = {});
  Result<UserRecord> find_user(std::string_view name);
  Result<std::vector<UserRecord>> list_users();
  //! Sets a new password and ends every session of the user (tokens stay).
  Status set_password(std::string_view name, std::string_view password);
  //! Disabling ends every session; tokens are refused while disabled.
  Status set_disabled(std::string_view name, bool disabled);
  Status set_admin(std::string_view name, bool admin);
  //! The account when `password` is right and the account is enabled; a
  //! forbidden Error otherwise, with one message for every reason. Costs one
  //! Argon2 verification whether or not the user exists.
  Result<UserRecord> check_password(std::string_view name, std::string_view password);

  // -- sessions (cookies)
  Result<NewSession> create_session(const UserRecord& user);
  //! The identity of a live session of an enabled account, or nullopt.
  std::optional<Identity> session_identity(std::string_view secret);
  //! Ends the session with this cookie value (nothing when unknown).
  void end_session(std::string_view secret);
  //! A browser session for the admin token's identity (user "admin", an
  //! administrator, with no account needed): what the login URL
  //! (`/?token=…`) signs a browser in as. Held in this process only, never
  //! written to the database: it ends with the server, as a generated admin
  //! token does. At most kMaxAdminSessions at once (the oldest ends first);
  //! the same lifetime as other sessions. session_identity, still_valid and
  //! end_session know these sessions too.
  NewSession create_admin_session();
  static constexpr std::size_t kMaxAdminSessions = 64;

  // -- API tokens
  //! `lifetime_seconds` none: the token never expires.
  Result<NewToken> create_token(std::string_view username, std::string_view name,
                                std::optional<std::int64_t> lifetime_seconds);
  //! The identity of a live token of an enabled account, or nullopt.
  std::optional<Identity> token_identity(std::string_view token);
  //! The user's tokens that have not expired, newest first.
  Result<std::vector<TokenRecord>> list_tokens(std::string_view username);
  //! NotFound when the user has no token with this id (another user's included).
  Status revoke_token(std::string_view username, std::string_view id);

  //! Whether the credential behind an identity returned earlier still holds.
  bool still_valid(const Identity& who);
  //! Changes when another connection (e.g. `skylab user` in another
  //! process) commits to the database; see SQLite's PRAGMA data_version.
  std::int64_t data_version();

 private:
  explicit AccountStore(AccountStoreOptions options);
  Status migrate();
  std::int64_t now() const;
  std::optional<Identity> identity_for(sqlite3* db, const std::string& username, Via via,
                                       std::string credential);
  Status exec(const char* sql) REQUIRES(mutex_);

  AccountStoreOptions opts_;
  Mutex mutex_;
  sqlite3* db_ GUARDED_BY(mutex_) = nullptr;  // writes and administration
  //! Reads that authenticate requests (session_identity, token_identity,
  //! still_valid): never waits behind db_'s writers.
  Mutex read_mutex_;
  sqlite3* read_db_ GUARDED_BY(read_mutex_) = nullptr;
  std::optional<Identity> admin_session(const std::string& id);
  Mutex admin_mutex_;
  //! Admin-token sessions: sha256 of the secret -> expiry (unix seconds).
  std::map<std::string, std::int64_t> admin_sessions_ GUARDED_BY(admin_mutex_);
  std::once_flag dummy_once_;
  std::string dummy_hash_;  // equalizes the time of logins for unknown users
};

//! The server's Authenticator: the admin token, per-user API tokens
//! (`Authorization: token T`, `Bearer T` or `?token=T`) and session cookies.
class AccountAuthenticator : public Authenticator {
 public:
  AccountAuthenticator(std::shared_ptr<AccountStore> store, std::string admin_token);
  std::optional<Identity> authenticate(const Credentials& creds) const override;
  bool still_valid(const Identity& who) const override;

 private:
  std::optional<Identity> by_token(std::string_view token) const;

  std::shared_ptr<AccountStore> store_;
  AdminTokenAuthenticator admin_;
};

}  // namespace skylab::auth
