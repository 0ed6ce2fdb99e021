// WarmPool against a fake KernelService and a manual clock: spares without processes.
#include "runtime/pool.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "kernel/fake_kernel_service.hpp"

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

}  // namespace
}  // namespace skylab::runtime
