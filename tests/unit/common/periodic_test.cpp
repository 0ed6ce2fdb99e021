#include "common/periodic.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace skylab {
namespace {

using namespace std::chrono_literals;

//! Counts calls and lets a test wait (with a generous real bound: this is
//! not a timing test) until a count is reached.
struct Counter {
  std::mutex m;
  std::condition_variable cv;
  int n = 0;
  void hit() {
    std::lock_guard l(m);
    ++n;
    cv.notify_all();
  }
  bool reaches(int want) {
    std::unique_lock l(m);
    return cv.wait_for(l, 60s, [&] { return n >= want; });
  }
  int get() {
    std::lock_guard l(m);
    return n;
  }
};

//! Waits (bounded, in real time) until `p` has finished `n` runs: a run's
//! next deadline is set when it is counted, so the clock may move after this.
bool finished(const Periodic& p, std::uint64_t n) {
  for (int i = 0; i < 60000 && p.runs() < n; ++i) std::this_thread::sleep_for(1ms);
  return p.runs() >= n;
}

TEST(Periodic, RunsAtOnceThenEveryIntervalOfItsClock) {
  ManualClock clock;
  Counter c;
  // An hour of the manual clock; the thread re-reads the clock every millisecond.
  Periodic p(
      "test", 1h, [&] { c.hit(); }, clock, 1ms);
  ASSERT_TRUE(finished(p, 1));
  clock.advance(59min);
  std::this_thread::sleep_for(20ms);  // time enough to run early, if it were wrong
  EXPECT_EQ(c.get(), 1);
  clock.advance(1min);
  ASSERT_TRUE(finished(p, 2));
  clock.advance(1h);
  ASSERT_TRUE(finished(p, 3));
  EXPECT_EQ(c.get(), 3);
}

TEST(Periodic, WakeRunsEarlyWithoutTheClockMoving) {
  ManualClock clock;
  Counter c;
  Periodic p(
      "test", 1h, [&] { c.hit(); }, clock);  // max_sleep 1h: only wake() can do it
  ASSERT_TRUE(c.reaches(1));
  p.wake();
  ASSERT_TRUE(c.reaches(2));
  p.wake();
  ASSERT_TRUE(c.reaches(3));
}

TEST(Periodic, StopIsPromptAndFinal) {
  ManualClock clock;
  Counter c;
  auto p = std::make_unique<Periodic>(
      "test", 1h, [&] { c.hit(); }, clock);
  ASSERT_TRUE(finished(*p, 1));
  // A thread sleeping for an hour of its clock (and of real time) ends now.
  p->stop();
  p->stop();  // idempotent
  p->wake();  // nothing runs after stop
  EXPECT_EQ(p->runs(), 1u);
  EXPECT_EQ(c.get(), 1);
  p.reset();
}

TEST(Periodic, AThrowingRunDoesNotEndTheWorker) {
  ManualClock clock;
  Counter c;
  Periodic p(
      "test", 1h,
      [&] {
        c.hit();
        throw std::runtime_error("boom");
      },
      clock);
  ASSERT_TRUE(c.reaches(1));
  p.wake();
  ASSERT_TRUE(c.reaches(2));
}

TEST(Periodic, DestructionWaitsForARunInProgress) {
  std::atomic<bool> inside{false}, finished{false};
  {
    Periodic p("test", 1h, [&] {
      inside = true;
      std::this_thread::sleep_for(50ms);
      finished = true;
    });
    while (!inside) std::this_thread::yield();
  }
  EXPECT_TRUE(finished);
}

}  // namespace
}  // namespace skylab
