// Failed-login throttling: exponential back-off per key (a user name, a
// client address). Thread-safe; time is injected so tests need no sleeps.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <unordered_map>

#include "common/clock.hpp"
#include "common/mutex.hpp"

namespace skylab::auth {

struct ThrottleOptions {
  int free_failures = 5;                       //!< failures that cost no delay
  std::chrono::seconds base_delay{1};          //!< delay after the first counted failure
  std::chrono::seconds max_delay{15 * 60};     //!< cap of the doubling delay
  std::chrono::seconds forget_after{60 * 60};  //!< a key with no failure this long starts over
  std::size_t max_keys = 100000;               //!< memory bound; the stalest keys go first
};

//! Counts failures per key. Once a key has `free_failures` failures, the
//! next attempt must wait base_delay * 2^(failures - free_failures) (capped)
//! after the latest failure: 1 s, 2 s, 4 s ... Attempts made too early are
//! refused without being checked, so a locked key costs the server nothing.
class LoginThrottle {
 public:
  //! `clock` (its now()) outlives the throttle.
  explicit LoginThrottle(ThrottleOptions options = {}, const Clock& clock = real_clock());

  //! Zero when an attempt for `key` may go ahead now; otherwise how long to
  //! wait (rounded up to whole seconds, for Retry-After).
  std::chrono::seconds retry_after(const std::string& key) const;
  //! Records a failed attempt.
  void failure(const std::string& key);
  //! Forgets the key's failures (a successful login for a user name).
  void success(const std::string& key);
  //! Keys currently tracked (tests, metrics).
  std::size_t size() const;

 private:
  struct Entry {
    int failures = 0;
    std::chrono::steady_clock::time_point last;
  };
  std::chrono::steady_clock::duration delay_for(int failures) const;
  void prune_locked(std::chrono::steady_clock::time_point now) REQUIRES(mutex_);

  ThrottleOptions opts_;
  const Clock& clock_;
  mutable Mutex mutex_;
  std::unordered_map<std::string, Entry> entries_ GUARDED_BY(mutex_);
};

}  // namespace skylab::auth
