// Notices account changes (from this process or from `skylab user ...` in
// another) and lets the server re-check open connections against them.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <thread>

#include "auth/account_store.hpp"
#include "common/mutex.hpp"

namespace skylab::auth {

//! One background thread. Every `poll` it asks SQLite whether another
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
  void run();

  std::shared_ptr<AccountStore> store_;
  std::function<void()> on_change_;
  std::chrono::milliseconds poll_, sweep_;
  Mutex mutex_;
  CondVar cv_;
  bool poked_ GUARDED_BY(mutex_) = false;
  bool stopping_ GUARDED_BY(mutex_) = false;
  std::thread thread_;
};

}  // namespace skylab::auth
