#include "auth/account_watcher.hpp"

#include <exception>
#include <string>

#include "common/log.hpp"
#include "common/mutex.hpp"

namespace skylab::auth {

AccountWatcher::AccountWatcher(std::shared_ptr<AccountStore> store, std::function<void()> on_change,
                               std::chrono::milliseconds poll, std::chrono::milliseconds sweep)
    : store_(std::move(store)), on_change_(std::move(on_change)), poll_(poll), sweep_(sweep) {
  thread_ = std::thread([this] { run(); });
}

AccountWatcher::~AccountWatcher() {
  stop();
}

void AccountWatcher::poke() {
  {
    MutexLock lock(mutex_);
    poked_ = true;
  }
  cv_.notify_one();
}

void AccountWatcher::stop() {
  {
    MutexLock lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void AccountWatcher::run() {
  auto last_version = store_->data_version();
  auto last_sweep = std::chrono::steady_clock::now();
  for (;;) {
    bool poked;
    {
      MutexLock lock(mutex_);
      cv_.wait_for(lock, poll_, [this]() REQUIRES(mutex_) { return poked_ || stopping_; });
      if (stopping_) return;
      poked = poked_;
      poked_ = false;
    }
    auto version = store_->data_version();
    auto now = std::chrono::steady_clock::now();
    if (!poked && version == last_version && now - last_sweep < sweep_) continue;
    last_version = version;
    last_sweep = now;
    try {
      on_change_();
    } catch (const std::exception& e) {
      log::error(std::string("account change handler failed: ") + e.what());
    }
  }
}

}  // namespace skylab::auth
