// Small RAII helpers over SQLite's C API, shared by the stores that keep
// their data in SQLite (accounts, shares, Drive revisions). Include it only
// from .cpp files: it brings <sqlite3.h> along.
#pragma once

#include <sqlite3.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace skylab::sqlite {

//! A prepared statement, finalized on destruction.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  //! False when the statement did not prepare.
  bool ok() const { return rc_ == SQLITE_OK; }
  Stmt& bind(int i, std::string_view v) {
    // A default-constructed view has no data: that is "", not SQL NULL.
    sqlite3_bind_text(s_, i, v.data() ? v.data() : "", static_cast<int>(v.size()),
                      SQLITE_TRANSIENT);
    return *this;
  }
  //! The bytes must stay alive until the statement has run.
  Stmt& bind_blob(int i, std::string_view v) {
    sqlite3_bind_blob64(s_, i, v.data() ? v.data() : "", v.size(), SQLITE_STATIC);
    return *this;
  }
  Stmt& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& bind_null(int i) {
    sqlite3_bind_null(s_, i);
    return *this;
  }
  //! SQLITE_ROW, SQLITE_DONE or an error code (also when prepare failed).
  int step() { return ok() ? sqlite3_step(s_) : rc_; }
  std::int64_t i64(int c) const { return sqlite3_column_int64(s_, c); }
  bool is_null(int c) const { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
  std::string text(int c) const {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, c));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, c)))
             : std::string();
  }
  std::string blob(int c) const {
    auto* p = static_cast<const char*>(sqlite3_column_blob(s_, c));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, c)))
             : std::string();
  }
  sqlite3_stmt* get() { return s_; }

 private:
  sqlite3_stmt* s_ = nullptr;
  int rc_ = SQLITE_OK;
};

//! BEGIN IMMEDIATE; rolled back on destruction unless committed.
class Tx {
 public:
  explicit Tx(sqlite3* db) : db_(db) {
    ok_ = sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK;
  }
  ~Tx() {
    if (ok_ && !done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Tx(const Tx&) = delete;
  Tx& operator=(const Tx&) = delete;
  bool ok() const { return ok_; }
  bool commit() {
    done_ = true;
    return sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK;
  }

 private:
  sqlite3* db_;
  bool ok_ = false, done_ = false;
};

}  // namespace skylab::sqlite
