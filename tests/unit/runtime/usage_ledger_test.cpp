#include "runtime/usage_ledger.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "auth/audit_log.hpp"
#include "common/clock.hpp"
#include "runtime/launch.hpp"
#include "runtime/lifecycle.hpp"
#include "temp_dir.hpp"

namespace skylab::runtime {

using namespace std::chrono_literals;
using TP = std::chrono::system_clock::time_point;

namespace {
struct TempDb {
  TempDir dir{"skylab-usage"};
  std::string path = (dir / "skylab.db").string();
};
kernel::KernelModel kernel_of(const std::string& id, const std::string& owner,
                              const std::string& type, TP started, std::vector<int> gpus = {}) {
  kernel::KernelModel k;
  k.id = id;
  k.owner = owner;
  k.runtime_type = type;
  k.started = started;
  k.launch = launch_settings(type, gpus);
  return k;
}
// Wednesday 2026-12-02 12:00:00 UTC.
TP wednesday_noon() {
  return TP(std::chrono::seconds(1796212800));
}
}  // namespace

TEST(UsageLedger, WeekStartsMondayUtc) {
  TP t = wednesday_noon();
  TP monday = week_start(t);
  EXPECT_EQ(t - monday, 2 * 24h + 12h);
  EXPECT_EQ(week_start(monday), monday);
  EXPECT_EQ(week_start(monday - 1s), monday - 7 * 24h);
}

TEST(UsageLedger, LimitsUserThenGroupThenDefault) {
  QuotasSection q;
  EXPECT_FALSE(gpu_hours_limit(q, "bob", false));
  q.gpu_hours_per_week = 10;
  q.groups["admins"] = 40;
  q.users["alice"] = 20;
  EXPECT_EQ(*gpu_hours_limit(q, "bob", false), 10);
  EXPECT_EQ(*gpu_hours_limit(q, "carol", true), 40);
  EXPECT_EQ(*gpu_hours_limit(q, "alice", true), 20);
}

TEST(UsageLedger, CountsRunningAndEndedRuntimesAndSurvivesReopening) {
  TempDb db;
  ManualClock clock{wednesday_noon()};  // outlives the ledgers
  QuotasSection q;
  q.gpu_hours_per_week = 2;
  auto gpus = [](const kernel::KernelModel& k) { return static_cast<int>(gpus_of(k).size()); };
  {
    auto l = UsageLedger::open(db.path, q, clock);
    ASSERT_TRUE(l.ok()) << l.error().message;
    auto cpu = kernel_of("k1", "alice", "cpu", clock.wall());
    auto gpu = kernel_of("k2", "alice", "gpu", clock.wall(), {0});
    (*l)->sync({cpu, gpu}, gpus);
    clock.advance(30min);
    (*l)->sync({cpu, gpu}, gpus);
    auto t = (*l)->week("alice");
    EXPECT_DOUBLE_EQ(t.runtime_seconds, 3600);
    EXPECT_DOUBLE_EQ(t.gpu_seconds, 1800);
    EXPECT_DOUBLE_EQ(t.runtime_seconds_by_type["gpu"], 1800);
    EXPECT_EQ(t.running, 2);
    EXPECT_TRUE((*l)->admit("alice", false, 1).ok());
    // 1.5 GPU hours left at one GPU: the quota ends the GPU runtime in 1.5 h.
    ASSERT_TRUE((*l)->gpu_deadline("alice"));
    EXPECT_EQ(*(*l)->gpu_deadline("alice"), clock.wall() + 90min);
    clock.advance(90min);
    (*l)->sync({cpu, gpu}, gpus);
    auto refused = (*l)->admit("alice", false, 1);
    ASSERT_FALSE(refused.ok());
    EXPECT_NE(refused.error().message.find("2026-12-07T00:00:00"), std::string::npos)
        << refused.error().message;
    EXPECT_TRUE((*l)->admit("alice", false, 0).ok());  // CPU runtimes are not limited
    EXPECT_TRUE((*l)->admit("bob", false, 1).ok());
    // The GPU runtime ends; the CPU one runs on while the server stops.
    clock.advance(10s);
    (*l)->sync({cpu}, gpus);
    clock.advance(5s);
    (*l)->sync({cpu}, gpus);
    (*l)->stop();
  }
  // A restart an hour later: the CPU runtime was reattached (counted through
  // the gap); the GPU one stays ended.
  clock.advance(1h);
  auto l = UsageLedger::open(db.path, q, clock);
  ASSERT_TRUE(l.ok());
  (*l)->sync({kernel_of("k1", "alice", "cpu", clock.wall() - 2h - 1h - 15s)}, gpus);
  auto t = (*l)->week("alice");
  EXPECT_DOUBLE_EQ(t.gpu_seconds, 2 * 3600 + 10);  // ended when a look missed it
  EXPECT_DOUBLE_EQ(t.runtime_seconds_by_type["cpu"], 3 * 3600 + 15);
  EXPECT_EQ(t.running, 1);
  EXPECT_FALSE((*l)->gpu_deadline("alice"));  // no GPU held
  auto all = (*l)->week_all();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_DOUBLE_EQ(all["alice"].gpu_seconds, t.gpu_seconds);
  EXPECT_EQ(all["alice"].running, 1);
  // Next week: only what runs after Monday 00:00 counts; the quota refilled.
  clock.advance(week_start(clock.wall()) + 7 * 24h + 1h - clock.wall());
  (*l)->sync({}, gpus);
  EXPECT_DOUBLE_EQ((*l)->week("alice").gpu_seconds, 0);
  EXPECT_TRUE((*l)->admit("alice", false, 1).ok());
}

TEST(UsageLedger, RuntimeEndedWhileServerWasDownCountsToItsLastSighting) {
  TempDb db;
  ManualClock clock{wednesday_noon()};  // outlives the ledgers
  auto gpus = [](const kernel::KernelModel& k) { return static_cast<int>(gpus_of(k).size()); };
  {
    auto l = UsageLedger::open(db.path, {}, clock);
    ASSERT_TRUE(l.ok());
    auto k = kernel_of("k1", "bob", "cpu", clock.wall());
    (*l)->sync({k}, gpus);
    clock.advance(100s);
    (*l)->sync({k}, gpus);
    (*l)->stop();
  }
  clock.advance(5h);
  auto l = UsageLedger::open(db.path, {}, clock);
  ASSERT_TRUE(l.ok());
  (*l)->sync({}, gpus);
  EXPECT_DOUBLE_EQ((*l)->week("bob").runtime_seconds, 100);
  EXPECT_EQ((*l)->week("bob").running, 0);
}

// `skylab run --runtime` writes the same table as a writer of its own: the
// server counts a run's time and GPU hours, never closes its rows, and
// neither does a run close the server's.
TEST(UsageLedger, ARunsRuntimeCountsForTheServerAndOnlyTheRunClosesIt) {
  TempDb db;
  ManualClock clock{wednesday_noon()};  // outlives the ledgers
  QuotasSection q;
  q.gpu_hours_per_week = 1;
  auto gpus = [](const kernel::KernelModel& k) { return static_cast<int>(gpus_of(k).size()); };
  auto server = UsageLedger::open(db.path, q, clock);
  auto run = UsageLedger::open(db.path, q, clock, "run:a");
  ASSERT_TRUE(server.ok() && run.ok());
  auto mine = kernel_of("k-server", "alice", "cpu", clock.wall());
  auto theirs = kernel_of("k-run", "alice", "gpu", clock.wall(), {0});
  (*run)->sync({theirs}, gpus);
  (*server)->sync({mine}, gpus);
  for (int i = 0; i < 240; ++i) {  // 40 minutes; each writes its sightings every 10 s
    clock.advance(10s);
    (*run)->sync({theirs}, gpus);
    (*server)->sync({mine}, gpus);
  }
  for (auto* l : {&*server, &*run}) {
    auto t = (*l)->week("alice");
    EXPECT_EQ(t.running, 2);
    EXPECT_DOUBLE_EQ(t.runtime_seconds_by_type["cpu"], 2400);
    EXPECT_DOUBLE_EQ(t.gpu_seconds, 2400);
  }
  // 20 GPU minutes left: the server refuses no GPU yet; its deadline for
  // alice's GPU runtimes counts the run's GPU.
  EXPECT_TRUE((*server)->admit("alice", false, 1).ok());
  ASSERT_TRUE((*server)->gpu_deadline("alice"));
  EXPECT_EQ(*(*server)->gpu_deadline("alice"), clock.wall() + 20min);
  clock.advance(20min);
  (*run)->sync({theirs}, gpus);
  (*server)->sync({mine}, gpus);
  EXPECT_FALSE((*server)->admit("alice", false, 1).ok());  // the run used the hour up
  EXPECT_FALSE((*run)->admit("alice", false, 1).ok());
  // The run ends: its row closes now, and the server sees it ended.
  clock.advance(10s);
  (*run)->stop();
  clock.advance(5min);
  (*server)->sync({mine}, gpus);
  auto t = (*server)->week("alice");
  EXPECT_EQ(t.running, 1);
  EXPECT_DOUBLE_EQ(t.gpu_seconds, 3610);
  // A run that is killed cannot close its row: it runs while seen, then it
  // is over at its last sighting.
  auto killed = UsageLedger::open(db.path, q, clock, "run:b");
  ASSERT_TRUE(killed.ok());
  (*killed)->sync({kernel_of("k-killed", "bob", "cpu", clock.wall())}, gpus);
  clock.advance(10s);
  (*killed)->sync({kernel_of("k-killed", "bob", "cpu", clock.wall() - 10s)}, gpus);
  clock.advance(15s);
  (*server)->sync({mine}, gpus);
  EXPECT_EQ((*server)->week("bob").running, 1);
  clock.advance(UsageLedger::kForeignStale);
  (*server)->sync({mine}, gpus);
  EXPECT_EQ((*server)->week("bob").running, 0);
  EXPECT_DOUBLE_EQ((*server)->week("bob").runtime_seconds, 10);
  // A server restarted later still has alice's runtime open, its own.
  (*server)->stop();
  clock.advance(1min);
  auto again = UsageLedger::open(db.path, q, clock);
  ASSERT_TRUE(again.ok());
  (*again)->sync({mine}, gpus);
  EXPECT_EQ((*again)->week("alice").running, 1);
  EXPECT_DOUBLE_EQ((*again)->week("alice").gpu_seconds, 3610);
  EXPECT_DOUBLE_EQ((*again)->week("bob").runtime_seconds, 10);
}

TEST(Lifecycle, QuotaDeadlineWarnsAndExpiresAsQuota) {
  TP t0{};
  LifecycleInput in;
  in.started = t0;
  in.last_activity = t0;
  in.busy = true;
  in.idle_timeout = 90min;
  in.max_lifetime = 12h;
  in.warning = 10min;
  in.quota_deadline = t0 + 1h;
  auto d = evaluate(in, t0 + 51min, false);
  EXPECT_EQ(d.action, LifecycleDecision::Action::kWarn);
  EXPECT_EQ(d.reason, "quota");
  EXPECT_EQ(d.lifetime_deadline, t0 + 1h);
  d = evaluate(in, t0 + 1h, true);
  EXPECT_EQ(d.action, LifecycleDecision::Action::kExpire);
  EXPECT_EQ(d.reason, "quota");
}

TEST(AuditLog, RecordsNewestFirstAndCutsFields) {
  TempDb db;
  ManualClock clock{ManualClock::WallPoint{std::chrono::seconds(1000)}};
  auto a = auth::AuditLog::open(db.path, clock);
  ASSERT_TRUE(a.ok());
  (*a)->record("root", "user.add", "alice");
  clock.advance(std::chrono::seconds(1));
  (*a)->record("root", "user.disable", std::string(1000, 'x'), "d");
  auto r = (*a)->recent(10);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].action, "user.disable");
  EXPECT_EQ((*r)[0].target.size(), 256u);
  EXPECT_EQ((*r)[1].time, 1000);
  auto older = (*a)->recent(10, (*r)[0].id);
  ASSERT_TRUE(older.ok());
  ASSERT_EQ(older->size(), 1u);
  EXPECT_EQ((*older)[0].target, "alice");
}

}  // namespace skylab::runtime
