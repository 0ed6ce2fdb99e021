#include "common/periodic.hpp"

#include <algorithm>
#include <exception>

#include "common/log.hpp"

namespace skylab {

Periodic::Periodic(std::string name, std::chrono::nanoseconds interval, std::function<void()> fn,
                   const Clock& clock, std::chrono::nanoseconds max_sleep)
    : name_(std::move(name)),
      interval_(interval),
      fn_(std::move(fn)),
      clock_(clock),
      max_sleep_(max_sleep),
      thread_([this] { loop(); }) {}

Periodic::~Periodic() {
  stop();
}

void Periodic::wake() {
  {
    MutexLock lock(mutex_);
    woken_ = true;
  }
  cv_.notify_all();
}

void Periodic::stop() {
  {
    MutexLock lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::uint64_t Periodic::runs() const {
  MutexLock lock(mutex_);
  return runs_;
}

void Periodic::loop() {
  MutexLock lock(mutex_);
  auto next = clock_.now();  // the first run is at once
  while (!stopping_) {
    auto now = clock_.now();
    if (!woken_ && now < next) {
      auto wait = std::min<std::chrono::nanoseconds>(next - now, max_sleep_);
      cv_.wait_for(lock, wait, [this]() REQUIRES(mutex_) { return stopping_ || woken_; });
      continue;
    }
    woken_ = false;
    lock.unlock();
    try {
      fn_();
    } catch (const std::exception& e) {
      log::error(name_ + ": " + e.what());
    } catch (...) {
      log::error(name_ + ": unknown exception");
    }
    lock.lock();
    ++runs_;
    next = clock_.now() + std::chrono::duration_cast<Clock::SteadyPoint::duration>(interval_);
  }
}

}  // namespace skylab
