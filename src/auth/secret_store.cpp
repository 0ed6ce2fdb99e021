#include "auth/secret_store.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <stdexcept>

#include "common/mutex.hpp"
#include "common/sqlite_db.hpp"
#include "common/sqlite_stmt.hpp"

namespace skylab::auth {

namespace {

using sqlite::Stmt;

constexpr const char* kComponent = "secrets";
constexpr std::size_t kKeyBytes = crypto_aead_xchacha20poly1305_ietf_KEYBYTES;
constexpr std::size_t kNonceBytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;

const char* kSchemaV1 = R"sql(
CREATE TABLE IF NOT EXISTS auth_secrets(
  owner TEXT NOT NULL,
  name TEXT NOT NULL,
  nonce BLOB NOT NULL,
  sealed BLOB NOT NULL,
  updated INTEGER NOT NULL,
  PRIMARY KEY(owner, name));
CREATE TABLE IF NOT EXISTS auth_secret_grants(
  owner TEXT NOT NULL,
  name TEXT NOT NULL,
  path TEXT NOT NULL,
  PRIMARY KEY(owner, name, path));
)sql";

Error db_error(sqlite3* db, const std::string& what) {
  if (db) {
    int code = sqlite3_errcode(db) & 0xff;
    if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
      return Error::unavailable("secret database is busy; try again");
  }
  return Error::internal("secret database: " + what + ": " +
                         (db ? sqlite3_errmsg(db) : "no connection"));
}

//! Associated data: a sealed value only opens for the owner and name it was sealed for.
std::string associated(std::string_view owner, std::string_view name) {
  std::string ad = "skylab-secret-v1";
  ad.push_back('\0');
  ad.append(owner);
  ad.push_back('\0');
  ad.append(name);
  return ad;
}

Result<std::string> load_or_create_key(const std::string& path) {
  if (sodium_init() < 0) return Error::internal("libsodium failed to initialize");
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0 && errno == ENOENT) {
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
      return Error::unavailable("cannot create secrets key " + path + ": " + std::strerror(errno));
    std::string key(kKeyBytes, '\0');
    randombytes_buf(key.data(), key.size());
    bool ok =
        ::write(fd, key.data(), key.size()) == static_cast<ssize_t>(key.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) {
      ::unlink(path.c_str());
      return Error::unavailable("cannot write secrets key " + path);
    }
    return key;
  }
  if (fd < 0)
    return Error::unavailable("cannot open secrets key " + path + ": " + std::strerror(errno));
  struct stat st {};
  std::string key(kKeyBytes, '\0');
  bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
            st.st_size == static_cast<off_t>(kKeyBytes) &&
            ::read(fd, key.data(), key.size()) == static_cast<ssize_t>(key.size());
  if (ok && (st.st_mode & 077) != 0) ::fchmod(fd, 0600);  // never readable by others
  ::close(fd);
  if (!ok)
    return Error::unavailable("secrets key " + path + " is not a " + std::to_string(kKeyBytes) +
                              "-byte file");
  return key;
}

}  // namespace

bool SecretStore::valid_name(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; };
  if (!alpha(name[0])) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return alpha(c) || (c >= '0' && c <= '9'); });
}

Result<std::string> SecretStore::normalize_path(std::string_view path) {
  while (!path.empty() && path.front() == '/') path.remove_prefix(1);
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  if (path.empty()) return Error::bad_request("A notebook path is required");
  if (path.size() > kMaxPathBytes) return Error::bad_request("The notebook path is too long");
  if (path.find('\0') != std::string_view::npos) return Error::bad_request("Bad notebook path");
  std::size_t pos = 0;
  while (pos <= path.size()) {
    auto slash = path.find('/', pos);
    auto part =
        path.substr(pos, slash == std::string_view::npos ? std::string_view::npos : slash - pos);
    if (part.empty() || part == "." || part == "..") return Error::bad_request("Bad notebook path");
    if (slash == std::string_view::npos) break;
    pos = slash + 1;
  }
  return std::string(path);
}

SecretStore::~SecretStore() {
  if (db_) sqlite3_close_v2(db_);
  sodium_memzero(key_.data(), key_.size());
}

std::int64_t SecretStore::now() const {
  return unix_seconds(*clock_);
}

Result<std::shared_ptr<SecretStore>> SecretStore::open(const std::string& db_path,
                                                       const std::string& key_path,
                                                       const Clock& clock) {
  auto key = load_or_create_key(key_path);
  if (!key.ok()) return key.error();
  std::shared_ptr<SecretStore> s(new SecretStore());
  // Uncontended (not shared yet); held so that the analysis sees every db_ access locked.
  MutexLock setup_lock(s->mutex_);
  s->clock_ = &clock;
  s->key_ = std::move(key).value();
  sqlite::OpenOptions o;
  o.secure_delete = true;  // a replaced or deleted value's old ciphertext is zeroed in the file
  if (auto st = sqlite::open(db_path, o, &s->db_, db_error); !st.ok()) return st.error();
  if (auto st =
          sqlite::migrate(s->db_, kComponent, "the secret tables", {{1, kSchemaV1}}, db_error);
      !st.ok())
    return st.error();
  return s;
}

Result<std::vector<SecretInfo>> SecretStore::list(std::string_view owner) {
  MutexLock lock(mutex_);
  std::map<std::string, SecretInfo> by_name;
  {
    Stmt q(db_, "SELECT name, updated FROM auth_secrets WHERE owner = ?");
    q.bind(1, owner);
    int rc;
    while ((rc = q.step()) == SQLITE_ROW) by_name[q.text(0)] = SecretInfo{q.text(0), {}, q.i64(1)};
    if (rc != SQLITE_DONE) return db_error(db_, "list secrets");
  }
  {
    Stmt q(db_, "SELECT name, path FROM auth_secret_grants WHERE owner = ? ORDER BY path");
    q.bind(1, owner);
    int rc;
    while ((rc = q.step()) == SQLITE_ROW) {
      auto it = by_name.find(q.text(0));
      if (it != by_name.end()) it->second.grants.push_back(q.text(1));
    }
    if (rc != SQLITE_DONE) return db_error(db_, "list grants");
  }
  std::vector<SecretInfo> out;
  out.reserve(by_name.size());
  for (auto& [_, info] : by_name) out.push_back(std::move(info));
  return out;
}

Status SecretStore::put(std::string_view owner, std::string_view name, std::string_view value) {
  if (!valid_name(name))
    return Error::bad_request(
        "A secret's name is a letter or '_' then up to 127 letters, digits or '_'");
  if (value.size() > kMaxValueBytes)
    return Error::too_large("A secret's value is at most " + std::to_string(kMaxValueBytes / 1024) +
                            " KiB");
  std::string nonce(kNonceBytes, '\0');
  randombytes_buf(nonce.data(), nonce.size());
  std::string sealed(value.size() + crypto_aead_xchacha20poly1305_ietf_ABYTES, '\0');
  unsigned long long sealed_len = 0;
  auto ad = associated(owner, name);
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      reinterpret_cast<unsigned char*>(sealed.data()), &sealed_len,
      reinterpret_cast<const unsigned char*>(value.data()), value.size(),
      reinterpret_cast<const unsigned char*>(ad.data()), ad.size(), nullptr,
      reinterpret_cast<const unsigned char*>(nonce.data()),
      reinterpret_cast<const unsigned char*>(key_.data()));
  sealed.resize(sealed_len);
  MutexLock lock(mutex_);
  sqlite::Tx tx(db_);
  if (!tx.ok()) return db_error(db_, "begin");
  bool exists = false;
  {
    Stmt q(db_, "SELECT 1 FROM auth_secrets WHERE owner = ? AND name = ?");
    q.bind(1, owner).bind(2, name);
    exists = q.step() == SQLITE_ROW;
  }
  if (!exists) {
    Stmt n(db_, "SELECT COUNT(*) FROM auth_secrets WHERE owner = ?");
    n.bind(1, owner);
    if (n.step() != SQLITE_ROW) return db_error(db_, "count secrets");
    if (static_cast<std::size_t>(n.i64(0)) >= kMaxPerOwner)
      return Error::conflict("Too many secrets (at most " + std::to_string(kMaxPerOwner) +
                             "); delete some first");
  }
  Stmt u(db_,
         "INSERT INTO auth_secrets(owner, name, nonce, sealed, updated) VALUES(?, ?, ?, ?, ?) "
         "ON CONFLICT(owner, name) DO UPDATE SET nonce = excluded.nonce, sealed = excluded.sealed, "
         "updated = excluded.updated");
  u.bind(1, owner).bind(2, name).bind_blob(3, nonce).bind_blob(4, sealed).bind(5, now());
  if (u.step() != SQLITE_DONE) return db_error(db_, "store secret");
  if (!tx.commit()) return db_error(db_, "commit");
  return ok_status();
}

Status SecretStore::remove(std::string_view owner, std::string_view name) {
  if (!valid_name(name)) return Error::not_found("No such secret");
  MutexLock lock(mutex_);
  sqlite::Tx tx(db_);
  if (!tx.ok()) return db_error(db_, "begin");
  Stmt d(db_, "DELETE FROM auth_secrets WHERE owner = ? AND name = ?");
  d.bind(1, owner).bind(2, name);
  if (d.step() != SQLITE_DONE) return db_error(db_, "delete secret");
  if (sqlite3_changes(db_) == 0) return Error::not_found("No such secret");
  Stmt g(db_, "DELETE FROM auth_secret_grants WHERE owner = ? AND name = ?");
  g.bind(1, owner).bind(2, name);
  if (g.step() != SQLITE_DONE) return db_error(db_, "delete grants");
  if (!tx.commit()) return db_error(db_, "commit");
  return ok_status();
}

Status SecretStore::set_grant(std::string_view owner, std::string_view name, std::string_view path,
                              bool granted) {
  if (!valid_name(name)) return Error::not_found("No such secret");
  auto p = normalize_path(path);
  if (!p.ok()) return p.error();
  MutexLock lock(mutex_);
  sqlite::Tx tx(db_);
  if (!tx.ok()) return db_error(db_, "begin");
  {
    Stmt q(db_, "SELECT 1 FROM auth_secrets WHERE owner = ? AND name = ?");
    q.bind(1, owner).bind(2, name);
    if (q.step() != SQLITE_ROW) return Error::not_found("No such secret");
  }
  if (granted) {
    Stmt n(db_, "SELECT COUNT(*) FROM auth_secret_grants WHERE owner = ? AND name = ?");
    n.bind(1, owner).bind(2, name);
    if (n.step() != SQLITE_ROW) return db_error(db_, "count grants");
    if (static_cast<std::size_t>(n.i64(0)) >= kMaxGrantsPerSecret)
      return Error::conflict("Too many notebooks have access to this secret");
    Stmt i(db_, "INSERT OR IGNORE INTO auth_secret_grants(owner, name, path) VALUES(?, ?, ?)");
    i.bind(1, owner).bind(2, name).bind(3, p.value());
    if (i.step() != SQLITE_DONE) return db_error(db_, "grant");
  } else {
    Stmt d(db_, "DELETE FROM auth_secret_grants WHERE owner = ? AND name = ? AND path = ?");
    d.bind(1, owner).bind(2, name).bind(3, p.value());
    if (d.step() != SQLITE_DONE) return db_error(db_, "revoke");
  }
  if (!tx.commit()) return db_error(db_, "commit");
  return ok_status();
}

namespace {
//! Whether `path` is `top` or below it; both normalized.
bool at_or_below(std::string_view path, std::string_view top) {
  return path == top || (path.size() > top.size() && path.compare(0, top.size(), top) == 0 &&
                         path[top.size()] == '/');
}
}  // namespace

Status SecretStore::moved(std::string_view owner, std::string_view from, std::string_view to) {
  auto f = normalize_path(from);
  auto t = normalize_path(to);
  if (!f.ok() || !t.ok() || f.value() == t.value()) return ok_status();
  MutexLock lock(mutex_);
  sqlite::Tx tx(db_);
  if (!tx.ok()) return db_error(db_, "begin");
  std::vector<std::pair<std::string, std::string>> rows;  // name, path
  {
    Stmt q(db_, "SELECT name, path FROM auth_secret_grants WHERE owner = ?");
    q.bind(1, owner);
    int rc;
    while ((rc = q.step()) == SQLITE_ROW)
      if (at_or_below(q.text(1), f.value())) rows.emplace_back(q.text(0), q.text(1));
    if (rc != SQLITE_DONE) return db_error(db_, "list grants");
  }
  for (auto& [name, path] : rows) {
    std::string now = t.value() + path.substr(f->size());
    Stmt d(db_, "DELETE FROM auth_secret_grants WHERE owner = ? AND name = ? AND path = ?");
    d.bind(1, owner).bind(2, name).bind(3, path);
    if (d.step() != SQLITE_DONE) return db_error(db_, "move grant");
    if (now.size() > kMaxPathBytes) continue;
    Stmt i(db_, "INSERT OR IGNORE INTO auth_secret_grants(owner, name, path) VALUES(?, ?, ?)");
    i.bind(1, owner).bind(2, name).bind(3, now);
    if (i.step() != SQLITE_DONE) return db_error(db_, "move grant");
  }
  if (!tx.commit()) return db_error(db_, "commit");
  return ok_status();
}

Status SecretStore::removed(std::string_view owner, std::string_view path) {
  auto p = normalize_path(path);
  if (!p.ok()) return ok_status();
  MutexLock lock(mutex_);
  std::vector<std::pair<std::string, std::string>> rows;
  {
    Stmt q(db_, "SELECT name, path FROM auth_secret_grants WHERE owner = ?");
    q.bind(1, owner);
    int rc;
    while ((rc = q.step()) == SQLITE_ROW)
      if (at_or_below(q.text(1), p.value())) rows.emplace_back(q.text(0), q.text(1));
    if (rc != SQLITE_DONE) return db_error(db_, "list grants");
  }
  sqlite::Tx tx(db_);
  if (!tx.ok()) return db_error(db_, "begin");
  for (auto& [name, gp] : rows) {
    Stmt d(db_, "DELETE FROM auth_secret_grants WHERE owner = ? AND name = ? AND path = ?");
    d.bind(1, owner).bind(2, name).bind(3, gp);
    if (d.step() != SQLITE_DONE) return db_error(db_, "drop grant");
  }
  if (!tx.commit()) return db_error(db_, "commit");
  return ok_status();
}

Result<SecretStore::Read> SecretStore::read(std::string_view owner, std::string_view name,
                                            const std::vector<std::string>& paths) {
  Read out;
  if (!valid_name(name)) return out;  // kNotFound
  std::string nonce, sealed;
  MutexLock lock(mutex_);
  {
    Stmt q(db_, "SELECT nonce, sealed FROM auth_secrets WHERE owner = ? AND name = ?");
    q.bind(1, owner).bind(2, name);
    int rc = q.step();
    if (rc == SQLITE_DONE) return out;
    if (rc != SQLITE_ROW) return db_error(db_, "read secret");
    nonce = q.blob(0);
    sealed = q.blob(1);
  }
  out.access = Access::kNoAccess;
  if (paths.empty()) return out;
  for (const auto& raw : paths) {
    auto p = normalize_path(raw);
    if (!p.ok()) return out;
    Stmt g(db_, "SELECT 1 FROM auth_secret_grants WHERE owner = ? AND name = ? AND path = ?");
    g.bind(1, owner).bind(2, name).bind(3, p.value());
    int rc = g.step();
    if (rc == SQLITE_DONE) return out;
    if (rc != SQLITE_ROW) return db_error(db_, "read grant");
  }
  if (nonce.size() != kNonceBytes || sealed.size() < crypto_aead_xchacha20poly1305_ietf_ABYTES)
    return Error::internal("secret " + std::string(name) + " is damaged");
  std::string value(sealed.size() - crypto_aead_xchacha20poly1305_ietf_ABYTES, '\0');
  unsigned long long len = 0;
  auto ad = associated(owner, name);
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(value.data()), &len, nullptr,
          reinterpret_cast<const unsigned char*>(sealed.data()), sealed.size(),
          reinterpret_cast<const unsigned char*>(ad.data()), ad.size(),
          reinterpret_cast<const unsigned char*>(nonce.data()),
          reinterpret_cast<const unsigned char*>(key_.data())) != 0)
    return Error::internal("secret " + std::string(name) +
                           " does not decrypt (another server key?)");
  value.resize(len);
  out.access = Access::kGranted;
  out.value = std::move(value);
  return out;
}

}  // namespace skylab::auth
