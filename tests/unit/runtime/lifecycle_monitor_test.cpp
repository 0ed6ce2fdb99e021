// LifecycleMonitor against a fake KernelService: the policy applied to the
// kernels' execution states, without processes.
#include <gtest/gtest.h>

#include "common/clock.hpp"
#include "kernel/fake_kernel_service.hpp"
#include "runtime/lifecycle.hpp"

namespace skylab::runtime {
namespace {

using namespace std::chrono_literals;
using kernel::KernelState;

struct MonitorTest : ::testing::Test {
  std::shared_ptr<kernel::FakeKernelService> kernels =
      std::make_shared<kernel::FakeKernelService>();
  TimePoint t0 = TimePoint(std::chrono::seconds(1700000000));
  ManualClock clock{t0};  // outlives the monitor (declared before it)
  std::unique_ptr<LifecycleMonitor> monitor;

  void SetUp() override {
    Config c = default_config();  // idle 90 min, lifetime 12 h, warning 10 min
    monitor = std::make_unique<LifecycleMonitor>(kernels, c, clock);
  }
  void put(const std::string& id, KernelState state) {
    kernel::KernelModel k;
    k.id = id;
    k.owner = "ann";
    k.started = k.last_activity = t0;
    k.execution_state = state;
    kernels->put(k);
  }
};

TEST_F(MonitorTest, AnIdleKernelIsWarnedButABusyOneIsNot) {
  put("idle", KernelState::kIdle);
  put("busy", KernelState::kBusy);
  clock.advance(81min);
  monitor->tick();
  auto notes = kernels->notes();
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(std::get<0>(notes[0]), "idle");
  EXPECT_EQ(std::get<1>(notes[0]), "skylab_runtime_event");
  EXPECT_EQ(std::get<2>(notes[0])["event"], "warning");
  EXPECT_EQ(std::get<2>(notes[0])["reason"], "idle");
}

TEST_F(MonitorTest, ADeadKernelIsOnlyShutDownAtItsDeadline) {
  put("dead", KernelState::kDead);
  clock.advance(81min);
  monitor->tick();
  EXPECT_TRUE(kernels->notes().empty());  // no warnings to a dead kernel
  EXPECT_TRUE(kernels->shutdowns().empty());
  clock.advance(10min);  // t0 + 91 min
  monitor->tick();
  ASSERT_EQ(kernels->shutdowns().size(), 1u);  // no expiry hooks can run: removed at once
  EXPECT_EQ(kernels->shutdowns()[0], "dead");
}

}  // namespace
}  // namespace skylab::runtime
