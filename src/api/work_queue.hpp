// A small pool of threads for blocking work (file I/O, fsync, SQLite), so
// that the Asio thread never waits on the disk.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <string_view>
#include <thread>
#include <vector>

#include "common/mutex.hpp"
#include "http/message.hpp"

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

// THE way a handler runs blocking work: on the queue, never on the Asio
// thread, and a refused post answers the request at once.

//! 503 "The server is busy; try again" with `Retry-After: 1`: the answer to a
//! request whose work the queue refused.
http::Response busy_response();

//! `work()`, or a 500 (logged as "`what` failed: …") when it throws.
http::Response run_guarded(const std::function<http::Response()>& work, std::string_view what);

//! Posts `task` on `queue`. When `queue` is null, full or stopped, `task` is
//! dropped (never run on the calling thread) and `refused` is called with
//! busy_response(). Returns whether `task` was queued.
bool post_or_busy(WorkQueue* queue, std::function<void()> task, const http::Responder& refused);

//! Runs `work` on `queue` and answers `done` with what it returns (a 500 when
//! it throws, see run_guarded); busy_response() at once when refused.
void respond_on_queue(WorkQueue* queue, http::Responder done, std::function<http::Response()> work,
                      std::string_view what);

}  // namespace skylab::api
