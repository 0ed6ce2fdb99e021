#include "api/work_queue.hpp"

#include <future>
#include <optional>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace skylab::api {
namespace {

std::string header(const http::Response& r, const std::string& name) {
  for (auto& [k, v] : r.headers)
    if (k == name) return v;
  return "";
}

TEST(RespondOnQueueTest, FullQueueAnswers503WithRetryAfterAndNeverRunsTheWork) {
  WorkQueue full(0, 0);  // no room at all: every post is refused
  bool ran = false;
  std::optional<http::Response> got;
  respond_on_queue(
      &full, [&](http::Response r) { got = std::move(r); },
      [&] {
        ran = true;
        return http::Response::empty(204);
      },
      "test");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 503);
  EXPECT_EQ(header(*got, "Retry-After"), "1");
  EXPECT_NE(got->body.find("busy"), std::string::npos);
  EXPECT_FALSE(ran);  // not run on the calling thread instead
}

TEST(RespondOnQueueTest, NullOrStoppedQueueIsRefusedLikeAFullOne) {
  for (bool stopped : {false, true}) {
    WorkQueue q(1, 100000);
    if (stopped) q.stop();
    std::optional<http::Response> got;
    bool ran = false;
    bool queued = post_or_busy(
        stopped ? &q : nullptr, [&] { ran = true; }, [&](http::Response r) { got = std::move(r); });
    EXPECT_FALSE(queued);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->status, 503);
    EXPECT_EQ(header(*got, "Retry-After"), "1");
    EXPECT_FALSE(ran);
  }
}

TEST(RespondOnQueueTest, WorkRunsOnAWorkerAndItsResponseIsSent) {
  WorkQueue q(1, 8);
  std::promise<std::pair<http::Response, std::thread::id>> p;
  auto caller = std::this_thread::get_id();
  std::thread::id worker;
  respond_on_queue(
      &q,
      [&](http::Response r) {
        p.set_value({std::move(r), std::this_thread::get_id()});
      },
      [&] {
        worker = std::this_thread::get_id();
        return http::Response::json(201, {{"ok", true}});
      },
      "test");
  auto [res, answered_on] = p.get_future().get();
  EXPECT_EQ(res.status, 201);
  EXPECT_EQ(res.body, R"({"ok":true})");
  EXPECT_NE(worker, caller);
  EXPECT_EQ(answered_on, worker);
}

TEST(RespondOnQueueTest, ThrowingWorkAnswers500) {
  WorkQueue q(1, 8);
  std::promise<http::Response> p;
  respond_on_queue(
      &q, [&](http::Response r) { p.set_value(std::move(r)); },
      []() -> http::Response { throw std::runtime_error("disk on fire"); }, "test");
  auto res = p.get_future().get();
  EXPECT_EQ(res.status, 500);
  EXPECT_EQ(res.body.find("disk on fire"), std::string::npos);  // no internals in the reply
}

}  // namespace
}  // namespace skylab::api
