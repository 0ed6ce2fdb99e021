#include "auth/share_store.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/mutex.hpp"
#include "common/sqlite_db.hpp"
#include "common/sqlite_stmt.hpp"
#include "common/util.hpp"
#include "metrics/metrics.hpp"

namespace skylab::auth {

namespace {

using sqlite::Stmt;

constexpr const char* kComponent = "shares";

const char* kSchemaV1 = R"sql(
CREATE TABLE IF NOT EXISTS auth_shares(
  id TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  path TEXT NOT NULL,
  grantee TEXT,
  role TEXT NOT NULL,
  created INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS auth_shares_by_owner ON auth_shares(owner, path);
CREATE INDEX IF NOT EXISTS auth_shares_by_grantee ON auth_shares(grantee);
)sql";

//! Version 2: a share names its item by id (FileStore::item_id), not only
//! by path. Old rows get "" and are bound (or dropped) by migrate_items.
const char* kSchemaV2 = "ALTER TABLE auth_shares ADD COLUMN item TEXT NOT NULL DEFAULT ''";

Error db_error(sqlite3* db, const std::string& what) {
  // Another process holds the write lock: temporary (503 with Retry-After).
  if (db) {
    int code = sqlite3_errcode(db) & 0xff;
    if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
      return Error::unavailable("share database is busy; try again");
  }
  return Error::internal("share database: " + what + ": " +
                         (db ? sqlite3_errmsg(db) : "no connection"));
}

constexpr const char* kColumns = "id, owner, path, grantee, role, created, item";

Share share_from(Stmt& s) {
  Share sh;
  sh.id = s.text(0);
  sh.owner = s.text(1);
  sh.path = s.text(2);
  if (!s.is_null(3)) sh.grantee = s.text(3);
  sh.role = parse_share_role(s.text(4)).value_or(ShareRole::kViewer);
  sh.created = s.i64(5);
  sh.item = s.text(6);
  return sh;
}

Result<std::vector<Share>> collect(sqlite3* db, Stmt& s) {
  std::vector<Share> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out.push_back(share_from(s));
  if (rc != SQLITE_DONE) return db_error(db, "list shares");
  return out;
}

}  // namespace

std::string_view share_role_name(ShareRole r) {
  return r == ShareRole::kEditor ? "editor" : "viewer";
}

std::optional<ShareRole> parse_share_role(std::string_view s) {
  if (s == "viewer") return ShareRole::kViewer;
  if (s == "editor") return ShareRole::kEditor;
  return std::nullopt;
}

std::optional<ShareRole> share_access(const Share& share, std::string_view who) {
  if (who.empty()) return std::nullopt;
  if (who == share.owner) return ShareRole::kEditor;
  if (share.is_link() || *share.grantee == who) return share.role;
  return std::nullopt;
}

ShareStore::~ShareStore() {
  if (db_) sqlite3_close_v2(db_);
}

std::int64_t ShareStore::now() const {
  return unix_seconds(*clock_);
}

Result<std::shared_ptr<ShareStore>> ShareStore::open(const std::string& path, const Clock& clock) {
  std::shared_ptr<ShareStore> s(new ShareStore());
  // Uncontended (not shared yet); held so that the analysis sees every db_ access locked.
  MutexLock setup_lock(s->mutex_);
  s->clock_ = &clock;
  static int busy_ms = 2000;  // callers run on worker threads
  sqlite::OpenOptions o;
  o.busy_handler = metrics::counting_busy_handler;
  o.busy_arg = &busy_ms;
  if (auto st = sqlite::open(path, o, &s->db_, db_error); !st.ok()) return st.error();
  // Version 2 runs kSchemaV1 again (all IF NOT EXISTS) and adds the column
  // only where it is missing, as it always has.
  auto v2 = [](sqlite3* db) -> Status {
    if (sqlite3_exec(db, kSchemaV1, nullptr, nullptr, nullptr) != SQLITE_OK)
      return db_error(db, "create tables");
    Stmt c(db, "SELECT COUNT(*) FROM pragma_table_info('auth_shares') WHERE name = 'item'");
    bool has_item = c.step() == SQLITE_ROW && c.i64(0) > 0;
    if (!has_item && sqlite3_exec(db, kSchemaV2, nullptr, nullptr, nullptr) != SQLITE_OK)
      return db_error(db, "add item ids");
    return ok_status();
  };
  if (auto st = sqlite::migrate(s->db_, kComponent, "the share tables",
                                {{1, kSchemaV1}, {2, nullptr, v2}}, db_error);
      !st.ok())
    return st.error();
  return s;
}

Result<Share> ShareStore::grant(std::string_view owner, std::string_view path,
                                std::string_view item, std::optional<std::string> grantee,
                                ShareRole role) {
  if (item.empty()) return Error::internal("share without an item id");
  if (!grantee) role = ShareRole::kViewer;
  MutexLock lock(mutex_);
  if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK)
    return db_error(db_, "begin");
  struct Rollback {
    sqlite3* db;
    bool done = false;
    ~Rollback() {
      if (!done) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    }
  } rb{db_};
  {
    // A share of another (deleted or replaced) item at this path is stale.
    Stmt d(db_, "DELETE FROM auth_shares WHERE owner = ? AND path = ? AND item != ?");
    d.bind(1, owner).bind(2, path).bind(3, item);
    if (d.step() != SQLITE_DONE) return db_error(db_, "drop stale shares");
  }
  std::optional<Share> existing;
  {
    std::string sql = std::string("SELECT ") + kColumns +
                      " FROM auth_shares WHERE owner = ? AND path = ? AND grantee IS ? LIMIT 1";
    Stmt q(db_, sql.c_str());
    q.bind(1, owner).bind(2, path);
    if (grantee)
      q.bind(3, *grantee);
    else
      q.bind_null(3);
    int rc = q.step();
    if (rc == SQLITE_ROW)
      existing = share_from(q);
    else if (rc != SQLITE_DONE)
      return db_error(db_, "find share");
  }
  Share sh;
  if (existing) {
    sh = *existing;
    sh.role = role;
    Stmt u(db_, "UPDATE auth_shares SET role = ? WHERE id = ?");
    u.bind(1, share_role_name(role)).bind(2, sh.id);
    if (u.step() != SQLITE_DONE) return db_error(db_, "update share");
  } else {
    Stmt n(db_, "SELECT COUNT(*) FROM auth_shares WHERE owner = ?");
    n.bind(1, owner);
    if (n.step() != SQLITE_ROW) return db_error(db_, "count shares");
    if (static_cast<std::size_t>(n.i64(0)) >= kMaxPerOwner)
      return Error::conflict("Too many shares (" + std::to_string(kMaxPerOwner) +
                             "); revoke some first");
    sh.id = util::random_hex(grantee ? 12 : 24);  // a link's id is its secret: longer
    sh.owner = std::string(owner);
    sh.path = std::string(path);
    sh.item = std::string(item);
    sh.grantee = std::move(grantee);
    sh.role = role;
    sh.created = now();
    Stmt ins(db_,
             "INSERT INTO auth_shares(id, owner, path, grantee, role, created, item) VALUES(?, ?, "
             "?, ?, ?, ?, ?)");
    ins.bind(1, sh.id).bind(2, sh.owner).bind(3, sh.path);
    if (sh.grantee)
      ins.bind(4, *sh.grantee);
    else
      ins.bind_null(4);
    ins.bind(5, share_role_name(sh.role)).bind(6, sh.created).bind(7, sh.item);
    if (ins.step() != SQLITE_DONE) return db_error(db_, "create share");
  }
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK)
    return db_error(db_, "commit");
  rb.done = true;
  return sh;
}

Result<Share> ShareStore::find(std::string_view id) {
  MutexLock lock(mutex_);
  std::string sql = std::string("SELECT ") + kColumns + " FROM auth_shares WHERE id = ?";
  Stmt q(db_, sql.c_str());
  q.bind(1, id);
  int rc = q.step();
  if (rc == SQLITE_ROW) return share_from(q);
  if (rc == SQLITE_DONE) return Error::not_found("No such share: " + std::string(id));
  return db_error(db_, "find share");
}

Result<std::vector<Share>> ShareStore::by_owner(std::string_view owner,
                                                std::optional<std::string_view> path) {
  MutexLock lock(mutex_);
  std::string sql = std::string("SELECT ") + kColumns + " FROM auth_shares WHERE owner = ?" +
                    (path ? " AND path = ?" : "") + " ORDER BY created DESC, rowid DESC";
  Stmt q(db_, sql.c_str());
  q.bind(1, owner);
  if (path) q.bind(2, *path);
  return collect(db_, q);
}

Result<std::vector<Share>> ShareStore::with_user(std::string_view grantee) {
  MutexLock lock(mutex_);
  std::string sql = std::string("SELECT ") + kColumns +
                    " FROM auth_shares WHERE grantee = ? ORDER BY created DESC, rowid DESC";
  Stmt q(db_, sql.c_str());
  q.bind(1, grantee);
  return collect(db_, q);
}

Status ShareStore::revoke(std::string_view owner, std::string_view id) {
  MutexLock lock(mutex_);
  Stmt d(db_, "DELETE FROM auth_shares WHERE id = ? AND owner = ?");
  d.bind(1, id).bind(2, owner);
  if (d.step() != SQLITE_DONE) return db_error(db_, "revoke share");
  if (sqlite3_changes(db_) == 0) return Error::not_found("No such share: " + std::string(id));
  return ok_status();
}

Status ShareStore::moved(std::string_view owner, std::string_view from, std::string_view to) {
  MutexLock lock(mutex_);
  std::string prefix = std::string(from) + "/";
  // Byte offsets (SQLite's substr counts characters in TEXT).
  Stmt u(db_,
         "UPDATE auth_shares SET path = ? || CAST(substr(CAST(path AS BLOB), ?) AS TEXT) WHERE "
         "owner = ? AND "
         "(path = ? OR substr(CAST(path AS BLOB), 1, ?) = CAST(? AS BLOB))");
  u.bind(1, to).bind(2, static_cast<std::int64_t>(from.size() + 1)).bind(3, owner).bind(4, from);
  u.bind(5, static_cast<std::int64_t>(prefix.size())).bind(6, prefix);
  if (u.step() != SQLITE_DONE) return db_error(db_, "move shares");
  return ok_status();
}

Status ShareStore::removed(std::string_view owner, std::string_view path) {
  MutexLock lock(mutex_);
  std::string prefix = std::string(path) + "/";
  Stmt d(db_,
         "DELETE FROM auth_shares WHERE owner = ? AND "
         "(path = ? OR substr(CAST(path AS BLOB), 1, ?) = CAST(? AS BLOB))");
  d.bind(1, owner).bind(2, path).bind(3, static_cast<std::int64_t>(prefix.size())).bind(4, prefix);
  if (d.step() != SQLITE_DONE) return db_error(db_, "end shares");
  return ok_status();
}

Result<std::size_t> ShareStore::migrate_items(
    const std::function<std::optional<std::string>(const std::string&, const std::string&)>&
        resolve) {
  std::vector<Share> unbound;
  {
    MutexLock lock(mutex_);
    std::string sql = std::string("SELECT ") + kColumns + " FROM auth_shares WHERE item = ''";
    Stmt q(db_, sql.c_str());
    auto all = collect(db_, q);
    if (!all.ok()) return all.error();
    unbound = std::move(all.value());
  }
  std::size_t dropped = 0;
  for (auto& sh : unbound) {
    auto item = resolve(sh.owner, sh.path);
    MutexLock lock(mutex_);
    if (item && !item->empty()) {
      Stmt u(db_, "UPDATE auth_shares SET item = ? WHERE id = ? AND item = ''");
      u.bind(1, *item).bind(2, sh.id);
      if (u.step() != SQLITE_DONE) return db_error(db_, "bind share");
    } else {
      Stmt d(db_, "DELETE FROM auth_shares WHERE id = ? AND item = ''");
      d.bind(1, sh.id);
      if (d.step() != SQLITE_DONE) return db_error(db_, "drop share");
      ++dropped;
    }
  }
  return dropped;
}

}  // namespace skylab::auth
