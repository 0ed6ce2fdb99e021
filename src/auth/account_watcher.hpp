// Notices account changes (from this process or from `skylab user ...` in
// another) and lets the server re-check open connections against them.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>

#include "auth/account_store.hpp"
#include "common/periodic.hpp"

namespace skylab::auth {

//! One background thread (a Periodic). Every `poll` it asks SQLite whether another
//! connection committed (PRAGMA data_version); when one did, when poke() was
//! called, or at least every `sweep` (expiries), it calls `on_change`.
class AccountWatcher {
 public:
  AccountWatcher(std::shared_ptr<AccountStore> store, std::function<void()> on_change,
                 std::chrono::milliseconds poll = std::chrono::milliseconds(500),
                 std::chrono::milliseconds sweep = std::chrono::seconds(60));
  //! stop().
  ~AccountWatcher();
  AccountWatcher(const AccountWatcher&) = delete;
  AccountWatcher& operator=(const AccountWatcher&) = delete;

  //! Asks for an `on_change` call soon (a change made in this process).
  //! Thread-safe, never blocks.
  void poke();
  //! Joins the thread; idempotent. Must not be called from `on_change`.
  void stop();

 private:
  void check();  // on the worker's thread

  std::shared_ptr<AccountStore> store_;
  std::function<void()> on_change_;
  std::chrono::milliseconds sweep_;
  std::atomic<bool> poked_{false};
  std::int64_t last_version_;                         // touched by check() only
  std::chrono::steady_clock::time_point last_sweep_;  // touched by check() only
  std::unique_ptr<Periodic> worker_;                  // last: started when the rest is set
};

}  // namespace skylab::auth
