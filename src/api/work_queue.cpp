#include "api/work_queue.hpp"

#include <exception>
#include <string>

#include "common/log.hpp"

namespace skylab::api {

http::Response busy_response() {
  auto res = http::Response::error(503, "The server is busy; try again");
  res.set_header("Retry-After", "1");
  return res;
}

http::Response run_guarded(const std::function<http::Response()>& work, std::string_view what) {
  try {
    return work();
  } catch (const std::exception& e) {
    log::error(std::string(what) + " failed: " + e.what());
  } catch (...) {
    log::error(std::string(what) + " failed");
  }
  return http::Response::error(500, "Internal server error");
}

bool post_or_busy(WorkQueue* queue, std::function<void()> task, const http::Responder& refused) {
  if (queue && queue->post(std::move(task))) return true;
  refused(busy_response());
  return false;
}

void respond_on_queue(WorkQueue* queue, http::Responder done, std::function<http::Response()> work,
                      std::string_view what) {
  post_or_busy(
      queue,
      [done, work = std::move(work), what = std::string(what)] { done(run_guarded(work, what)); },
      done);
}

}  // namespace skylab::api
