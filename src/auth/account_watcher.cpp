#include "auth/account_watcher.hpp"

#include <exception>
#include <string>

#include "common/log.hpp"

namespace skylab::auth {

AccountWatcher::AccountWatcher(std::shared_ptr<AccountStore> store, std::function<void()> on_change,
                               std::chrono::milliseconds poll, std::chrono::milliseconds sweep)
    : store_(std::move(store)),
      on_change_(std::move(on_change)),
      sweep_(sweep),
      last_version_(store_->data_version()),
      last_sweep_(std::chrono::steady_clock::now()),
      worker_(std::make_unique<Periodic>("account watcher", poll, [this] { check(); })) {}

AccountWatcher::~AccountWatcher() {
  stop();
}

void AccountWatcher::poke() {
  poked_ = true;
  worker_->wake();
}

void AccountWatcher::stop() {
  worker_->stop();
}

void AccountWatcher::check() {
  bool poked = poked_.exchange(false);
  auto version = store_->data_version();
  auto now = std::chrono::steady_clock::now();
  if (!poked && version == last_version_ && now - last_sweep_ < sweep_) return;
  last_version_ = version;
  last_sweep_ = now;
  try {
    on_change_();
  } catch (const std::exception& e) {
    log::error(std::string("account change handler failed: ") + e.what());
  }
}

}  // namespace skylab::auth
