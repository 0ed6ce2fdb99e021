// The usage ledger: how long each user's runtimes ran, and with how many
// GPUs, kept in SQLite (`<data-dir>/skylab.db`, table `usage_runtimes`) so
// that it survives restarts; and the weekly GPU-hour quotas of [quotas].
//
// Weeks are calendar weeks in UTC: they start on Monday 00:00 UTC, and a
// quota refills then. GPU hours are wall-clock hours times the GPUs a runtime
// holds. A runtime is "seen" once a second (sync); its time runs from its
// start until the first look that misses it (at most a second late), so a
// runtime that outlives a server restart (it is reattached) is counted
// through the gap, and one that ended while the server was down is counted up
// to the previous server's last look at it.
//
// Two kinds of process write the ledger: the server, and `skylab run
// --runtime` (a batch run with a runtime of its own, beside or without a
// server). Each is a writer: it opens, sees and closes only its own rows,
// and reads the others' at every sync, so that a user's week, admission and
// quota deadlines count everything they ran on the data directory. A row
// of another writer that has not been seen for kForeignStale is over at its
// last sighting (a run that was killed cannot close it).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "common/mutex.hpp"
#include "common/periodic.hpp"
#include "common/result.hpp"
#include "kernel/manager.hpp"
#include "runtime/config.hpp"

struct sqlite3;

namespace skylab::runtime {

//! Seconds used in one week, by runtime type.
struct UsageTotals {
  double runtime_seconds = 0;
  double gpu_seconds = 0;  //!< seconds x GPUs
  std::map<std::string, double> runtime_seconds_by_type;
  std::map<std::string, double> gpu_seconds_by_type;
  int running = 0;  //!< runtimes running now
};

//! Monday 00:00 UTC of the week `t` falls in.
std::chrono::system_clock::time_point week_start(std::chrono::system_clock::time_point t);

//! The weekly GPU-hour limit of `user` by [quotas]: the user's own entry,
//! else the group's ("admins" for administrators, "users" for everyone
//! else), else the default; nullopt: unlimited.
std::optional<double> gpu_hours_limit(const QuotasSection& q, const std::string& user, bool admin);

//! The server's writer name (rows from before writers existed are its).
inline constexpr const char* kServerWriter = "server";

//! Thread-safe. Reads (week, admission checks, deadlines) answer from memory
//! and never block on the disk; sync() and the thread write SQLite.
class UsageLedger {
 public:
  using TimePoint = Clock::WallPoint;  //!< weeks are calendar weeks: wall-clock time
  //! How long another writer's open row stays running without a new sighting
  //! (it writes one every 10 s while its runtime runs).
  static constexpr std::chrono::seconds kForeignStale{30};

  //! Opens (creates, migrates forward) the ledger's table in the SQLite file
  //! `path`. `clock` (its wall() is "now"; tests pass a ManualClock) must
  //! outlive the ledger. `writer`: whose rows this ledger owns; the server's
  //! runtimes outlive it (reattached after a restart), any other writer's
  //! end with it (stop() closes them).
  static Result<std::shared_ptr<UsageLedger>> open(const std::string& path, QuotasSection quotas,
                                                   const Clock& clock = real_clock(),
                                                   std::string writer = kServerWriter);
  ~UsageLedger();
  UsageLedger(const UsageLedger&) = delete;
  UsageLedger& operator=(const UsageLedger&) = delete;

  //! Records that exactly `running` are running now: new ones are opened,
  //! known ones seen, open ones not in the list closed at their last sighting
  //! (this writer's only), and reads the other writers' rows again.
  //! `gpus_of` says how many GPUs a kernel holds. Blocks on SQLite (never on
  //! the Asio thread).
  void sync(const std::vector<kernel::KernelModel>& running,
            const std::function<int(const kernel::KernelModel&)>& gpus_of);

  //! `user`'s use in the current week (quick; any thread).
  UsageTotals week(const std::string& user) const;
  //! Every user's with any use this week, or a runtime running (quick).
  std::map<std::string, UsageTotals> week_all() const;

  //! Admission: OK, or Conflict naming the limit and when it refills, when
  //! `user` has used up their weekly GPU hours and asks for `gpus` > 0 GPUs.
  //! Quick (memory only); safe under the runtime service's lock.
  Status admit(const std::string& user, bool admin, int gpus) const;
  //! When `user`'s GPU runtimes must end for the quota (the remaining GPU
  //! seconds shared out over the GPUs they hold now), or nullopt (no limit,
  //! no GPU held). Quick.
  std::optional<TimePoint> gpu_deadline(const std::string& user) const;
  //! Remembers whether `user` is an administrator (for group quotas of
  //! runtimes seen after a restart). Quick.
  void note_admin(const std::string& user, bool admin);

  const QuotasSection& quotas() const { return quotas_; }
  TimePoint now() const { return clock_.wall(); }

  //! Calls sync(list(), gpus_of) once now, then on a thread every second
  //! until stop().
  void start(std::function<std::vector<kernel::KernelModel>()> list,
             std::function<int(const kernel::KernelModel&)> gpus_of);
  //! Ends the thread and writes the last sightings: the server's runtimes
  //! stay open (they outlive it), another writer's are closed now.
  void stop();

 private:
  struct Record {
    std::string user, type;
    int gpus = 0;
    double start = 0, last_seen = 0, end = 0;  // unix seconds; end 0: open
    bool live = false;                         // seen by this server's last sync
    double written = 0;                        // last_seen last written to SQLite
    bool own = true;                           // this writer's (else read from the table)
  };
  UsageLedger(const Clock& clock, std::string writer) : clock_(clock), writer_(std::move(writer)) {}
  //! This writer's rows (`own`) or the others' that can count this week;
  //! nullopt when the table cannot be read.
  std::optional<std::vector<std::pair<std::string, Record>>> read_records(bool own, double now)
      REQUIRES(db_mu_);
  //! The other writers' rows that can count this week (SQLite; db_mu_ held).
  std::vector<std::pair<std::string, Record>> read_foreign(double now) REQUIRES(db_mu_);
  //! Replaces the other writers' records with `rows`.
  void take_foreign_locked(std::vector<std::pair<std::string, Record>>&& rows) REQUIRES(mu_);
  UsageTotals totals_locked(const std::string& user, double ws, double now) const REQUIRES(mu_);
  double used_gpu_seconds_locked(const std::string& user, double ws, double now) const
      REQUIRES(mu_);
  void write(const std::string& id, const Record& r) REQUIRES(db_mu_);

  QuotasSection quotas_;
  const Clock& clock_;
  const std::string writer_;
  sqlite3* db_ GUARDED_BY(db_mu_) = nullptr;  // used by sync() only
  Mutex db_mu_;
  mutable Mutex mu_;
  std::map<std::string, Record> records_ GUARDED_BY(mu_);  // open ones and those of the last 8 days
  std::map<std::string, bool> admins_ GUARDED_BY(mu_);

  std::unique_ptr<Periodic> ticker_;  // sync() once a second; set by start()
};

}  // namespace skylab::runtime
