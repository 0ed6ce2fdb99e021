// One work queue: a small pool of threads that runs blocking work (file I/O,
// fsync, SQLite, runtime starts) in FIFO order, so that the Asio thread never
// waits on the disk or a process. The HTTP side of it (503 when full) is
// api/work_queue.hpp.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "common/mutex.hpp"

namespace skylab {

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
  //! What stop() does with tasks still waiting.
  enum class Pending {
    kRun,   //!< runs them (file writes the client was promised)
    kDrop,  //!< drops them unrun (sign-ins nobody waits for any more)
  };
  //! Lets running tasks finish, handles the waiting ones as `pending` says,
  //! then joins the workers. Later posts are refused. Idempotent and
  //! thread-safe; must not be called from a task.
  void stop(Pending pending = Pending::kRun);

 private:
  void run();

  Mutex mu_;
  Mutex join_mu_;  // one stop() joins at a time
  CondVar cv_;
  std::deque<std::function<void()>> tasks_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  std::size_t max_pending_;
  std::vector<std::thread> threads_;
};

}  // namespace skylab
