#include "common/util.hpp"

#include <gtest/gtest.h>

#include <set>

namespace skylab::util {

TEST(Util, RandomHexHasLengthAndVaries) {
  auto a = random_hex(16), b = random_hex(16);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
}

TEST(Util, Uuid4Format) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    auto u = uuid4();
    ASSERT_EQ(u.size(), 36u);
    EXPECT_EQ(u[8], '-');
    EXPECT_EQ(u[14], '4');
    EXPECT_TRUE(u[19] == '8' || u[19] == '9' || u[19] == 'a' || u[19] == 'b');
    seen.insert(u);
  }
  EXPECT_EQ(seen.size(), 100u);
}

TEST(Util, IsoTime) {
  std::chrono::system_clock::time_point t{std::chrono::microseconds(1700000000123456LL)};
  EXPECT_EQ(iso_time(t), "2023-11-14T22:13:20.123456Z");
}

TEST(Util, UrlDecode) {
  EXPECT_EQ(url_decode("/a%20b").value(), "/a b");
  EXPECT_EQ(url_decode("a+b", true).value(), "a b");
  EXPECT_EQ(url_decode("a+b", false).value(), "a+b");
  EXPECT_EQ(url_decode("%2e%2E").value(), "..");
  EXPECT_FALSE(url_decode("%").has_value());
  EXPECT_FALSE(url_decode("%4").has_value());
  EXPECT_FALSE(url_decode("%zz").has_value());
  EXPECT_EQ(url_decode("%00").value(), std::string(1, '\0'));
}

TEST(Util, ValidUtf8) {
  EXPECT_TRUE(valid_utf8("plain"));
  EXPECT_TRUE(valid_utf8("h\xc3\xa9llo \xf0\x9f\x98\x80"));
  EXPECT_FALSE(valid_utf8("\xff"));
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));      // overlong '/'
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));  // surrogate
  EXPECT_FALSE(valid_utf8("\xe2\x82"));      // truncated
}

TEST(Util, SecureEquals) {
  EXPECT_TRUE(secure_equals("abc", "abc"));
  EXPECT_FALSE(secure_equals("abc", "abd"));
  EXPECT_FALSE(secure_equals("abc", "abcd"));
}

}  // namespace skylab::util
