#include "runtime/lifecycle.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/launch.hpp"
#include "temp_dir.hpp"

namespace skylab::runtime {

using namespace std::chrono_literals;
using Action = LifecycleDecision::Action;

namespace {
LifecycleInput input(TimePoint t0) {
  LifecycleInput in;
  in.started = t0;
  in.last_activity = t0;
  in.idle_timeout = 90min;
  in.max_lifetime = 12h;
  in.warning = 10min;
  return in;
}
}  // namespace

TEST(Lifecycle, NothingBeforeTheWarning) {
  TimePoint t0{};
  auto d = evaluate(input(t0), t0 + 79min, false);
  EXPECT_EQ(d.action, Action::kNone);
  EXPECT_EQ(d.idle_deadline, t0 + 90min);
  EXPECT_EQ(d.lifetime_deadline, t0 + 12h);
}

TEST(Lifecycle, WarnsOnceBeforeIdleDeadline) {
  TimePoint t0{};
  auto d = evaluate(input(t0), t0 + 81min, false);
  EXPECT_EQ(d.action, Action::kWarn);
  EXPECT_EQ(d.reason, "idle");
  EXPECT_EQ(evaluate(input(t0), t0 + 81min, true).action, Action::kNone);
}

TEST(Lifecycle, IdleExpiry) {
  TimePoint t0{};
  auto d = evaluate(input(t0), t0 + 90min, true);
  EXPECT_EQ(d.action, Action::kExpire);
  EXPECT_EQ(d.reason, "idle");
}

TEST(Lifecycle, ActivityMovesTheIdleDeadline) {
  TimePoint t0{};
  auto in = input(t0);
  in.last_activity = t0 + 60min;
  EXPECT_EQ(evaluate(in, t0 + 100min, false).action, Action::kNone);
  EXPECT_EQ(evaluate(in, t0 + 150min, false).action, Action::kExpire);
}

TEST(Lifecycle, BusyKernelIsNeverIdle) {
  TimePoint t0{};
  auto in = input(t0);
  in.busy = true;
  auto d = evaluate(in, t0 + 5h, false);
  EXPECT_EQ(d.action, Action::kNone);
  EXPECT_EQ(d.idle_deadline, TimePoint::max());
}

TEST(Lifecycle, LifetimeEndsEvenABusyKernel) {
  TimePoint t0{};
  auto in = input(t0);
  in.busy = true;
  auto w = evaluate(in, t0 + 11h + 51min, false);
  EXPECT_EQ(w.action, Action::kWarn);
  EXPECT_EQ(w.reason, "lifetime");
  auto d = evaluate(in, t0 + 12h, true);
  EXPECT_EQ(d.action, Action::kExpire);
  EXPECT_EQ(d.reason, "lifetime");
}

TEST(Lifecycle, LifetimeWinsWhenBothAreDue) {
  TimePoint t0{};
  auto in = input(t0);
  in.max_lifetime = 60min;
  EXPECT_EQ(evaluate(in, t0 + 95min, true).reason, "lifetime");
}

TEST(Lifecycle, InitialStateFileHasTheDeadlines) {
  Config c = default_config();
  c.runtimes.max_lifetime = 2h;
  kernel::KernelModel k;
  k.started = k.last_activity = TimePoint(std::chrono::seconds(1000000));
  TempDir tmp("skylab-lifecycle");
  const std::string state_file = (tmp / "state.json").string();
  k.launch.env["SKYLAB_RUNTIME_STATE"] = state_file;  // as the manager fills in launch_settings'
  EXPECT_EQ(state_file_of(k), state_file);
  write_initial_state(c, k, k.started);
  std::ifstream in(state_file);
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = nlohmann::json::parse(ss.str());
  EXPECT_DOUBLE_EQ(j["lifetime_deadline"].get<double>(), 1000000 + 7200);
  EXPECT_DOUBLE_EQ(j["idle_deadline"].get<double>(), 1000000 + 90 * 60);
  EXPECT_FALSE(j["expire"].get<bool>());
}

}  // namespace skylab::runtime
