// One clock seam: code that decides by time takes a `const Clock&` (or a
// shared_ptr to one) so that tests drive time by hand with ManualClock.
#pragma once

#include <chrono>
#include <cstdint>

#include "common/mutex.hpp"

namespace skylab {

//! Thread-safe. `now()` is monotonic (deadlines, intervals); `wall()` is the
//! calendar time shown to users and stored (last_activity, started).
class Clock {
 public:
  using SteadyPoint = std::chrono::steady_clock::time_point;
  using WallPoint = std::chrono::system_clock::time_point;
  virtual ~Clock() = default;
  virtual SteadyPoint now() const = 0;
  virtual WallPoint wall() const = 0;
};

//! The process's real clocks. A static object: never destroyed early.
inline const Clock& real_clock() {
  struct Real final : Clock {
    SteadyPoint now() const override { return std::chrono::steady_clock::now(); }
    WallPoint wall() const override { return std::chrono::system_clock::now(); }
  };
  static const Real clock;
  return clock;
}

//! `c.wall()` in whole seconds since the epoch (what the SQLite stores keep).
inline std::int64_t unix_seconds(const Clock& c) {
  return std::chrono::duration_cast<std::chrono::seconds>(c.wall().time_since_epoch()).count();
}

//! A clock that moves only when told (tests). Both readings advance together.
class ManualClock final : public Clock {
 public:
  ManualClock() = default;
  //! Starts with wall() at `wall` (tests of calendar rules: weeks, dates).
  explicit ManualClock(WallPoint wall) : wall_(wall) {}
  SteadyPoint now() const override {
    MutexLock lock(mutex_);
    return steady_;
  }
  WallPoint wall() const override {
    MutexLock lock(mutex_);
    return wall_;
  }
  //! Moves both readings forward by `d` (d >= 0).
  void advance(std::chrono::nanoseconds d) {
    MutexLock lock(mutex_);
    steady_ += std::chrono::duration_cast<std::chrono::steady_clock::duration>(d);
    wall_ += std::chrono::duration_cast<std::chrono::system_clock::duration>(d);
  }

 private:
  mutable Mutex mutex_;
  SteadyPoint steady_ GUARDED_BY(mutex_) = SteadyPoint{std::chrono::hours(1000)};
  WallPoint wall_ GUARDED_BY(mutex_) = WallPoint{std::chrono::hours(24 * 365 * 50)};
};

}  // namespace skylab
