// Idle timeout and maximum lifetime of runtimes: the pure policy (tested
// with a fake clock) and the monitor thread that applies it to kernels.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/clock.hpp"
#include "common/periodic.hpp"
#include "kernel/manager.hpp"
#include "runtime/config.hpp"

namespace skylab::runtime {

//! Wall-clock time: deadlines are shown to users and compared with a
//! kernel's `started` and `last_activity`.
using TimePoint = Clock::WallPoint;

struct LifecycleInput {
  TimePoint started;
  TimePoint last_activity;
  bool busy = false;  //!< a cell is running: never idle
  Duration idle_timeout{};
  Duration max_lifetime{};
  Duration warning{};
  //! A deadline of its own (the owner's GPU quota runs out), or max().
  TimePoint quota_deadline = TimePoint::max();
};

struct LifecycleDecision {
  enum class Action { kNone, kWarn, kExpire };
  Action action = Action::kNone;
  std::string reason;       //!< "idle", "lifetime" or "quota" for kWarn/kExpire
  TimePoint idle_deadline;  //!< TimePoint::max() while busy
  TimePoint lifetime_deadline;
  TimePoint deadline() const { return std::min(idle_deadline, lifetime_deadline); }
};

//! What to do with a runtime at `now`. `warned` says a warning for the
//! current deadline was already given.
LifecycleDecision evaluate(const LifecycleInput& in, TimePoint now, bool warned);

//! Writes `k`'s runtime state file (read by skylab.runtime in the kernel)
//! as the policy sees it at `now`: its deadlines, no expiry requested. Used
//! when a kernel starts or is claimed, before the monitor's first pass.
void write_initial_state(const Config& config, const kernel::KernelModel& k, TimePoint now);

//! Applies the policy to every kernel once a second: writes each runtime's
//! state file (deadlines, for skylab.runtime), sends warning events, asks the
//! kernel to run its expiry hooks, then shuts it down. Thread-safe.
class LifecycleMonitor {
 public:
  //! `clock` (its wall() is "now"; tests pass a ManualClock) must outlive
  //! the monitor.
  LifecycleMonitor(std::shared_ptr<kernel::KernelService> kernels, Config config,
                   const Clock& clock = real_clock());
  ~LifecycleMonitor();
  void start();
  void stop();
  //! A deadline of a kernel's own beside its lifetime (the GPU quota), or
  //! nullopt; warned about and enforced as the lifetime is (reason "quota").
  //! Called on the monitor's thread; set before start().
  void set_deadline_cap(std::function<std::optional<TimePoint>(const kernel::KernelModel&)> cap) {
    cap_ = std::move(cap);
  }
  //! One pass over all kernels (the thread calls this; tests may too).
  void tick();

 private:
  struct Tracked {
    bool warned = false;
    TimePoint warned_deadline{};
    bool expiring = false;
    TimePoint expire_started{};
  };
  void write_state(const kernel::KernelModel& k, const LifecycleDecision& d, bool expire,
                   const std::string& reason);
  void send_event(const std::string& kernel_id, const std::string& event,
                  const LifecycleDecision& d);

  std::shared_ptr<kernel::KernelService> kernels_;
  Config config_;
  const Clock& clock_;
  std::function<std::optional<TimePoint>(const kernel::KernelModel&)> cap_;
  std::map<std::string, Tracked> tracked_;  // touched only by tick()
  std::unique_ptr<Periodic> worker_;        // calls tick(); set by start()
};

}  // namespace skylab::runtime
