#include "kernel/state_machine.hpp"

namespace skylab::kernel {

void KernelStateMachine::connected(TimePoint now) {
  got_info_ = got_iopub_ = false;
  next_nudge_ = now;
  ready_deadline_ = now + t_.ready_timeout;
  hb_outstanding_ = false;
  hb_last_reply_ = now;
  hb_sent_ = now;
}

bool KernelStateMachine::on_message(bool iopub, bool own_shell_reply) {
  if (iopub) got_iopub_ = true;
  if (own_shell_reply) got_info_ = true;
  return phase_ == Phase::kRunning && got_info_ && got_iopub_;
}

void KernelStateMachine::on_heartbeat_reply(TimePoint now) {
  hb_outstanding_ = false;
  hb_last_reply_ = now;
}

void KernelStateMachine::begin_stop(bool restart, TimePoint now, bool at_once) {
  phase_ = restart ? Phase::kRestarting : Phase::kShuttingDown;
  phase_deadline_ = at_once ? now : now + t_.shutdown_wait;
}

KernelStateMachine::AfterExit KernelStateMachine::on_exit() {
  if (phase_ == Phase::kShuttingDown) return AfterExit::kRemove;
  if (phase_ == Phase::kRestarting) return AfterExit::kRelaunch;
  phase_ = Phase::kDead;
  return AfterExit::kDead;
}

LifecycleDue KernelStateMachine::tick(TimePoint now, bool alive, bool connected, bool ready) {
  LifecycleDue due;
  if ((phase_ == Phase::kShuttingDown || phase_ == Phase::kRestarting) && alive &&
      now >= phase_deadline_) {
    due.kill = true;
    return due;
  }
  if (phase_ != Phase::kRunning || !connected) return due;
  if (!ready && now >= next_nudge_) {
    due.nudge = true;
    next_nudge_ = now + (got_info_ ? t_.nudge_after_info : t_.nudge_interval);
  }
  if (!ready && now >= ready_deadline_) {
    ready_deadline_ = now + t_.ready_timeout;
    due.ready_timeout = true;
  }
  if (ready && now - hb_sent_ >= t_.heartbeat_interval) {
    if (hb_outstanding_ && now - hb_last_reply_ > 4 * t_.heartbeat_interval)
      due.silent = now - hb_last_reply_;
    due.ping = true;
    hb_sent_ = now;
    hb_outstanding_ = true;
  }
  return due;
}

}  // namespace skylab::kernel
