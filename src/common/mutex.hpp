// The project's lock types: std::mutex and std::condition_variable with the
// Clang thread-safety annotations that libstdc++ lacks, so that members
// marked GUARDED_BY(mu_) are checked at compile time
// (scripts/check_thread_safety.sh). Use these instead of std::mutex,
// std::lock_guard and std::unique_lock in src/.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <utility>

#include "common/thread_annotations.hpp"

namespace skylab {

//! A non-recursive mutex (std::mutex). Lock it through MutexLock.
class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  bool try_lock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  //! Tells the analysis that the caller holds this mutex (no runtime check).
  //! For code the analysis cannot follow; say why where it is used.
  void assert_held() const ASSERT_CAPABILITY(this) {}

 private:
  friend class CondVar;
  std::mutex mu_;
};

//! Holds `mu` from construction to destruction (std::unique_lock): unlock()
//! and lock() release and retake it inside the scope.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() RELEASE() {
    if (locked_) mu_.unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  //! Releases the mutex early; the destructor then does nothing.
  void unlock() RELEASE() {
    mu_.unlock();
    locked_ = false;
  }
  //! Retakes the mutex after unlock().
  void lock() ACQUIRE() {
    mu_.lock();
    locked_ = true;
  }

 private:
  friend class CondVar;
  Mutex& mu_;
  bool locked_ = true;
};

//! Releases `mu`, held by the caller, for its lifetime and retakes it on
//! destruction (exceptions included): the blocking part of a function that
//! REQUIRES(mu).
class SCOPED_CAPABILITY MutexUnlock {
 public:
  explicit MutexUnlock(Mutex& mu) RELEASE(mu) : mu_(mu) { mu_.unlock(); }
  ~MutexUnlock() RELEASE() { mu_.lock(); }  // RELEASE(): how Clang spells "end of scope"
  MutexUnlock(const MutexUnlock&) = delete;
  MutexUnlock& operator=(const MutexUnlock&) = delete;

 private:
  Mutex& mu_;
};

//! std::condition_variable for a Mutex held by a MutexLock. The waits take the
//! MutexLock, which must hold its mutex; they return with it held again.
//! A predicate runs with the lock held: write it `[&]() REQUIRES(mu_) {...}`
//! so that the analysis checks its body.
class CondVar {
 public:
  void notify_one() noexcept { cv_.notify_one(); }
  void notify_all() noexcept { cv_.notify_all(); }

  void wait(MutexLock& lock) {
    std::unique_lock<std::mutex> native(lock.mu_.mu_, std::adopt_lock);
    cv_.wait(native);
    native.release();  // the MutexLock owns the mutex again
  }
  template <class Clock, class Duration>
  std::cv_status wait_until(MutexLock& lock, const std::chrono::time_point<Clock, Duration>& t) {
    std::unique_lock<std::mutex> native(lock.mu_.mu_, std::adopt_lock);
    const std::cv_status status = cv_.wait_until(native, t);
    native.release();
    return status;
  }
  template <class Rep, class Period>
  std::cv_status wait_for(MutexLock& lock, const std::chrono::duration<Rep, Period>& d) {
    return wait_until(lock, std::chrono::steady_clock::now() + d);
  }

  // With a predicate, as std::condition_variable: returns once `pred()` is
  // true (or, for the timed waits, returns `pred()` at the deadline).
  // The analysis cannot see that `pred` runs under the caller's lock through
  // the template, hence NO_THREAD_SAFETY_ANALYSIS; the predicate's own
  // REQUIRES(mu_) gets its body checked.
  template <class Pred>
  void wait(MutexLock& lock, Pred pred) NO_THREAD_SAFETY_ANALYSIS {
    while (!pred()) wait(lock);
  }
  template <class Clock, class Duration, class Pred>
  bool wait_until(MutexLock& lock, const std::chrono::time_point<Clock, Duration>& t,
                  Pred pred) NO_THREAD_SAFETY_ANALYSIS {
    while (!pred())
      if (wait_until(lock, t) == std::cv_status::timeout) return pred();
    return true;
  }
  template <class Rep, class Period, class Pred>
  bool wait_for(MutexLock& lock, const std::chrono::duration<Rep, Period>& d,
                Pred pred) NO_THREAD_SAFETY_ANALYSIS {
    return wait_until(lock, std::chrono::steady_clock::now() + d, std::move(pred));
  }

 private:
  std::condition_variable cv_;
};

}  // namespace skylab
