// MetadataStore on SQLite (WAL). One connection, guarded by a mutex.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/mutex.hpp"
#include "common/sqlite_db.hpp"
#include "common/sqlite_stmt.hpp"
#include "drive/codec.hpp"
#include "drive/metadata_store.hpp"
#include "metrics/metrics.hpp"

namespace skylab::drive {

std::string_view revision_kind_name(RevisionKind k) {
  return k == RevisionKind::kCheckpoint ? "checkpoint" : "save";
}

namespace {

using sqlite::Stmt;

constexpr int kSchemaVersion = 2;

const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blobs(
  sha256 TEXT PRIMARY KEY,
  size INTEGER NOT NULL,
  data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS revisions(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  owner TEXT NOT NULL,
  path TEXT NOT NULL,
  created_us INTEGER NOT NULL,
  size INTEGER NOT NULL,
  sha256 TEXT NOT NULL REFERENCES blobs(sha256),
  kind TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS revisions_by_path ON revisions(owner, path, created_us);
CREATE INDEX IF NOT EXISTS revisions_by_blob ON revisions(sha256);
)sql";

using Clock = std::chrono::system_clock;

std::int64_t to_us(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}
Clock::time_point from_us(std::int64_t us) {
  return Clock::time_point(
      std::chrono::duration_cast<Clock::duration>(std::chrono::microseconds(us)));
}

class SqliteMetadataStore final : public MetadataStore {
 public:
  explicit SqliteMetadataStore(sqlite3* db) : db_(db) {}
  ~SqliteMetadataStore() override { sqlite3_close_v2(db_); }

  Status init() {
    MutexLock lock(mu_);
    if (auto st = exec(kSchema); !st.ok()) return st;
    // Schema 2: revisions record who saved them.
    if (Stmt probe(db_, "SELECT author FROM revisions LIMIT 0"); !probe.ok()) {
      if (auto st = exec("ALTER TABLE revisions ADD COLUMN author TEXT NOT NULL DEFAULT ''");
          !st.ok())
        return st;
      if (auto st = exec("UPDATE meta SET value='2' WHERE key='schema_version'"); !st.ok())
        return st;
    }
    Stmt get(db_, "SELECT value FROM meta WHERE key='schema_version'");
    if (!get.ok()) return db_error("read schema version");
    if (get.step() == SQLITE_ROW) {
      if (std::stoi(get.text(0)) > kSchemaVersion)
        return Error::internal("The Drive database was written by a newer Skylab (schema " +
                               get.text(0) + ")");
    } else {
      Stmt put(db_, "INSERT INTO meta(key, value) VALUES('schema_version', ?1)");
      put.bind(1, std::to_string(kSchemaVersion));
      if (put.step() != SQLITE_DONE) return db_error("write schema version");
    }
    return ok_status();
  }

  Result<RevisionInfo> add_revision(const std::string& owner, const std::string& author,
                                    const std::string& path, Clock::time_point at,
                                    RevisionKind kind, std::string_view bytes) override {
    std::string hash = sha256_hex(bytes);  // outside the lock
    MutexLock lock(mu_);
    {
      Stmt last(db_,
                "SELECT id, created_us, size, sha256, kind, author FROM revisions WHERE owner=?1 "
                "AND path=?2 "
                "ORDER BY created_us DESC, id DESC LIMIT 1");
      last.bind(1, owner).bind(2, path);
      if (last.step() == SQLITE_ROW && last.text(3) == hash) return row_info(last, path);
    }
    if (auto st = exec("BEGIN IMMEDIATE"); !st.ok()) return st.error();
    auto rollback = [&](const char* what) REQUIRES(mu_) {
      Error e = db_error(what);
      (void)exec("ROLLBACK");  // the error that got us here is the one to report
      return e;
    };
    Stmt blob(db_, "INSERT OR IGNORE INTO blobs(sha256, size, data) VALUES(?1, ?2, ?3)");
    blob.bind(1, hash).bind(2, static_cast<std::int64_t>(bytes.size())).bind_blob(3, bytes);
    if (blob.step() != SQLITE_DONE) return rollback("store revision");
    Stmt rev(db_,
             "INSERT INTO revisions(owner, path, created_us, size, sha256, kind, author) "
             "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    rev.bind(1, owner)
        .bind(2, path)
        .bind(3, to_us(at))
        .bind(4, static_cast<std::int64_t>(bytes.size()));
    rev.bind(5, hash).bind(6, revision_kind_name(kind)).bind(7, author);
    if (rev.step() != SQLITE_DONE) return rollback("store revision");
    std::int64_t id = sqlite3_last_insert_rowid(db_);
    if (auto st = exec("COMMIT"); !st.ok()) {
      (void)exec("ROLLBACK");  // the error that got us here is the one to report
      return st.error();
    }
    RevisionInfo info;
    info.id = id;
    info.path = path;
    info.created = from_us(to_us(at));
    info.size = bytes.size();
    info.sha256 = hash;
    info.kind = kind;
    info.author = author;
    return info;
  }

  Result<std::vector<RevisionInfo>> list_revisions(const std::string& owner,
                                                   const std::string& path) override {
    MutexLock lock(mu_);
    Stmt q(db_,
           "SELECT id, created_us, size, sha256, kind, author FROM revisions WHERE owner=?1 AND "
           "path=?2 "
           "ORDER BY created_us, id");
    if (!q.ok()) return db_error("list revisions");
    q.bind(1, owner).bind(2, path);
    std::vector<RevisionInfo> out;
    int rc;
    while ((rc = q.step()) == SQLITE_ROW) out.push_back(row_info(q, path));
    if (rc != SQLITE_DONE) return db_error("list revisions");
    return out;
  }

  Result<RevisionInfo> get_revision(const std::string& owner, const std::string& path,
                                    std::int64_t id) override {
    MutexLock lock(mu_);
    Stmt q(db_,
           "SELECT id, created_us, size, sha256, kind, author FROM revisions WHERE owner=?1 AND "
           "path=?2 AND id=?3");
    q.bind(1, owner).bind(2, path).bind(3, id);
    int rc = q.step();
    if (rc == SQLITE_ROW) return row_info(q, path);
    if (rc == SQLITE_DONE)
      return Error::not_found("Checkpoint does not exist: " + path + "@" + std::to_string(id));
    return db_error("read revision");
  }

  Result<std::string> revision_bytes(const std::string& owner, const std::string& path,
                                     std::int64_t id) override {
    MutexLock lock(mu_);
    Stmt q(db_,
           "SELECT b.data FROM revisions r JOIN blobs b ON b.sha256 = r.sha256 "
           "WHERE r.owner=?1 AND r.path=?2 AND r.id=?3");
    q.bind(1, owner).bind(2, path).bind(3, id);
    int rc = q.step();
    if (rc == SQLITE_ROW) return q.blob(0);
    if (rc == SQLITE_DONE)
      return Error::not_found("Checkpoint does not exist: " + path + "@" + std::to_string(id));
    return db_error("read revision");
  }

  Status delete_revisions(const std::string& owner, const std::vector<std::int64_t>& ids) override {
    if (ids.empty()) return ok_status();
    MutexLock lock(mu_);
    if (auto st = exec("BEGIN IMMEDIATE"); !st.ok()) return st;
    for (auto id : ids) {
      Stmt q(db_, "DELETE FROM revisions WHERE owner=?1 AND id=?2");
      q.bind(1, owner).bind(2, id);
      if (q.step() != SQLITE_DONE) {
        Error e = db_error("delete revision");
        (void)exec("ROLLBACK");  // the error that got us here is the one to report
        return e;
      }
    }
    if (auto st = drop_orphans(); !st.ok()) {
      (void)exec("ROLLBACK");  // the error that got us here is the one to report
      return st;
    }
    return exec("COMMIT");
  }

  Status rename_path(const std::string& owner, const std::string& from,
                     const std::string& to) override {
    MutexLock lock(mu_);
    // substr/length count characters for TEXT on both sides, consistently.
    Stmt q(db_,
           "UPDATE revisions SET path = ?3 || substr(path, length(?2) + 1) "
           "WHERE owner=?1 AND (path = ?2 OR substr(path, 1, length(?2) + 1) = ?2 || '/')");
    q.bind(1, owner).bind(2, from).bind(3, to);
    if (q.step() != SQLITE_DONE) return db_error("rename revisions");
    return ok_status();
  }

  Status delete_path(const std::string& owner, const std::string& path) override {
    MutexLock lock(mu_);
    if (auto st = exec("BEGIN IMMEDIATE"); !st.ok()) return st;
    Stmt q(db_,
           "DELETE FROM revisions WHERE owner=?1 AND (path = ?2 OR substr(path, 1, length(?2) + 1) "
           "= ?2 || '/')");
    q.bind(1, owner).bind(2, path);
    if (q.step() != SQLITE_DONE) {
      Error e = db_error("delete revisions");
      (void)exec("ROLLBACK");  // the error that got us here is the one to report
      return e;
    }
    if (auto st = drop_orphans(); !st.ok()) {
      (void)exec("ROLLBACK");  // the error that got us here is the one to report
      return st;
    }
    return exec("COMMIT");
  }

  Result<std::vector<std::pair<std::string, std::string>>> revised_paths() override {
    MutexLock lock(mu_);
    Stmt q(db_, "SELECT DISTINCT owner, path FROM revisions");
    std::vector<std::pair<std::string, std::string>> out;
    int rc;
    while ((rc = q.step()) == SQLITE_ROW) out.emplace_back(q.text(0), q.text(1));
    if (rc != SQLITE_DONE) return db_error("list revised paths");
    return out;
  }

 private:
  static RevisionInfo row_info(Stmt& q, const std::string& path) {
    RevisionInfo r;
    r.id = q.i64(0);
    r.path = path;
    r.created = from_us(q.i64(1));
    r.size = static_cast<std::uint64_t>(q.i64(2));
    r.sha256 = q.text(3);
    r.kind = q.text(4) == "checkpoint" ? RevisionKind::kCheckpoint : RevisionKind::kSave;
    r.author = q.text(5);
    return r;
  }

  Status drop_orphans() REQUIRES(mu_) {
    if (sqlite3_exec(db_, "DELETE FROM blobs WHERE sha256 NOT IN (SELECT sha256 FROM revisions)",
                     nullptr, nullptr, nullptr) != SQLITE_OK)
      return db_error("delete unused revision data");
    return ok_status();
  }

  Status exec(const char* sql) REQUIRES(mu_) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string m = err ? err : "unknown error";
      sqlite3_free(err);
      return error_for(sqlite3_extended_errcode(db_), std::string("Drive database: ") + m);
    }
    return ok_status();
  }

  Error db_error(const char* what) REQUIRES(mu_) {
    return error_for(sqlite3_extended_errcode(db_),
                     std::string("Drive database: cannot ") + what + ": " + sqlite3_errmsg(db_));
  }

  static Error error_for(int code, std::string message) {
    if ((code & 0xff) == SQLITE_FULL) return Error::insufficient_storage(std::move(message));
    if ((code & 0xff) == SQLITE_BUSY) return Error::unavailable(std::move(message));
    return Error::internal(std::move(message));
  }

  Mutex mu_;
  sqlite3* db_ GUARDED_BY(mu_);
};

}  // namespace

Result<std::unique_ptr<MetadataStore>> open_sqlite_metadata_store(const std::string& file) {
  // Revisions hold users' content: the database is private to the server's user.
  int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0) ::close(fd);
  ::chmod(file.c_str(), 0600);
  // Its own versioning (meta.schema_version), older than auth_schema: kept as it is on disk.
  sqlite::OpenOptions o;
  o.create_private = false;  // done above, and chmod'ed if it already existed
  o.create = true;
  o.full_mutex = false;  // the store serialises on its own mutex
  o.busy_handler = metrics::counting_busy_handler;
  static int busy_ms = 10000;
  o.busy_arg = &busy_ms;
  o.foreign_keys = true;
  sqlite3* db = nullptr;
  auto err = [](sqlite3* h, const std::string& what) {
    return Error::internal("Drive database: " + what + ": " +
                           (h ? sqlite3_errmsg(h) : "out of memory"));
  };
  if (auto st = sqlite::open(file, o, &db, err); !st.ok()) return st.error();
  auto store = std::make_unique<SqliteMetadataStore>(db);
  if (auto st = store->init(); !st.ok()) return st.error();
  return std::unique_ptr<MetadataStore>(std::move(store));
}

}  // namespace skylab::drive
