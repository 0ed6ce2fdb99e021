#include "http/host_policy.hpp"

#include <gtest/gtest.h>

namespace skylab::http {
namespace {

TEST(HostPolicy, HostOf) {
  EXPECT_EQ(host_of("LocalHost:8888"), "localhost");
  EXPECT_EQ(host_of("127.0.0.1"), "127.0.0.1");
  EXPECT_EQ(host_of("[::1]:80"), "::1");
  EXPECT_EQ(host_of(""), std::nullopt);
  EXPECT_EQ(host_of("a:b"), std::nullopt);
  EXPECT_EQ(host_of("evil.example/x"), std::nullopt);
  EXPECT_EQ(host_of("[::1"), std::nullopt);
}

TEST(HostPolicy, AllowList) {
  auto allowed = default_allowed_hosts("127.0.0.1");
  EXPECT_TRUE(host_allowed("127.0.0.1:8888", allowed));
  EXPECT_TRUE(host_allowed("localhost:1234", allowed));
  EXPECT_TRUE(host_allowed("localhost.", allowed));
  EXPECT_TRUE(host_allowed("[::1]:8888", allowed));
  EXPECT_FALSE(host_allowed("evil.example", allowed));
  EXPECT_FALSE(host_allowed("evil.example:8888", allowed));
  EXPECT_FALSE(host_allowed("", allowed));
  EXPECT_FALSE(host_allowed("127.0.0.1.evil.example", allowed));
  EXPECT_TRUE(host_allowed("evil.example", {}));
  EXPECT_TRUE(host_allowed("evil.example", {"*"}));
  auto with_public = default_allowed_hosts("127.0.0.1", {"Colab.Example.Org"});
  EXPECT_TRUE(host_allowed("colab.example.org:443", with_public));
}

TEST(HostPolicy, EveryAddressAddsTheMachinesNames) {
  auto allowed = default_allowed_hosts("0.0.0.0");
  EXPECT_GT(allowed.size(), 4u);
  EXPECT_TRUE(host_allowed("127.0.0.1", allowed));
}

}  // namespace
}  // namespace skylab::http
