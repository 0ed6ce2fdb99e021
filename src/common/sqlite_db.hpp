// Opening a Skylab SQLite database and bringing its schema up to date: one
// way for every store (accounts, shares, secrets, the audit log, the usage
// ledger, Drive's metadata). Include it only from .cpp files: it brings
// <sqlite3.h> along (the including target links SQLite).
#pragma once

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/sqlite_stmt.hpp"

namespace skylab::sqlite {

//! How a store words an SQLite failure: `db` (may be null: out of memory)
//! holds the error, `what` says what was being done.
using ErrorFn = Error (*)(sqlite3* db, const std::string& what);

struct OpenOptions {
  //! Create the file (mode 0600, O_EXCL) if it does not exist, before SQLite
  //! opens it: its -wal and -shm files get the same mode. Never opens an
  //! existing file itself (closing any descriptor of a database file drops
  //! the POSIX locks SQLite holds on it in this process).
  bool create_private = true;
  bool create = false;     //!< SQLITE_OPEN_CREATE (else the file must exist)
  bool full_mutex = true;  //!< SQLITE_OPEN_FULLMUTEX (else NOMUTEX: the caller serialises)
  //! Waiting for another connection's lock: busy_handler(busy_arg) when set,
  //! else sqlite3_busy_timeout(busy_timeout_ms).
  int (*busy_handler)(void*, int) = nullptr;
  void* busy_arg = nullptr;
  int busy_timeout_ms = 2000;
  bool wal = true;  //!< journal_mode=WAL and synchronous=NORMAL
  bool foreign_keys = false;
  bool secure_delete = false;  //!< deleted content is zeroed in the file
};

//! Opens `path` with `o`'s flags, busy handling and pragmas, in that order.
//! On success *db is the handle (the caller closes it); on failure *db is
//! null and the handle is closed. Errors: unavailable "cannot create
//! <path>: ..." (create_private), err(db, "open <path>") or err(db, "set up").
inline Status open(const std::string& path, const OpenOptions& o, sqlite3** db, ErrorFn err) {
  *db = nullptr;
  if (o.create_private) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0)
      ::close(fd);
    else if (errno != EEXIST)
      return Error::unavailable("cannot create " + path + ": " + std::strerror(errno));
  }
  sqlite3* h = nullptr;
  int flags = SQLITE_OPEN_READWRITE | (o.create ? SQLITE_OPEN_CREATE : 0) |
              (o.full_mutex ? SQLITE_OPEN_FULLMUTEX : SQLITE_OPEN_NOMUTEX);
  auto fail = [&](const std::string& what) {
    Error e = err(h, what);
    sqlite3_close_v2(h);
    return e;
  };
  if (sqlite3_open_v2(path.c_str(), &h, flags, nullptr) != SQLITE_OK) return fail("open " + path);
  if (o.busy_handler)
    sqlite3_busy_handler(h, o.busy_handler, o.busy_arg);
  else
    sqlite3_busy_timeout(h, o.busy_timeout_ms);
  std::string pragmas;
  if (o.wal) pragmas += "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;";
  if (o.foreign_keys) pragmas += "PRAGMA foreign_keys=ON;";
  if (o.secure_delete) pragmas += "PRAGMA secure_delete=ON;";
  if (!pragmas.empty() && sqlite3_exec(h, pragmas.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK)
    return fail("set up");
  *db = h;
  return ok_status();
}

//! One step of a schema: what brings version `version - 1` to `version`.
struct Migration {
  int version;
  const char* sql = nullptr;                      //!< run with sqlite3_exec, or
  std::function<Status(sqlite3*)> run = nullptr;  //!< ... this (when sql is null)
};

//! The table that records each component's schema version (one per database).
inline constexpr const char* kSchemaTable =
    "CREATE TABLE IF NOT EXISTS auth_schema(component TEXT PRIMARY KEY, version INTEGER NOT NULL)";

//! Brings `component`'s tables up to the last of `steps` (ascending
//! versions from 1), in one BEGIN IMMEDIATE transaction: creates the
//! auth_schema table if missing, reads the component's version (0: none),
//! runs the steps above it in order, records the last version. Nothing
//! changes on an error. Errors: a version newer than the last step
//! (unavailable, "<subject> was written by a newer Skylab (schema N)": an
//! older binary must not touch a newer database), or err(db, ...).
inline Status migrate(sqlite3* db, std::string_view component, std::string_view subject,
                      const std::vector<Migration>& steps, ErrorFn err) {
  if (sqlite3_exec(db, kSchemaTable, nullptr, nullptr, nullptr) != SQLITE_OK)
    return err(db, "set up");
  Tx tx(db);
  if (!tx.ok()) return err(db, "begin");
  std::int64_t version = 0;
  {
    Stmt q(db, "SELECT version FROM auth_schema WHERE component = ?");
    q.bind(1, component);
    if (q.step() == SQLITE_ROW) version = q.i64(0);
  }
  const int latest = steps.empty() ? 0 : steps.back().version;
  if (version > latest)
    return Error::unavailable(std::string(subject) + " was written by a newer Skylab (schema " +
                              std::to_string(version) + ")");
  if (version == latest) return ok_status();
  for (auto& s : steps) {
    if (s.version <= version) continue;
    if (s.sql) {
      if (sqlite3_exec(db, s.sql, nullptr, nullptr, nullptr) != SQLITE_OK)
        return err(db, "migrate to schema " + std::to_string(s.version));
    } else if (s.run) {
      if (auto st = s.run(db); !st.ok()) return st;
    }
  }
  Stmt u(db,
         "INSERT INTO auth_schema(component, version) VALUES(?, ?) "
         "ON CONFLICT(component) DO UPDATE SET version = excluded.version");
  u.bind(1, component).bind(2, static_cast<std::int64_t>(latest));
  if (u.step() != SQLITE_DONE) return err(db, "record the schema version");
  if (!tx.commit()) return err(db, "commit");
  return ok_status();
}

}  // namespace skylab::sqlite
