// The life of one kernel as the manager's I/O thread tracks it: phases,
// readiness (kernel_info nudges), the stop deadline and the heartbeat. Pure
// logic on time points the caller passes in, with no sockets or processes,
// so that it is tested with a ManualClock (tests/unit/kernel).
#pragma once

#include <chrono>
#include <optional>

namespace skylab::kernel {

//! Where a kernel's process is in its life (the manager's view, not the
//! kernel's own execution state).
enum class Phase { kRunning, kRestarting, kShuttingDown, kDead };

struct LifecycleTiming {
  std::chrono::milliseconds ready_timeout{60000};      //!< from connecting to a failed when_ready
  std::chrono::milliseconds shutdown_wait{3000};       //!< shutdown_request to SIGKILL
  std::chrono::milliseconds heartbeat_interval{3000};  //!< between pings once ready
  std::chrono::milliseconds nudge_interval{100};       //!< kernel_info_request until it answers
  std::chrono::milliseconds nudge_after_info{10};      //!< then until iopub is live
};

//! What tick() found due; the caller performs it.
struct LifecycleDue {
  bool kill = false;           //!< the stop deadline passed: SIGKILL, reap, then on_exit()
  bool nudge = false;          //!< send a kernel_info_request
  bool ready_timeout = false;  //!< fail the ready waiters (the deadline re-arms)
  bool ping = false;           //!< send a heartbeat ping
  //! Set with `ping` when the previous pings went unanswered for over four
  //! intervals: how long the kernel has been silent (logged, not fatal).
  std::optional<std::chrono::steady_clock::duration> silent;
};

//! Not thread-safe: one kernel, one thread (the manager's I/O thread).
class KernelStateMachine {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  enum class AfterExit { kRemove, kRelaunch, kDead };

  explicit KernelStateMachine(LifecycleTiming timing) : t_(timing) {}

  Phase phase() const { return phase_; }
  bool got_info() const { return got_info_; }

  //! The sockets were (re)opened at `now` (start, restart, reattach):
  //! readiness starts over, the first nudge is due at once.
  void connected(TimePoint now);
  //! A message arrived: on iopub (`iopub`), or a reply to one of our nudges
  //! on shell (`own_shell_reply`). True when both have now been seen while
  //! running: the kernel is ready (the caller ignores repeats).
  bool on_message(bool iopub, bool own_shell_reply);
  //! A heartbeat reply arrived at `now`.
  void on_heartbeat_reply(TimePoint now);
  //! An orderly stop began at `now` (shutdown_request sent): kill is due
  //! at now + shutdown_wait unless the process exits first; with `at_once`
  //! (no request sent: nothing to save), at the next tick.
  void begin_stop(bool restart, TimePoint now, bool at_once = false);
  //! The process is gone. Shutting down: remove it; restarting: relaunch;
  //! otherwise it died (phase becomes kDead).
  AfterExit on_exit();
  //! A relaunch spawned the process again: running (call connected() next).
  void relaunched() { phase_ = Phase::kRunning; }
  //! Start-up failed or the kernel died: kDead.
  void failed() { phase_ = Phase::kDead; }
  //! A dead kernel is being removed.
  void removing() { phase_ = Phase::kShuttingDown; }
  //! What is due at `now`. `alive`: the process exists; `connected`: its
  //! sockets are open; `ready`: it answered kernel_info and iopub is live.
  LifecycleDue tick(TimePoint now, bool alive, bool connected, bool ready);

 private:
  LifecycleTiming t_;
  Phase phase_ = Phase::kRunning;
  bool got_info_ = false, got_iopub_ = false;
  TimePoint next_nudge_{}, ready_deadline_{}, phase_deadline_{};
  TimePoint hb_sent_{}, hb_last_reply_{};
  bool hb_outstanding_ = false;
};

}  // namespace skylab::kernel
