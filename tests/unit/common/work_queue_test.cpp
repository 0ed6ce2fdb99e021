#include "common/work_queue.hpp"

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace skylab {
namespace {

TEST(WorkQueueTest, StopRunsOrDropsTheWaitingTasksAsAsked) {
  for (auto pending : {WorkQueue::Pending::kRun, WorkQueue::Pending::kDrop}) {
    WorkQueue q(1, 100000);
    std::promise<void> started, release;
    auto gate = release.get_future().share();
    std::atomic<int> ran{0};
    ASSERT_TRUE(q.post([&, gate] {
      started.set_value();
      gate.wait();
      ++ran;
    }));
    started.get_future().wait();  // the one worker is busy: the next two wait
    ASSERT_TRUE(q.post([&] { ++ran; }));
    ASSERT_TRUE(q.post([&] { ++ran; }));
    std::thread stopper([&] { q.stop(pending); });
    // Once post() is refused, stop() has taken (or dropped) the waiting ones.
    std::atomic<int> probes{0};
    while (q.post([&] { ++probes; })) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    release.set_value();
    stopper.join();
    // The running task always finishes; the waiting ones only with kRun.
    EXPECT_EQ(ran.load(), pending == WorkQueue::Pending::kRun ? 3 : 1);
    EXPECT_FALSE(q.post([] {}));
  }
}

TEST(WorkQueueTest, TasksRunInOrderAndAThrowingOneDoesNotStopTheWorker) {
  WorkQueue q(1, 8);
  std::vector<int> order;  // touched only by the one worker, read after stop()
  ASSERT_TRUE(q.post([&] { order.push_back(1); }));
  ASSERT_TRUE(q.post([] { throw std::runtime_error("task on fire"); }));
  ASSERT_TRUE(q.post([&] { order.push_back(2); }));
  q.stop();
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

TEST(WorkQueueTest, MaxPendingCountsOnlyWaitingTasks) {
  WorkQueue q(1, 1);
  std::promise<void> started, release;
  auto gate = release.get_future().share();
  ASSERT_TRUE(q.post([&, gate] {
    started.set_value();
    gate.wait();
  }));
  started.get_future().wait();  // running: not pending
  EXPECT_TRUE(q.post([] {}));   // one waits
  EXPECT_FALSE(q.post([] {}));  // a second would exceed max_pending
  release.set_value();
}

}  // namespace
}  // namespace skylab
