// One periodic worker: a thread that runs a function every interval, early
// when woken, and stops promptly. The warm pool and the lifecycle monitor
// use it; anything else that "does X every N seconds" should too.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "common/clock.hpp"
#include "common/mutex.hpp"

namespace skylab {

//! Runs `fn` on its own thread: once at start, then again whenever
//! `interval` of `clock` has passed since the end of the last run, or at once
//! after wake(). Runs never overlap. An exception from `fn` is logged (with
//! `name`) and the worker carries on. Thread-safe.
class Periodic {
 public:
  //! Starts the thread. `clock` must outlive this object. `max_sleep` bounds
  //! one wait in real time, so that a ManualClock moved by a test is seen
  //! (it is not notified); with the real clock leave it at its default.
  Periodic(std::string name, std::chrono::nanoseconds interval, std::function<void()> fn,
           const Clock& clock = real_clock(),
           std::chrono::nanoseconds max_sleep = std::chrono::hours(1));
  //! stop().
  ~Periodic();
  Periodic(const Periodic&) = delete;
  Periodic& operator=(const Periodic&) = delete;

  //! The next run starts as soon as the current one (if any) ends, without
  //! waiting for the interval. Several wakes before that run make one run.
  void wake();
  //! Returns once the thread has ended: a run in progress finishes first; no
  //! run starts after this is called. Idempotent. Never call it from `fn`.
  void stop();
  //! How many runs have finished (tests).
  std::uint64_t runs() const;

 private:
  void loop();

  const std::string name_;
  const std::chrono::nanoseconds interval_;
  const std::function<void()> fn_;
  const Clock& clock_;
  const std::chrono::nanoseconds max_sleep_;
  mutable Mutex mutex_;
  CondVar cv_;
  bool stopping_ GUARDED_BY(mutex_) = false;
  bool woken_ GUARDED_BY(mutex_) = false;
  std::uint64_t runs_ GUARDED_BY(mutex_) = 0;
  std::thread thread_;  // last: started when everything above is set
};

}  // namespace skylab
