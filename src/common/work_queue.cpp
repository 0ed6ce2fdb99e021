#include "common/work_queue.hpp"

#include <exception>
#include <string>

#include "common/log.hpp"
#include "common/mutex.hpp"

namespace skylab {

WorkQueue::WorkQueue(std::size_t threads, std::size_t max_pending) : max_pending_(max_pending) {
  for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

WorkQueue::~WorkQueue() {
  stop();
}

bool WorkQueue::post(std::function<void()> task) {
  {
    MutexLock lock(mu_);
    if (stopping_ || tasks_.size() >= max_pending_) return false;
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
  return true;
}

void WorkQueue::stop(Pending pending) {
  std::deque<std::function<void()>> dropped;  // destroyed outside mu_
  {
    MutexLock lock(mu_);
    stopping_ = true;
    if (pending == Pending::kDrop) dropped.swap(tasks_);
  }
  cv_.notify_all();
  MutexLock join(join_mu_);
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

void WorkQueue::run() {
  while (true) {
    std::function<void()> task;
    {
      MutexLock lock(mu_);
      cv_.wait(lock, [this]() REQUIRES(mu_) { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping and drained
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    try {
      task();
    } catch (const std::exception& e) {
      log::error(std::string("background task failed: ") + e.what());
    } catch (...) {
      log::error("background task failed");
    }
  }
}

}  // namespace skylab
