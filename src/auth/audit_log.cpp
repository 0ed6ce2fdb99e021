#include "auth/audit_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/sqlite_stmt.hpp"

namespace skylab::auth {

namespace {
using sqlite::Stmt;
constexpr int kSchemaVersion = 1;
constexpr const char* kComponent = "audit";
constexpr std::size_t kMaxField = 256;

Error db_error(sqlite3* db, const std::string& what) {
  return Error::unavailable("audit log: " + what + ": " +
                            (db ? sqlite3_errmsg(db) : "out of memory"));
}
std::string_view cut(std::string_view s) {
  return s.substr(0, kMaxField);
}
}  // namespace

Result<std::shared_ptr<AuditLog>> AuditLog::open(const std::string& path,
                                                 std::function<std::int64_t()> now) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0)
    ::close(fd);
  else if (errno != EEXIST)
    return Error::unavailable("cannot create " + path + ": " + std::strerror(errno));
  std::shared_ptr<AuditLog> a(new AuditLog());
  // Uncontended (not shared yet); held so that the analysis sees every db_ access locked.
  MutexLock setup_lock(a->mu_);
  a->now_ = now ? std::move(now) : [] { return static_cast<std::int64_t>(std::time(nullptr)); };
  if (sqlite3_open_v2(path.c_str(), &a->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK)
    return db_error(a->db_, "open " + path);
  sqlite3_busy_timeout(a->db_, 2000);
  const char* setup =
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
      "CREATE TABLE IF NOT EXISTS auth_schema(component TEXT PRIMARY KEY, version INTEGER NOT "
      "NULL);";
  if (sqlite3_exec(a->db_, setup, nullptr, nullptr, nullptr) != SQLITE_OK)
    return db_error(a->db_, "set up");
  sqlite::Tx tx(a->db_);
  if (!tx.ok()) return db_error(a->db_, "begin");
  int version = 0;
  {
    Stmt q(a->db_, "SELECT version FROM auth_schema WHERE component = ?");
    q.bind(1, std::string_view(kComponent));
    if (q.step() == SQLITE_ROW) version = static_cast<int>(q.i64(0));
  }
  if (version > kSchemaVersion)
    return Error::unavailable("the audit log was written by a newer Skylab (schema " +
                              std::to_string(version) + ")");
  if (version < kSchemaVersion) {
    const char* v1 =
        "CREATE TABLE IF NOT EXISTS audit_log(id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER "
        "NOT NULL, "
        "actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL);";
    if (sqlite3_exec(a->db_, v1, nullptr, nullptr, nullptr) != SQLITE_OK)
      return db_error(a->db_, "create tables");
    Stmt v(a->db_, "INSERT OR REPLACE INTO auth_schema(component, version) VALUES(?, ?)");
    v.bind(1, std::string_view(kComponent)).bind(2, std::int64_t{kSchemaVersion});
    if (v.step() != SQLITE_DONE) return db_error(a->db_, "record the schema version");
  }
  if (!tx.commit()) return db_error(a->db_, "commit");
  return a;
}

AuditLog::~AuditLog() {
  if (db_) sqlite3_close(db_);
}

void AuditLog::record(std::string_view actor, std::string_view action, std::string_view target,
                      std::string_view detail) {
  MutexLock lock(mu_);
  Stmt s(db_, "INSERT INTO audit_log(time, actor, action, target, detail) VALUES(?,?,?,?,?)");
  s.bind(1, now_())
      .bind(2, cut(actor))
      .bind(3, cut(action))
      .bind(4, cut(target))
      .bind(5, cut(detail));
  if (s.step() != SQLITE_DONE)
    log::warn("audit log: cannot record '" + std::string(cut(action)) +
              "': " + sqlite3_errmsg(db_));
}

Result<std::vector<AuditEntry>> AuditLog::recent(std::size_t limit, std::int64_t before) {
  limit = std::clamp<std::size_t>(limit, 1, 1000);
  MutexLock lock(mu_);
  Stmt q(db_,
         "SELECT id, time, actor, action, target, detail FROM audit_log WHERE (? <= 0 OR id < ?) "
         "ORDER BY id DESC LIMIT ?");
  q.bind(1, before).bind(2, before).bind(3, static_cast<std::int64_t>(limit));
  std::vector<AuditEntry> out;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW)
    out.push_back(AuditEntry{q.i64(0), q.i64(1), q.text(2), q.text(3), q.text(4), q.text(5)});
  if (rc != SQLITE_DONE) return db_error(db_, "read");
  return out;
}

}  // namespace skylab::auth
