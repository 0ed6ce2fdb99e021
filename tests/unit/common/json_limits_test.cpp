#include "common/json_limits.hpp"

#include <gtest/gtest.h>

#include <string>

namespace skylab::json_limits {
namespace {

std::string nested(std::size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

TEST(JsonLimits, AcceptsUpToTheLimit) {
  auto j = parse(nested(kDefaultMaxDepth));
  ASSERT_TRUE(j.ok()) << j.error().message;
  EXPECT_TRUE(within_depth(*j));
  EXPECT_FALSE(within_depth(*j, kDefaultMaxDepth - 1));
}

TEST(JsonLimits, RefusesDeeperThanTheLimitWithoutRecursing) {
  auto j = parse("{\"a\":" + nested(50000) + "}");
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.error().code, Error::Code::kBadRequest);
  EXPECT_NE(j.error().message.find("nested deeper"), std::string::npos);
}

TEST(JsonLimits, BracketsInStringsDoNotCount) {
  std::string s = "{\"a\":\"" + std::string(1000, '[') + "\\\"" + std::string(1000, '{') + "\"}";
  auto j = parse(s);
  ASSERT_TRUE(j.ok()) << j.error().message;
  EXPECT_EQ(check_shape(s), Shape::kOk);
}

TEST(JsonLimits, RefusesTooLargeAndMalformed) {
  Limits l;
  l.max_bytes = 10;
  auto big = parse("[1,2,3,4,5,6,7]", l);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().code, Error::Code::kTooLarge);
  for (const char* bad : {"{", "[1,]", "{\"a\":NaN}", "\"\xff\"", "", "{\"a\":1}x"}) {
    auto j = parse(bad);
    EXPECT_FALSE(j.ok()) << bad;
  }
}

TEST(JsonLimits, OrderedKeepsKeyOrder) {
  auto j = parse_ordered("{\"b\":1,\"a\":2}");
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->dump(), "{\"b\":1,\"a\":2}");
}

}  // namespace
}  // namespace skylab::json_limits
