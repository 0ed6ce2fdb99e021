#include "auth/audit_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/sqlite_db.hpp"
#include "common/sqlite_stmt.hpp"

namespace skylab::auth {

namespace {
using sqlite::Stmt;
constexpr const char* kComponent = "audit";
constexpr const char* kSchemaV1 =
    "CREATE TABLE IF NOT EXISTS audit_log(id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER "
    "NOT NULL, "
    "actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL);";
constexpr std::size_t kMaxField = 256;

Error db_error(sqlite3* db, const std::string& what) {
  return Error::unavailable("audit log: " + what + ": " +
                            (db ? sqlite3_errmsg(db) : "out of memory"));
}
std::string_view cut(std::string_view s) {
  return s.substr(0, kMaxField);
}
}  // namespace

Result<std::shared_ptr<AuditLog>> AuditLog::open(const std::string& path, const Clock& clock) {
  std::shared_ptr<AuditLog> a(new AuditLog());
  // Uncontended (not shared yet); held so that the analysis sees every db_ access locked.
  MutexLock setup_lock(a->mu_);
  a->clock_ = &clock;
  if (auto st = sqlite::open(path, {}, &a->db_, db_error); !st.ok()) return st.error();
  if (auto st = sqlite::migrate(a->db_, kComponent, "the audit log", {{1, kSchemaV1}}, db_error);
      !st.ok())
    return st.error();
  return a;
}

AuditLog::~AuditLog() {
  if (db_) sqlite3_close(db_);
}

void AuditLog::record(std::string_view actor, std::string_view action, std::string_view target,
                      std::string_view detail) {
  MutexLock lock(mu_);
  Stmt s(db_, "INSERT INTO audit_log(time, actor, action, target, detail) VALUES(?,?,?,?,?)");
  s.bind(1, unix_seconds(*clock_))
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
