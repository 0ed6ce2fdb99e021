#include "auth/account_store.hpp"

#include <algorithm>

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "auth/web_policy.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/sqlite_db.hpp"
#include "common/sqlite_stmt.hpp"
#include "common/util.hpp"
#include "metrics/metrics.hpp"

namespace skylab::auth {

namespace {

//! How long a write waits for another process's lock before the caller gets
//! Unavailable (HTTP 503). Writes run on worker threads, never on the I/O thread.
int kWriteBusyTimeoutMs = 2000;  // not const: the busy handler takes its address
//! Reads on the I/O thread: WAL readers do not wait for writers, so this only
//! covers a checkpoint or recovery in progress.
int kReadBusyTimeoutMs = 100;

using sqlite::Stmt;
using sqlite::Tx;

constexpr const char* kComponent = "auth";

const char* kSchemaV1 = R"sql(
CREATE TABLE IF NOT EXISTS users(
  username TEXT PRIMARY KEY,
  password_hash TEXT NOT NULL,
  admin INTEGER NOT NULL DEFAULT 0,
  disabled INTEGER NOT NULL DEFAULT 0,
  created INTEGER NOT NULL,
  password_changed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS auth_sessions(
  id TEXT PRIMARY KEY,
  username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
  created INTEGER NOT NULL,
  expires INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS auth_sessions_by_user ON auth_sessions(username, created);
CREATE TABLE IF NOT EXISTS auth_tokens(
  id TEXT PRIMARY KEY,
  token_hash TEXT NOT NULL UNIQUE,
  username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
  name TEXT NOT NULL,
  created INTEGER NOT NULL,
  expires INTEGER);
CREATE INDEX IF NOT EXISTS auth_tokens_by_user ON auth_tokens(username, created);
)sql";

Error db_error(sqlite3* db, const std::string& what) {
  // Another process (`skylab user`, a backup, sqlite3) holds the write lock
  // longer than the busy timeout: a temporary condition, not a server fault.
  if (db) {
    int code = sqlite3_errcode(db) & 0xff;
    if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
      return Error::unavailable("account database is busy; try again: " + what);
  }
  return Error::internal("account database: " + what + ": " +
                         (db ? sqlite3_errmsg(db) : "no connection"));
}

UserRecord user_from(Stmt& s) {
  UserRecord u;
  u.username = s.text(0);
  u.admin = s.i64(1) != 0;
  u.disabled = s.i64(2) != 0;
  u.created = s.i64(3);
  u.password_changed = s.i64(4);
  u.email = s.text(5);
  return u;
}

TokenRecord token_from(Stmt& s) {
  TokenRecord t;
  t.id = s.text(0);
  t.username = s.text(1);
  t.name = s.text(2);
  t.created = s.i64(3);
  if (!s.is_null(4)) t.expires = s.i64(4);
  return t;
}

// An open transaction, rolled back unless committed.
}  // namespace

bool valid_username(std::string_view name) {
  if (name.empty() || name.size() > 32) return false;
  auto c0 = name.front();
  if (!((c0 >= 'a' && c0 <= 'z') || c0 == '_')) return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  return true;
}

std::string password_problem(std::string_view password) {
  if (password.size() < 8) return "The password must have at least 8 characters";
  if (password.size() > 1024) return "The password must have at most 1024 bytes";
  if (password.find('\0') != std::string_view::npos) return "The password must not contain NUL";
  return {};
}

AccountStore::AccountStore(AccountStoreOptions options) : opts_(std::move(options)) {}

AccountStore::~AccountStore() {
  if (read_db_) sqlite3_close_v2(read_db_);
  if (db_) sqlite3_close_v2(db_);
}

std::int64_t AccountStore::now() const {
  return unix_seconds(*opts_.clock);
}

Status AccountStore::exec(const char* sql) {
  char* msg = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
    std::string m = msg ? msg : "unknown error";
    sqlite3_free(msg);
    return Error::internal("account database: " + m);
  }
  return ok_status();
}

Result<std::shared_ptr<AccountStore>> AccountStore::open(AccountStoreOptions options) {
  std::shared_ptr<AccountStore> s(new AccountStore(std::move(options)));
  {
    // Uncontended (not shared yet); held so that the analysis sees every db_ access locked.
    MutexLock setup_lock(s->mutex_);
    sqlite::OpenOptions o;
    o.busy_handler = metrics::counting_busy_handler;
    o.busy_arg = &kWriteBusyTimeoutMs;
    o.foreign_keys = true;
    if (auto st = sqlite::open(s->opts_.path, o, &s->db_, db_error); !st.ok()) return st.error();
  }
  if (auto st = s->migrate(); !st.ok()) return st.error();
  // The read connection: in WAL mode a reader never waits for a writer, so
  // the checks every request makes (on the server's I/O thread) go on while
  // another connection or process holds the write lock, and never queue
  // behind a login that waits for it on mutex_.
  MutexLock read_lock(s->read_mutex_);  // uncontended, as above
  int rc = sqlite3_open_v2(s->opts_.path.c_str(), &s->read_db_,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) return db_error(s->read_db_, "open " + s->opts_.path);
  sqlite3_busy_handler(s->read_db_, metrics::counting_busy_handler, &kReadBusyTimeoutMs);
  return s;
}

Status AccountStore::migrate() {
  MutexLock lock(mutex_);
  return sqlite::migrate(db_, kComponent, "the account database",
                         {{1, kSchemaV1},
                          // v2: the e-mail address given at self sign-up
                          {2, "ALTER TABLE users ADD COLUMN email TEXT NOT NULL DEFAULT ''"}},
                         db_error);
}

// ---------------------------------------------------------------- accounts

Status AccountStore::add_user(std::string_view name, std::string_view password, bool admin,
                              std::string_view email) {
  if (!valid_username(name))
    return Error::bad_request(
        "Invalid user name: use 1 to 32 of a-z, 0-9, '_' and '-', starting with a letter");
  if (auto p = password_problem(password); !p.empty()) return Error::bad_request(p);
  auto hash = hash_password(password, opts_.hash);
  if (!hash.ok()) return hash.error();
  MutexLock lock(mutex_);
  Stmt s(db_,
         "INSERT INTO users(username, password_hash, admin, disabled, created, password_changed, "
         "email) "
         "VALUES(?, ?, ?, 0, ?, ?, ?)");
  auto t = now();
  s.bind(1, name)
      .bind(2, hash.value())
      .bind(3, std::int64_t{admin ? 1 : 0})
      .bind(4, t)
      .bind(5, t)
      .bind(6, email);
  int rc = s.step();
  if (rc == SQLITE_CONSTRAINT) return Error::conflict("User already exists: " + std::string(name));
  if (rc != SQLITE_DONE) return db_error(db_, "add user");
  return ok_status();
}

Result<UserRecord> AccountStore::find_user(std::string_view name) {
  MutexLock lock(read_mutex_);  // a read: never behind a writer waiting for the lock
  Stmt s(read_db_,
         "SELECT username, admin, disabled, created, password_changed, email FROM users WHERE "
         "username = ?");
  s.bind(1, name);
  int rc = s.step();
  if (rc == SQLITE_ROW) return user_from(s);
  if (rc == SQLITE_DONE) return Error::not_found("No such user: " + std::string(name));
  return db_error(read_db_, "find user");
}

Result<std::vector<UserRecord>> AccountStore::list_users() {
  MutexLock lock(mutex_);
  Stmt s(db_,
         "SELECT username, admin, disabled, created, password_changed, email FROM users ORDER BY "
         "username");
  std::vector<UserRecord> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out.push_back(user_from(s));
  if (rc != SQLITE_DONE) return db_error(db_, "list users");
  return out;
}

Status AccountStore::set_password(std::string_view name, std::string_view password) {
  if (auto p = password_problem(password); !p.empty()) return Error::bad_request(p);
  auto hash = hash_password(password, opts_.hash);
  if (!hash.ok()) return hash.error();
  MutexLock lock(mutex_);
  Tx tx(db_);
  if (!tx.ok()) return db_error(db_, "begin");
  Stmt u(db_, "UPDATE users SET password_hash = ?, password_changed = ? WHERE username = ?");
  u.bind(1, hash.value()).bind(2, now()).bind(3, name);
  if (u.step() != SQLITE_DONE) return db_error(db_, "set password");
  if (sqlite3_changes(db_) == 0) return Error::not_found("No such user: " + std::string(name));
  Stmt d(db_, "DELETE FROM auth_sessions WHERE username = ?");
  d.bind(1, name);
  if (d.step() != SQLITE_DONE) return db_error(db_, "end sessions");
  if (!tx.commit()) return db_error(db_, "commit");
  return ok_status();
}

Status AccountStore::set_disabled(std::string_view name, bool disabled) {
  MutexLock lock(mutex_);
  Tx tx(db_);
  if (!tx.ok()) return db_error(db_, "begin");
  Stmt u(db_, "UPDATE users SET disabled = ? WHERE username = ?");
  u.bind(1, std::int64_t{disabled ? 1 : 0}).bind(2, name);
  if (u.step() != SQLITE_DONE) return db_error(db_, "disable user");
  if (sqlite3_changes(db_) == 0) return Error::not_found("No such user: " + std::string(name));
  if (disabled) {
    Stmt d(db_, "DELETE FROM auth_sessions WHERE username = ?");
    d.bind(1, name);
    if (d.step() != SQLITE_DONE) return db_error(db_, "end sessions");
  }
  if (!tx.commit()) return db_error(db_, "commit");
  return ok_status();
}

Status AccountStore::set_admin(std::string_view name, bool admin) {
  MutexLock lock(mutex_);
  Stmt u(db_, "UPDATE users SET admin = ? WHERE username = ?");
  u.bind(1, std::int64_t{admin ? 1 : 0}).bind(2, name);
  if (u.step() != SQLITE_DONE) return db_error(db_, "set admin");
  if (sqlite3_changes(db_) == 0) return Error::not_found("No such user: " + std::string(name));
  return ok_status();
}

Result<UserRecord> AccountStore::check_password(std::string_view name, std::string_view password) {
  const Error refused = Error::forbidden("Invalid user name or password");
  std::optional<UserRecord> user;
  std::string hash;
  if (valid_username(name) && password.size() <= 1024) {
    MutexLock lock(mutex_);
    Stmt s(db_,
           "SELECT username, admin, disabled, created, password_changed, email, password_hash "
           "FROM users WHERE username = ?");
    s.bind(1, name);
    int rc = s.step();
    if (rc == SQLITE_ROW) {
      user = user_from(s);
      hash = s.text(6);
    } else if (rc != SQLITE_DONE) {
      return db_error(db_, "find user");
    }
  }
  if (!user) {
    // Spend the same time as a real check, so that timing does not tell
    // which user names exist.
    std::call_once(dummy_once_, [this] {
      auto h = hash_password(util::random_hex(16), opts_.hash);
      if (h.ok()) dummy_hash_ = h.value();
    });
    verify_password(dummy_hash_, password);
    return refused;
  }
  bool match = verify_password(hash, password);
  if (!match || user->disabled) return refused;
  return *user;
}

// ---------------------------------------------------------------- identities

std::optional<Identity> AccountStore::identity_for(sqlite3* db, const std::string& username,
                                                   Via via, std::string credential) {
  // Caller holds the mutex of `db` (mutex_ for db_, read_mutex_ for read_db_).
  Stmt s(db, "SELECT admin, disabled FROM users WHERE username = ?");
  s.bind(1, username);
  if (s.step() != SQLITE_ROW || s.i64(1) != 0) return std::nullopt;
  Identity id;
  id.username = username;
  id.admin = s.i64(0) != 0;
  id.via = via;
  id.credential_id = std::move(credential);
  return id;
}

// ---------------------------------------------------------------- sessions

Result<NewSession> AccountStore::create_session(const UserRecord& user) {
  NewSession ns;
  ns.secret = util::random_hex(32);
  ns.xsrf = xsrf_token_for_session(ns.secret);
  std::string id = sha256_hex(ns.secret);
  auto t = now();
  ns.expires = t + opts_.session_lifetime_seconds;
  MutexLock lock(mutex_);
  Tx tx(db_);
  if (!tx.ok()) return db_error(db_, "begin");
  {
    Stmt purge(db_, "DELETE FROM auth_sessions WHERE expires <= ?");
    purge.bind(1, t);
    if (purge.step() != SQLITE_DONE) return db_error(db_, "purge sessions");
    // Keep at most max_sessions_per_user - 1 older sessions.
    Stmt trim(
        db_,
        "DELETE FROM auth_sessions WHERE id IN (SELECT id FROM auth_sessions WHERE username = ? "
        "ORDER BY created DESC, rowid DESC LIMIT -1 OFFSET ?)");
    trim.bind(1, user.username).bind(2, static_cast<std::int64_t>(opts_.max_sessions_per_user) - 1);
    if (trim.step() != SQLITE_DONE) return db_error(db_, "trim sessions");
    Stmt ins(db_, "INSERT INTO auth_sessions(id, username, created, expires) VALUES(?, ?, ?, ?)");
    ins.bind(1, id).bind(2, user.username).bind(3, t).bind(4, ns.expires);
    if (ins.step() != SQLITE_DONE) return db_error(db_, "create session");
  }
  auto who = identity_for(db_, user.username, Via::kSession, "session:" + id);
  if (!who) return Error::forbidden("Invalid user name or password");
  if (!tx.commit()) return db_error(db_, "commit");
  ns.identity = std::move(*who);
  ns.identity.xsrf = ns.xsrf;
  return ns;
}

NewSession AccountStore::create_admin_session() {
  NewSession ns;
  ns.secret = util::random_hex(32);
  ns.xsrf = xsrf_token_for_session(ns.secret);
  std::string id = sha256_hex(ns.secret);
  auto t = now();
  ns.expires = t + opts_.session_lifetime_seconds;
  {
    MutexLock lock(admin_mutex_);
    std::erase_if(admin_sessions_, [t](const auto& kv) { return kv.second <= t; });
    while (admin_sessions_.size() >= kMaxAdminSessions) {
      auto oldest =
          std::min_element(admin_sessions_.begin(), admin_sessions_.end(),
                           [](const auto& a, const auto& b) { return a.second < b.second; });
      admin_sessions_.erase(oldest);
    }
    admin_sessions_[id] = ns.expires;
  }
  ns.identity = AdminTokenAuthenticator::admin_identity();
  ns.identity.via = Via::kSession;
  ns.identity.credential_id = "session:" + id;
  ns.identity.xsrf = ns.xsrf;
  return ns;
}

std::optional<Identity> AccountStore::admin_session(const std::string& id) {
  MutexLock lock(admin_mutex_);
  auto it = admin_sessions_.find(id);
  if (it == admin_sessions_.end() || it->second <= now()) return std::nullopt;
  Identity who = AdminTokenAuthenticator::admin_identity();
  who.via = Via::kSession;
  who.credential_id = "session:" + id;
  return who;
}

std::optional<Identity> AccountStore::session_identity(std::string_view secret) {
  if (secret.empty() || secret.size() > 128) return std::nullopt;
  std::string id = sha256_hex(secret);
  if (auto admin = admin_session(id)) {
    admin->xsrf = xsrf_token_for_session(secret);
    return admin;
  }
  MutexLock lock(read_mutex_);
  Stmt s(read_db_, "SELECT username FROM auth_sessions WHERE id = ? AND expires > ?");
  s.bind(1, id).bind(2, now());
  if (s.step() != SQLITE_ROW) return std::nullopt;
  auto who = identity_for(read_db_, s.text(0), Via::kSession, "session:" + id);
  if (who) who->xsrf = xsrf_token_for_session(secret);
  return who;
}

void AccountStore::end_session(std::string_view secret) {
  if (secret.empty() || secret.size() > 128) return;
  {
    MutexLock admin(admin_mutex_);
    if (admin_sessions_.erase(sha256_hex(secret)) > 0) return;
  }
  MutexLock lock(mutex_);
  Stmt d(db_, "DELETE FROM auth_sessions WHERE id = ?");
  d.bind(1, sha256_hex(secret));
  if (d.step() != SQLITE_DONE)
    log::warn("account database: cannot end a session: " + std::string(sqlite3_errmsg(db_)));
}

// ---------------------------------------------------------------- tokens

Result<NewToken> AccountStore::create_token(std::string_view username, std::string_view name,
                                            std::optional<std::int64_t> lifetime_seconds) {
  NewToken nt;
  nt.token = std::string(kApiTokenPrefix) + util::random_hex(24);
  nt.record.id = util::random_hex(8);
  nt.record.username = std::string(username);
  nt.record.name = std::string(name);
  nt.record.created = now();
  if (lifetime_seconds) nt.record.expires = nt.record.created + *lifetime_seconds;
  MutexLock lock(mutex_);
  Tx tx(db_);
  if (!tx.ok()) return db_error(db_, "begin");
  {
    Stmt u(db_, "SELECT 1 FROM users WHERE username = ?");
    u.bind(1, username);
    if (u.step() != SQLITE_ROW) return Error::not_found("No such user: " + std::string(username));
    Stmt purge(db_, "DELETE FROM auth_tokens WHERE expires IS NOT NULL AND expires <= ?");
    purge.bind(1, nt.record.created);
    if (purge.step() != SQLITE_DONE) return db_error(db_, "purge tokens");
    Stmt n(db_, "SELECT COUNT(*) FROM auth_tokens WHERE username = ?");
    n.bind(1, username);
    if (n.step() != SQLITE_ROW) return db_error(db_, "count tokens");
    if (static_cast<std::size_t>(n.i64(0)) >= opts_.max_tokens_per_user)
      return Error::conflict("Too many API tokens (" + std::to_string(opts_.max_tokens_per_user) +
                             "); revoke some first");
    Stmt ins(db_,
             "INSERT INTO auth_tokens(id, token_hash, username, name, created, expires) "
             "VALUES(?, ?, ?, ?, ?, ?)");
    ins.bind(1, nt.record.id).bind(2, sha256_hex(nt.token)).bind(3, username).bind(4, name);
    ins.bind(5, nt.record.created);
    if (nt.record.expires)
      ins.bind(6, *nt.record.expires);
    else
      ins.bind_null(6);
    if (ins.step() != SQLITE_DONE) return db_error(db_, "create token");
  }
  if (!tx.commit()) return db_error(db_, "commit");
  return nt;
}

std::optional<Identity> AccountStore::token_identity(std::string_view token) {
  if (token.size() > 256 || token.rfind(kApiTokenPrefix, 0) != 0) return std::nullopt;
  MutexLock lock(read_mutex_);
  Stmt s(read_db_,
         "SELECT id, username FROM auth_tokens WHERE token_hash = ? AND (expires IS NULL OR "
         "expires > ?)");
  s.bind(1, sha256_hex(token)).bind(2, now());
  if (s.step() != SQLITE_ROW) return std::nullopt;
  return identity_for(read_db_, s.text(1), Via::kApiToken, "token:" + s.text(0));
}

Result<std::vector<TokenRecord>> AccountStore::list_tokens(std::string_view username) {
  MutexLock lock(mutex_);
  Stmt s(
      db_,
      "SELECT id, username, name, created, expires FROM auth_tokens "
      "WHERE username = ? AND (expires IS NULL OR expires > ?) ORDER BY created DESC, rowid DESC");
  s.bind(1, username).bind(2, now());
  std::vector<TokenRecord> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out.push_back(token_from(s));
  if (rc != SQLITE_DONE) return db_error(db_, "list tokens");
  return out;
}

Status AccountStore::revoke_token(std::string_view username, std::string_view id) {
  MutexLock lock(mutex_);
  Stmt d(db_, "DELETE FROM auth_tokens WHERE id = ? AND username = ?");
  d.bind(1, id).bind(2, username);
  if (d.step() != SQLITE_DONE) return db_error(db_, "revoke token");
  if (sqlite3_changes(db_) == 0) return Error::not_found("No such token: " + std::string(id));
  return ok_status();
}

// ---------------------------------------------------------------- watching

bool AccountStore::still_valid(const Identity& who) {
  switch (who.via) {
    case Via::kNone:
    case Via::kAdminToken:
      return true;
    case Via::kSession: {
      if (who.credential_id.rfind("session:", 0) != 0) return false;
      if (admin_session(who.credential_id.substr(8))) return who.username == "admin" && who.admin;
      MutexLock lock(read_mutex_);
      Stmt s(read_db_, "SELECT username FROM auth_sessions WHERE id = ? AND expires > ?");
      s.bind(1, std::string_view(who.credential_id).substr(8)).bind(2, now());
      int rc = s.step();
      if (rc != SQLITE_ROW) return rc != SQLITE_DONE;  // a database error is no proof of revocation
      return s.text(0) == who.username &&
             identity_for(read_db_, who.username, Via::kSession, "").has_value();
    }
    case Via::kApiToken: {
      if (who.credential_id.rfind("token:", 0) != 0) return false;
      MutexLock lock(read_mutex_);
      Stmt s(read_db_,
             "SELECT username FROM auth_tokens WHERE id = ? AND (expires IS NULL OR expires > ?)");
      s.bind(1, std::string_view(who.credential_id).substr(6)).bind(2, now());
      int rc = s.step();
      if (rc != SQLITE_ROW) return rc != SQLITE_DONE;
      return s.text(0) == who.username &&
             identity_for(read_db_, who.username, Via::kApiToken, "").has_value();
    }
  }
  return false;
}

std::int64_t AccountStore::data_version() {
  MutexLock lock(mutex_);
  Stmt s(db_, "PRAGMA data_version");
  if (s.step() != SQLITE_ROW) return -1;
  return s.i64(0);
}

// ---------------------------------------------------------------- authenticator

AccountAuthenticator::AccountAuthenticator(std::shared_ptr<AccountStore> store,
                                           std::string admin_token)
    : store_(std::move(store)), admin_(std::move(admin_token)) {}

std::optional<Identity> AccountAuthenticator::by_token(std::string_view token) const {
  if (admin_.matches(token)) return AdminTokenAuthenticator::admin_identity();
  return store_->token_identity(token);
}

std::optional<Identity> AccountAuthenticator::authenticate(const Credentials& creds) const {
  if (!creds.authorization_header.empty()) {
    auto t = token_from_authorization(creds.authorization_header);
    if (!t) return std::nullopt;
    return by_token(*t);
  }
  if (!creds.query_token.empty()) return by_token(creds.query_token);
  if (!creds.cookie_header.empty()) {
    auto v = cookie_value(creds.cookie_header, session_cookie_name(creds.secure));
    if (v && !v->empty()) return store_->session_identity(*v);
  }
  return std::nullopt;
}

bool AccountAuthenticator::still_valid(const Identity& who) const {
  return store_->still_valid(who);
}

}  // namespace skylab::auth
