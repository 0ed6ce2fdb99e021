#include "auth/throttle.hpp"

#include <gtest/gtest.h>

#include "common/clock.hpp"

namespace skylab::auth {

using namespace std::chrono_literals;

class ThrottleTest : public ::testing::Test {
 protected:
  ManualClock clock_;
  const Clock& clock() { return clock_; }
  ThrottleOptions opts(int free = 3) {
    ThrottleOptions o;
    o.free_failures = free;
    o.base_delay = 1s;
    o.max_delay = 60s;
    o.forget_after = 600s;
    return o;
  }
};

TEST_F(ThrottleTest, FreeFailuresThenExponential) {
  LoginThrottle t(opts(3), clock());
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(t.retry_after("u").count(), 0) << i;
    t.failure("u");
  }
  EXPECT_EQ(t.retry_after("u").count(), 0);  // two failures cost nothing
  t.failure("u");                            // the 3rd: the next attempt waits 1 s
  EXPECT_EQ(t.retry_after("u").count(), 1);
  clock_.advance(1s);
  EXPECT_EQ(t.retry_after("u").count(), 0);
  t.failure("u");  // 4th: 2 s
  EXPECT_EQ(t.retry_after("u").count(), 2);
  clock_.advance(2s);
  t.failure("u");  // 5th: 4 s
  EXPECT_EQ(t.retry_after("u").count(), 4);
  clock_.advance(1500ms);
  EXPECT_EQ(t.retry_after("u").count(), 3);  // rounded up
  // Other keys are unaffected.
  EXPECT_EQ(t.retry_after("v").count(), 0);
}

TEST_F(ThrottleTest, DelayIsCapped) {
  LoginThrottle t(opts(0), clock());
  for (int i = 0; i < 200; ++i) t.failure("u");
  EXPECT_EQ(t.retry_after("u").count(), 60);
}

TEST_F(ThrottleTest, SuccessForgets) {
  LoginThrottle t(opts(1), clock());
  t.failure("u");
  t.failure("u");
  EXPECT_GT(t.retry_after("u").count(), 0);
  t.success("u");
  EXPECT_EQ(t.retry_after("u").count(), 0);
  t.failure("u");
  EXPECT_EQ(t.retry_after("u").count(), 1);  // starts over: 1 s again
}

TEST_F(ThrottleTest, QuietKeysAreForgotten) {
  LoginThrottle t(opts(1), clock());
  for (int i = 0; i < 10; ++i) t.failure("u");
  clock_.advance(601s);
  EXPECT_EQ(t.retry_after("u").count(), 0);
  t.failure("u");
  EXPECT_EQ(t.retry_after("u").count(), 1);  // counting restarted
}

TEST_F(ThrottleTest, BoundedMemory) {
  auto o = opts(0);
  o.max_keys = 100;
  LoginThrottle t(o, clock());
  for (int i = 0; i < 1000; ++i) {
    clock_.advance(1ms);
    t.failure("k" + std::to_string(i));
  }
  EXPECT_LE(t.size(), 100u);
  EXPECT_GT(t.retry_after("k999").count(), 0);  // the newest survive
}

}  // namespace skylab::auth
