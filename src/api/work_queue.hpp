// A small pool of threads for blocking work (file I/O, fsync, SQLite), so
// that the Asio thread never waits on the disk.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace skylab::api {

//! Thread-safe. Tasks run in FIFO order on `threads` workers.
class WorkQueue {
 public:
  //! `max_pending`: queued (not yet running) tasks beyond which post() refuses.
  WorkQueue(std::size_t threads, std::size_t max_pending);
  //! stop().
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  //! Queues `task`; false (task not run) when the queue is full or stopped.
  //! A task must not throw; exceptions are caught and logged.
  bool post(std::function<void()> task);
  //! Runs what is queued, then joins the workers. Later posts are refused.
  //! Idempotent; must not be called from a task.
  void stop();

 private:
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // GUARDED_BY(mu_)
  bool stopping_ = false;                    // GUARDED_BY(mu_)
  std::size_t max_pending_;
  std::vector<std::thread> threads_;
};

}  // namespace skylab::api
