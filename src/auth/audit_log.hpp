// The audit log: administrators' actions (accounts, stopping others'
// runtimes) and shares made or ended, in SQLite (`<data-dir>/skylab.db`,
// table `audit_log`). Shown on the admin page.
#pragma once

#include <cstddef>
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

struct AuditEntry {
  std::int64_t id = 0;
  std::int64_t time = 0;  //!< unix seconds
  std::string actor;      //!< who did it (a user name, "admin" for the admin token)
  std::string action;     //!< e.g. "user.add", "user.disable", "runtime.stop", "share.create"
  std::string target;     //!< whom or what it was done to
  std::string detail;     //!< free text, no secrets
};

//! Thread-safe; every call blocks on SQLite (work-queue threads only).
class AuditLog {
 public:
  //! Opens (creates, migrates forward) the table in the SQLite file `path`.
  static Result<std::shared_ptr<AuditLog>> open(const std::string& path,
                                                const Clock& clock = real_clock());
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  //! Appends an entry (fields cut to 256 bytes each). Failures are logged,
  //! never returned: an audit write never fails the action it records.
  void record(std::string_view actor, std::string_view action, std::string_view target,
              std::string_view detail = {});
  //! The newest `limit` entries (at most 1000), newest first; only those
  //! with id < `before` when before > 0 (paging).
  Result<std::vector<AuditEntry>> recent(std::size_t limit, std::int64_t before = 0);

 private:
  AuditLog() = default;
  const Clock* clock_ = &real_clock();
  Mutex mu_;
  sqlite3* db_ GUARDED_BY(mu_) = nullptr;
};

}  // namespace skylab::auth
