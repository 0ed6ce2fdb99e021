// THE way a handler runs blocking work: on the work queue
// (common/work_queue.hpp), never on the Asio thread, and a refused post
// answers the request at once (503 when full).
#pragma once

#include <functional>
#include <string_view>

#include "common/work_queue.hpp"
#include "http/message.hpp"

namespace skylab::api {

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
