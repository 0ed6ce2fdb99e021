#include "runtime/usage_ledger.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <set>

#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/sqlite_db.hpp"
#include "common/sqlite_stmt.hpp"
#include "common/util.hpp"
#include "runtime/launch.hpp"

namespace skylab::runtime {

namespace {

using sqlite::Stmt;

constexpr const char* kComponent = "usage";
constexpr double kWeek = 7 * 24 * 3600.0;
constexpr double kWriteEvery = 10;  // seconds between writes of a running runtime's last sighting

const char* kSchemaV1 = R"sql(
CREATE TABLE IF NOT EXISTS usage_runtimes(
  id TEXT PRIMARY KEY,
  user TEXT NOT NULL,
  type TEXT NOT NULL,
  gpus INTEGER NOT NULL,
  start REAL NOT NULL,
  last_seen REAL NOT NULL,
  end_time REAL
);
CREATE INDEX IF NOT EXISTS usage_runtimes_end ON usage_runtimes(end_time);
)sql";

// Who wrote a row: the server, or one `skylab run --runtime` ("run:<random>").
const char* kSchemaV2 = R"sql(
ALTER TABLE usage_runtimes ADD COLUMN writer TEXT NOT NULL DEFAULT 'server';
)sql";

// A week and a day back: what can still count this week.
constexpr double kKeep = kWeek + 86400;

double secs(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}
std::chrono::system_clock::time_point from_secs(double s) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::duration<double>(s)));
}

Error db_error(sqlite3* db, const std::string& what) {
  return Error::unavailable("usage ledger: " + what + ": " +
                            (db ? sqlite3_errmsg(db) : "out of memory"));
}

}  // namespace

std::chrono::system_clock::time_point week_start(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  auto day = floor<days>(t);
  weekday wd{day};
  return day - days((wd.c_encoding() + 6) % 7);  // Monday = 0
}

std::optional<double> gpu_hours_limit(const QuotasSection& q, const std::string& user, bool admin) {
  if (auto it = q.users.find(user); it != q.users.end()) return it->second;
  if (auto it = q.groups.find(admin ? "admins" : "users"); it != q.groups.end()) return it->second;
  return q.gpu_hours_per_week;
}

Result<std::shared_ptr<UsageLedger>> UsageLedger::open(const std::string& path,
                                                       QuotasSection quotas, const Clock& clock,
                                                       std::string writer) {
  std::shared_ptr<UsageLedger> l(new UsageLedger(clock, std::move(writer)));
  // Uncontended (not shared yet); held so that the analysis sees every access locked.
  MutexLock db_lock(l->db_mu_);
  MutexLock setup_lock(l->mu_);
  l->quotas_ = std::move(quotas);
  if (auto st = sqlite::open(path, {}, &l->db_, db_error); !st.ok()) return st.error();
  if (auto st = sqlite::migrate(l->db_, kComponent, "the usage ledger",
                                {{1, kSchemaV1}, {2, kSchemaV2}}, db_error);
      !st.ok())
    return st.error();
  // This writer's open records and those that can still count this week.
  const double now = secs(l->now());
  auto own = l->read_records(true, now);
  if (!own) return db_error(l->db_, "read");
  for (auto& [id, r] : *own) l->records_.emplace(std::move(id), std::move(r));
  l->take_foreign_locked(l->read_foreign(now));
  return l;
}

std::optional<std::vector<std::pair<std::string, UsageLedger::Record>>> UsageLedger::read_records(
    bool own, double now) {
  std::string sql = "SELECT id, user, type, gpus, start, last_seen, end_time FROM usage_runtimes ";
  sql += own ? "WHERE writer = ?" : "WHERE writer != ?";
  sql += " AND (end_time IS NULL OR end_time >= ?)";
  Stmt q(db_, sql.c_str());
  if (!q.ok()) return std::nullopt;
  q.bind(1, std::string_view(writer_));
  q.bind(2, static_cast<std::int64_t>(now - kKeep));
  std::vector<std::pair<std::string, Record>> out;
  while (q.step() == SQLITE_ROW) {
    Record r;
    r.own = own;
    r.user = q.text(1);
    r.type = q.text(2);
    r.gpus = static_cast<int>(q.i64(3));
    r.start = sqlite3_column_double(q.get(), 4);
    r.last_seen = sqlite3_column_double(q.get(), 5);
    r.end = q.is_null(6) ? 0 : sqlite3_column_double(q.get(), 6);
    if (own) {
      r.written = r.last_seen;
    } else {
      if (r.end == 0 && r.last_seen < now - kKeep) continue;  // a killed run's, long over
      // Running while its writer keeps seeing it; else over at its last sighting.
      r.live = r.end == 0 && now - r.last_seen <= static_cast<double>(kForeignStale.count());
    }
    out.emplace_back(q.text(0), std::move(r));
  }
  return out;
}

std::vector<std::pair<std::string, UsageLedger::Record>> UsageLedger::read_foreign(double now) {
  auto rows = read_records(false, now);
  if (!rows) {
    log::warn(std::string("usage ledger: cannot read other writers' runtimes: ") +
              sqlite3_errmsg(db_));
    return {};
  }
  return std::move(*rows);
}

void UsageLedger::take_foreign_locked(std::vector<std::pair<std::string, Record>>&& rows) {
  std::erase_if(records_, [](const auto& kv) { return !kv.second.own; });
  for (auto& [id, r] : rows) records_.emplace(std::move(id), std::move(r));  // never over our own
}

UsageLedger::~UsageLedger() {
  stop();
  if (db_) sqlite3_close(db_);
}

void UsageLedger::write(const std::string& id, const Record& r) {
  Stmt s(
      db_,
      "INSERT INTO usage_runtimes(id, user, type, gpus, start, last_seen, end_time, writer) "
      "VALUES(?,?,?,?,?,?,?,?) "
      "ON CONFLICT(id) DO UPDATE SET last_seen = excluded.last_seen, end_time = excluded.end_time, "
      "gpus = excluded.gpus");
  s.bind(1, std::string_view(id))
      .bind(2, std::string_view(r.user))
      .bind(3, std::string_view(r.type));
  s.bind(4, std::int64_t{r.gpus});
  sqlite3_bind_double(s.get(), 5, r.start);
  sqlite3_bind_double(s.get(), 6, r.last_seen);
  if (r.end > 0)
    sqlite3_bind_double(s.get(), 7, r.end);
  else
    s.bind_null(7);
  s.bind(8, std::string_view(writer_));
  if (s.step() != SQLITE_DONE)
    log::warn("usage ledger: cannot record runtime " + id + ": " + sqlite3_errmsg(db_));
}

void UsageLedger::sync(const std::vector<kernel::KernelModel>& running,
                       const std::function<int(const kernel::KernelModel&)>& gpus_of) {
  MutexLock db_lock(db_mu_);
  const double now = secs(clock_.wall());
  auto foreign = read_foreign(now);
  std::vector<std::pair<std::string, Record>> to_write;
  {
    MutexLock lock(mu_);
    take_foreign_locked(std::move(foreign));
    std::set<std::string> seen;
    for (auto& k : running) {
      if (k.owner.empty() || k.id.empty()) continue;
      seen.insert(k.id);
      auto it = records_.find(k.id);
      if (it != records_.end() && !it->second.own) continue;  // another writer's id
      if (it == records_.end() || it->second.end > 0) {
        Record r;
        r.user = k.owner;
        r.type = k.runtime_type;
        r.gpus = gpus_of ? gpus_of(k) : static_cast<int>(runtime::gpus_of(k).size());
        // Its own start (a reattached runtime's, or a claimed spare's).
        r.start = std::min(now, secs(k.started) > 0 ? secs(k.started) : now);
        if (it != records_.end()) r.start = it->second.start;  // reopened (cannot normally happen)
        r.last_seen = now;
        r.live = true;
        r.written = now;
        records_[k.id] = r;
        to_write.emplace_back(k.id, r);
        continue;
      }
      Record& r = it->second;
      r.live = true;
      r.last_seen = now;
      if (now - r.written >= kWriteEvery) {
        r.written = now;
        to_write.emplace_back(k.id, r);
      }
    }
    for (auto it = records_.begin(); it != records_.end();) {
      Record& r = it->second;
      if (r.own && r.end == 0 && !seen.count(it->first)) {
        // Gone: one this server saw running a second ago ends now (what users
        // were shown never shrinks); one of a previous server's ended at its
        // last sighting then.
        r.end = std::max(r.start, r.live ? now : r.last_seen);
        r.live = false;
        to_write.emplace_back(it->first, r);
      }
      if (r.own && r.end > 0 && r.end < now - kKeep)
        it = records_.erase(it);
      else
        ++it;
    }
  }
  if (to_write.empty()) return;
  sqlite::Tx tx(db_);
  for (auto& [id, r] : to_write) write(id, r);
  if (!tx.commit()) log::warn(std::string("usage ledger: cannot commit: ") + sqlite3_errmsg(db_));
}

namespace {
//! Adds what `r` used in [ws, now] to `t`.
template <typename R>
void add_use(UsageTotals& t, const R& r, double ws, double now) {
  double end = r.end > 0 ? r.end : (r.live ? now : r.last_seen);
  double s = std::max(0.0, std::min(end, now) - std::max(r.start, ws));
  if (r.end == 0 && r.live) ++t.running;
  if (s <= 0) return;
  t.runtime_seconds += s;
  t.runtime_seconds_by_type[r.type] += s;
  if (r.gpus > 0) {
    t.gpu_seconds += s * r.gpus;
    t.gpu_seconds_by_type[r.type] += s * r.gpus;
  }
}
}  // namespace

UsageTotals UsageLedger::totals_locked(const std::string& user, double ws, double now) const {
  UsageTotals t;
  for (auto& [id, r] : records_)
    if (r.user == user) add_use(t, r, ws, now);
  return t;
}

double UsageLedger::used_gpu_seconds_locked(const std::string& user, double ws, double now) const {
  return totals_locked(user, ws, now).gpu_seconds;
}

UsageTotals UsageLedger::week(const std::string& user) const {
  auto now = clock_.wall();
  MutexLock lock(mu_);
  return totals_locked(user, secs(week_start(now)), secs(now));
}

std::map<std::string, UsageTotals> UsageLedger::week_all() const {
  auto now = clock_.wall();
  const double ws = secs(week_start(now)), n = secs(now);
  std::map<std::string, UsageTotals> out;
  MutexLock lock(mu_);
  for (auto& [id, r] : records_) add_use(out[r.user], r, ws, n);  // one pass over all records
  std::erase_if(
      out, [](const auto& kv) { return kv.second.runtime_seconds <= 0 && kv.second.running == 0; });
  return out;
}

Status UsageLedger::admit(const std::string& user, bool admin, int gpus) const {
  if (gpus <= 0) return ok_status();
  auto now = clock_.wall();
  auto ws = week_start(now);
  double used;
  std::optional<double> limit;
  {
    MutexLock lock(mu_);
    if (auto it = admins_.find(user); it != admins_.end()) admin = admin || it->second;
    limit = gpu_hours_limit(quotas_, user, admin);
    if (!limit) return ok_status();
    used = used_gpu_seconds_locked(user, secs(ws), secs(now));
  }
  if (used < *limit * 3600) return ok_status();
  char hours[64];
  std::snprintf(hours, sizeof hours, "%g", *limit);
  return Error::conflict("You have used your " + std::string(hours) +
                         " GPU hours of this week; your GPU quota refills at " +
                         util::iso_time(ws + std::chrono::days(7)) + " (Monday 00:00 UTC)");
}

std::optional<UsageLedger::TimePoint> UsageLedger::gpu_deadline(const std::string& user) const {
  auto now = clock_.wall();
  MutexLock lock(mu_);
  bool admin = false;
  if (auto it = admins_.find(user); it != admins_.end()) admin = it->second;
  auto limit = gpu_hours_limit(quotas_, user, admin);
  if (!limit) return std::nullopt;
  int held = 0;
  for (auto& [id, r] : records_)
    if (r.user == user && r.end == 0 && r.live) held += r.gpus;
  if (held <= 0) return std::nullopt;
  const double n = secs(now);
  const double ws = secs(week_start(now));
  const double left = std::max(0.0, *limit * 3600 - used_gpu_seconds_locked(user, ws, n));
  // The quota refills at the week's end: a runtime running across it goes on.
  const double deadline = n + left / held;
  if (deadline >= ws + kWeek) return std::nullopt;
  return from_secs(std::floor(deadline));
}

void UsageLedger::note_admin(const std::string& user, bool admin) {
  MutexLock lock(mu_);
  admins_[user] = admin;
}

void UsageLedger::start(std::function<std::vector<kernel::KernelModel>()> list,
                        std::function<int(const kernel::KernelModel&)> gpus_of) {
  // The first look before anything is served: runtimes reattached after a
  // restart count as running at once, those gone are closed.
  sync(list(), gpus_of);
  ticker_ = std::make_unique<Periodic>(
      "usage ledger", std::chrono::seconds(1),
      [this, list = std::move(list), gpus_of = std::move(gpus_of)] { sync(list(), gpus_of); },
      clock_);
}

void UsageLedger::stop() {
  if (ticker_) ticker_->stop();
  // Another writer's runtimes end with it (a run's dies with the run): a
  // last look that sees none of them closes them now, as any gone runtime.
  if (writer_ != kServerWriter) return sync({}, nullptr);
  // The server's outlive it: their last sighting is now, to the second.
  MutexLock db_lock(db_mu_);
  std::vector<std::pair<std::string, Record>> open;
  {
    MutexLock lock(mu_);
    for (auto& [id, r] : records_)
      if (r.own && r.end == 0 && r.live && r.written < r.last_seen) open.emplace_back(id, r);
  }
  if (open.empty() || !db_) return;
  sqlite::Tx tx(db_);
  for (auto& [id, r] : open) write(id, r);
  tx.commit();
}

}  // namespace skylab::runtime
