// The kernel state machine on a hand-driven clock: no processes, no sockets.
#include "kernel/state_machine.hpp"

#include <gtest/gtest.h>

#include "common/clock.hpp"

namespace skylab::kernel {
namespace {

using namespace std::chrono_literals;

LifecycleTiming timing() {
  LifecycleTiming t;
  t.ready_timeout = 10s;
  t.shutdown_wait = 3s;
  t.heartbeat_interval = 1s;
  return t;
}

struct Fsm : ::testing::Test {
  ManualClock clock;
  KernelStateMachine fsm{timing()};
  LifecycleDue tick(bool alive = true, bool connected = true, bool ready = false) {
    return fsm.tick(clock.now(), alive, connected, ready);
  }
};

TEST_F(Fsm, NudgesUntilKernelInfoThenFasterUntilIopub) {
  fsm.connected(clock.now());
  EXPECT_TRUE(tick().nudge);  // at once
  clock.advance(99ms);
  EXPECT_FALSE(tick().nudge);
  clock.advance(1ms);
  EXPECT_TRUE(tick().nudge);
  EXPECT_FALSE(fsm.on_message(false, true));  // kernel_info answered, iopub not live yet
  EXPECT_TRUE(fsm.got_info());
  clock.advance(100ms);
  EXPECT_TRUE(tick().nudge);
  clock.advance(50ms);
  EXPECT_TRUE(tick().nudge);                 // every 50 ms now
  EXPECT_TRUE(fsm.on_message(true, false));  // iopub: ready
  clock.advance(1h);
  EXPECT_FALSE(tick(true, true, true).nudge);  // no nudges once ready
}

TEST_F(Fsm, NoNudgesWithoutSocketsOrOutsideRunning) {
  fsm.connected(clock.now());
  EXPECT_FALSE(tick(true, false).nudge);
  fsm.begin_stop(false, clock.now());
  EXPECT_FALSE(tick().nudge);
}

TEST_F(Fsm, ReadyTimeoutFiresAndRearms) {
  fsm.connected(clock.now());
  clock.advance(9999ms);
  EXPECT_FALSE(tick().ready_timeout);
  clock.advance(1ms);
  EXPECT_TRUE(tick().ready_timeout);
  EXPECT_FALSE(tick().ready_timeout);
  clock.advance(10s);
  EXPECT_TRUE(tick().ready_timeout);
  clock.advance(10s);
  EXPECT_FALSE(tick(true, true, true).ready_timeout);  // became ready meanwhile
}

TEST_F(Fsm, ReadinessNeedsRunningPhase) {
  fsm.connected(clock.now());
  fsm.begin_stop(true, clock.now());
  EXPECT_FALSE(fsm.on_message(false, true));
  EXPECT_FALSE(fsm.on_message(true, false));  // both seen, but restarting
  EXPECT_EQ(fsm.on_exit(), KernelStateMachine::AfterExit::kRelaunch);
  fsm.relaunched();
  fsm.connected(clock.now());  // readiness starts over after a relaunch
  EXPECT_FALSE(fsm.on_message(true, false));
  EXPECT_TRUE(fsm.on_message(false, true));
}

TEST_F(Fsm, HeartbeatPingsEveryIntervalOnceReady) {
  fsm.connected(clock.now());
  clock.advance(5s);
  EXPECT_FALSE(tick(true, true, false).ping);  // not before ready
  EXPECT_TRUE(tick(true, true, true).ping);
  clock.advance(999ms);
  EXPECT_FALSE(tick(true, true, true).ping);
  fsm.on_heartbeat_reply(clock.now());
  clock.advance(1ms);
  auto due = tick(true, true, true);
  EXPECT_TRUE(due.ping);
  EXPECT_FALSE(due.silent);
}

TEST_F(Fsm, HeartbeatSilenceIsReportedAfterFourIntervalsAndClearedByAReply) {
  fsm.connected(clock.now());
  for (int i = 0; i < 4; ++i) {
    clock.advance(1s);
    auto due = tick(true, true, true);
    EXPECT_TRUE(due.ping);
    EXPECT_FALSE(due.silent) << i;  // 4 intervals exactly is not yet silence
  }
  clock.advance(1s);
  auto due = tick(true, true, true);
  ASSERT_TRUE(due.ping);
  ASSERT_TRUE(due.silent);
  EXPECT_EQ(*due.silent, 5s);
  fsm.on_heartbeat_reply(clock.now());
  clock.advance(1s);
  due = tick(true, true, true);
  EXPECT_TRUE(due.ping);
  EXPECT_FALSE(due.silent);
}

TEST_F(Fsm, ShutdownKillsAtTheDeadlineThenRemoves) {
  fsm.connected(clock.now());
  fsm.begin_stop(false, clock.now());
  EXPECT_EQ(fsm.phase(), Phase::kShuttingDown);
  clock.advance(2999ms);
  EXPECT_FALSE(tick().kill);
  clock.advance(1ms);
  EXPECT_FALSE(tick(false).kill);  // nothing to kill without a process
  EXPECT_TRUE(tick().kill);
  EXPECT_EQ(fsm.on_exit(), KernelStateMachine::AfterExit::kRemove);
}

TEST_F(Fsm, AStopAtOnceKillsAtTheNextTick) {
  fsm.connected(clock.now());
  fsm.begin_stop(false, clock.now(), true);
  EXPECT_EQ(fsm.phase(), Phase::kShuttingDown);
  EXPECT_TRUE(tick().kill);
  EXPECT_EQ(fsm.on_exit(), KernelStateMachine::AfterExit::kRemove);
}

TEST_F(Fsm, RestartKillsAtTheDeadlineThenRelaunches) {
  fsm.connected(clock.now());
  fsm.begin_stop(true, clock.now());
  EXPECT_EQ(fsm.phase(), Phase::kRestarting);
  EXPECT_FALSE(tick().ping);
  clock.advance(3s);
  EXPECT_TRUE(tick().kill);
  EXPECT_EQ(fsm.on_exit(), KernelStateMachine::AfterExit::kRelaunch);
  fsm.relaunched();
  EXPECT_EQ(fsm.phase(), Phase::kRunning);
}

TEST_F(Fsm, AnExitWhileRunningIsDeathAndStopsEverything) {
  fsm.connected(clock.now());
  EXPECT_EQ(fsm.on_exit(), KernelStateMachine::AfterExit::kDead);
  EXPECT_EQ(fsm.phase(), Phase::kDead);
  clock.advance(1h);
  auto due = tick(false, true, false);
  EXPECT_FALSE(due.kill || due.nudge || due.ready_timeout || due.ping);
  fsm.removing();  // a shutdown of the dead kernel
  EXPECT_EQ(fsm.on_exit(), KernelStateMachine::AfterExit::kRemove);
}

TEST_F(Fsm, AFailedRelaunchIsDead) {
  fsm.begin_stop(true, clock.now());
  EXPECT_EQ(fsm.on_exit(), KernelStateMachine::AfterExit::kRelaunch);
  fsm.failed();
  EXPECT_EQ(fsm.phase(), Phase::kDead);
  EXPECT_EQ(fsm.on_exit(), KernelStateMachine::AfterExit::kDead);
}

TEST(ManualClockTest, MovesOnlyWhenTold) {
  ManualClock c;
  auto a = c.now();
  auto w = c.wall();
  EXPECT_EQ(c.now(), a);
  c.advance(1500ms);
  EXPECT_EQ(c.now() - a, 1500ms);
  EXPECT_EQ(c.wall() - w, 1500ms);
}

}  // namespace
}  // namespace skylab::kernel
