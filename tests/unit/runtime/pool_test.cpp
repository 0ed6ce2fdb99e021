// WarmPool against a fake KernelService and a manual clock: spares without processes.
#include "runtime/pool.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "kernel/fake_kernel_service.hpp"
#include "runtime/launch.hpp"

namespace skylab::runtime {
namespace {

using namespace std::chrono_literals;
using kernel::KernelState;

struct PoolTest : ::testing::Test {
  std::shared_ptr<kernel::FakeKernelService> kernels =
      std::make_shared<kernel::FakeKernelService>();
  ManualClock clock;
  Config config = [] {
    Config c = default_config();
    c.runtimes.warm_pool = 1;
    return c;
  }();

  std::vector<kernel::KernelModel> spares() const {
    std::vector<kernel::KernelModel> out;
    for (auto& k : kernels->list(true))
      if (k.reserved) out.push_back(k);
    return out;
  }
  void set_state(const std::string& id, KernelState s) {
    for (auto& k : kernels->list(true))
      if (k.id == id) {
        k.execution_state = s;
        kernels->put(k);
      }
  }
};

TEST_F(PoolTest, ATakeWakesTheWorkerToStartASpareAtOnce) {
  WarmPool pool(kernels, config, {}, clock);
  pool.start();
  // The worker's first tick (at once) finds nothing to fill.
  for (int i = 0; i < 6000 && pool.worker_ticks() < 1; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_GE(pool.worker_ticks(), 1u);
  EXPECT_FALSE(pool.take("ann", "", "python3").has_value());
  // The manual clock never moves: only the take's wake() can make the worker
  // tick again. (A generous real-time bound, not a timing assertion.)
  for (int i = 0; i < 6000 && spares().empty(); ++i) std::this_thread::sleep_for(10ms);
  auto s = spares();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].owner, "ann");
  EXPECT_EQ(s[0].name, "python3");
  pool.stop();
  EXPECT_TRUE(spares().empty());  // stop shuts the spares down
}

TEST_F(PoolTest, ReadySparesAreClaimedAndUnusedKeysExpireByTheClock) {
  WarmPool pool(kernels, config, {}, clock);  // not started: the test ticks
  EXPECT_FALSE(pool.take("ann", "", "python3").has_value());
  pool.tick();
  ASSERT_EQ(spares().size(), 1u);
  std::string id = spares()[0].id;
  set_state(id, KernelState::kIdle);
  EXPECT_EQ(pool.ready("ann", ""), 1);
  EXPECT_EQ(pool.ready("bob", ""), 0);  // never anyone else's
  auto got = pool.take("ann", "", "python3");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->id, id);
  EXPECT_FALSE(got->reserved);
  EXPECT_TRUE(got->claimed);

  // The take counted as a use: the pool refills, and keeps the spare until
  // the type's idle timeout passes on its clock with no further take.
  pool.tick();
  ASSERT_EQ(spares().size(), 1u);
  std::string refill = spares()[0].id;
  set_state(refill, KernelState::kIdle);
  clock.advance(config.runtimes.idle_timeout - 1s);
  pool.tick();
  EXPECT_EQ(spares().size(), 1u);
  clock.advance(2s);
  pool.tick();
  EXPECT_TRUE(spares().empty());
  auto shut = kernels->shutdowns();
  EXPECT_NE(std::find(shut.begin(), shut.end(), refill), shut.end());
}

TEST_F(PoolTest, RuntimesForAnyoneGoToWhoeverHasNoSpareAndOnlyOnce) {
  Config c = config;
  c.runtimes.warm_pool = 0;
  c.runtimes.instant = 1;
  bool template_ready = false;
  WarmPool pool(kernels, c, {}, clock);
  pool.set_instant_source(
      [&](const std::string&) { return template_ready ? std::string("t1") : std::string(); });
  pool.tick();
  EXPECT_TRUE(spares().empty());  // never started without a ready template
  template_ready = true;
  pool.tick();
  ASSERT_EQ(spares().size(), 1u);
  auto s = spares()[0];
  EXPECT_EQ(s.owner, kAnyone);
  EXPECT_EQ(s.name, "python3");
  EXPECT_FALSE(pool.take("ann", "", "python3").has_value());  // still starting: not handed out
  set_state(s.id, KernelState::kIdle);
  EXPECT_EQ(pool.ready(kAnyone, ""), 1);
  auto got = pool.take("ann", "", "python3");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->id, s.id);
  EXPECT_EQ(got->owner, "ann");  // handed over (the fake's claim takes the new owner)
  EXPECT_TRUE(got->claimed);
  EXPECT_FALSE(pool.take("bob", "", "python3").has_value());  // one runtime, one user
  // Another kernelspec is not the template's: no runtime for anyone serves it.
  pool.tick();
  ASSERT_EQ(spares().size(), 1u);
  set_state(spares()[0].id, KernelState::kIdle);
  EXPECT_FALSE(pool.take("bob", "", "R").has_value());
  // Nor does the pool expire: it is wanted whatever the clock says.
  clock.advance(c.runtimes.idle_timeout * 3);
  pool.tick();
  EXPECT_EQ(spares().size(), 1u);
}

TEST_F(PoolTest, AFailedStartForAnyoneIsRetriedOnlyAfterABackoff) {
  Config c = config;
  c.runtimes.warm_pool = 0;
  c.runtimes.instant = 1;
  WarmPool pool(kernels, c, {}, clock);
  pool.set_instant_source([](const std::string&) { return std::string("t1"); });
  kernels->fail_starts(true);
  pool.tick();
  EXPECT_EQ(kernels->start_calls(), 1);
  pool.tick();
  EXPECT_EQ(kernels->start_calls(), 1);  // not again at once (no log flood)
  clock.advance(31s);
  kernels->fail_starts(false);
  pool.tick();
  EXPECT_EQ(kernels->start_calls(), 2);
  EXPECT_EQ(spares().size(), 1u);
}

TEST_F(PoolTest, WaitingRuntimesOfAReplacedTemplateAreReplacedNotHandedOut) {
  Config c = config;
  c.runtimes.warm_pool = 0;
  c.runtimes.instant = 1;
  std::string source = "template pid 10";
  WarmPool pool(kernels, c, {}, clock);
  pool.set_instant_source([&](const std::string&) { return source; });
  pool.tick();
  ASSERT_EQ(spares().size(), 1u);
  std::string old = spares()[0].id;
  set_state(old, KernelState::kIdle);
  // The template restarted (new packages): the old runtime is not handed out...
  source = "template pid 11";
  EXPECT_FALSE(pool.take("ann", "", "python3").has_value());
  // ...and the next tick shuts it down and starts one from the new template.
  pool.tick();
  auto shut = kernels->shutdowns();
  EXPECT_NE(std::find(shut.begin(), shut.end(), old), shut.end());
  pool.tick();
  auto s = spares();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(kernels->start_calls(), 2);  // a new one (the fake may reuse the id)
  set_state(s[0].id, KernelState::kIdle);
  auto got = pool.take("ann", "", "python3");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->id, s[0].id);
  // While the template is down, nothing is handed out and nothing is dropped.
  pool.tick();
  ASSERT_EQ(spares().size(), 1u);
  set_state(spares()[0].id, KernelState::kIdle);
  source.clear();
  pool.tick();
  EXPECT_EQ(spares().size(), 1u);
  EXPECT_FALSE(pool.take("bob", "", "python3").has_value());
}

}  // namespace
}  // namespace skylab::runtime
