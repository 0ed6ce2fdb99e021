#include "drive/path.hpp"

#include <gtest/gtest.h>

namespace skylab::drive {

namespace {
std::string norm(std::string_view p) {
  auto r = DrivePath::parse(p);
  EXPECT_TRUE(r.ok()) << p << ": " << r.error().message;
  return r.ok() ? r->str() : "<error>";
}
bool rejected(std::string_view p) {
  auto r = DrivePath::parse(p);
  return !r.ok() && r.error().code == Error::Code::kBadRequest;
}
}  // namespace

TEST(DrivePath, NormalizesJupyterPaths) {
  EXPECT_EQ(norm(""), "");
  EXPECT_EQ(norm("/"), "");
  EXPECT_EQ(norm("a"), "a");
  EXPECT_EQ(norm("/a/b.ipynb"), "a/b.ipynb");
  EXPECT_EQ(norm("a/b/"), "a/b");
  EXPECT_EQ(norm("Untitled Folder/x y.txt"), "Untitled Folder/x y.txt");
  EXPECT_EQ(norm("d\xc3\xa9j\xc3\xa0/\xe6\x97\xa5\xe6\x9c\xac.ipynb"),
            "d\xc3\xa9j\xc3\xa0/\xe6\x97\xa5\xe6\x9c\xac.ipynb");
  EXPECT_EQ(norm("<img src=x onerror=alert(1)>.txt"), "<img src=x onerror=alert(1)>.txt");
  EXPECT_EQ(norm("100%.txt"), "100%.txt");
  EXPECT_EQ(norm("a%20b"), "a%20b");  // a literal name; only traversal encodings are refused
}

TEST(DrivePath, RejectsTraversal) {
  EXPECT_TRUE(rejected(".."));
  EXPECT_TRUE(rejected("../admin2/x"));
  EXPECT_TRUE(rejected("a/../../etc/passwd"));
  EXPECT_TRUE(rejected("a/.."));
  EXPECT_TRUE(rejected("./a"));
  EXPECT_TRUE(rejected("a/./b"));
  EXPECT_TRUE(rejected("%2e%2e/etc"));  // double-encoded: arrives decoded once
  EXPECT_TRUE(rejected("%2E%2e"));
  EXPECT_TRUE(rejected("%252e%252e/etc"));  // triple-encoded
  EXPECT_TRUE(rejected("a%2f..%2fb"));
  EXPECT_TRUE(rejected("a%5c..%5cb"));
}

TEST(DrivePath, RejectsAbsoluteNulBackslashAndControl) {
  EXPECT_TRUE(rejected("//etc/passwd"));
  EXPECT_TRUE(rejected("///x"));
  EXPECT_TRUE(rejected(std::string("a\0b", 3)));
  EXPECT_TRUE(rejected(std::string("ok.txt\0.png", 11)));
  EXPECT_TRUE(rejected("a\\b"));
  EXPECT_TRUE(rejected("..\\..\\windows"));
  EXPECT_TRUE(rejected("a//b"));
  EXPECT_TRUE(rejected("a\nb"));
  EXPECT_TRUE(rejected("a\rb"));
  EXPECT_TRUE(rejected("a\x7f"));
  EXPECT_TRUE(rejected("\xff\xfe.txt"));         // not UTF-8
  EXPECT_TRUE(rejected("\xc0\xaf"));             // overlong '/'
  EXPECT_TRUE(rejected(std::string(256, 'a')));  // NAME_MAX
  EXPECT_FALSE(rejected(std::string(255, 'a')));
  std::string deep;
  for (int i = 0; i < 1000; ++i) deep += "abcd/";
  EXPECT_TRUE(rejected(deep));  // over 4096 bytes
}

TEST(DrivePath, MessagesNameTheProblem) {
  auto r = DrivePath::parse("a/../b");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("'..'"), std::string::npos) << r.error().message;
  r = DrivePath::parse("//etc");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("absolute"), std::string::npos);
  r = DrivePath::parse(std::string("a\0", 2));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("NUL"), std::string::npos);
}

TEST(DrivePath, Structure) {
  auto p = DrivePath::parse("a/b/c.ipynb").value();
  EXPECT_EQ(p.name(), "c.ipynb");
  EXPECT_EQ(p.parent().str(), "a/b");
  EXPECT_EQ(p.parent().parent().parent().str(), "");
  EXPECT_TRUE(p.parent().parent().parent().is_root());
  EXPECT_TRUE(p.is_within(DrivePath::parse("a").value()));
  EXPECT_TRUE(p.is_within(DrivePath()));
  EXPECT_FALSE(p.is_within(DrivePath::parse("a/b/c").value()));
  // sibling prefix: "a2" is not inside "a"
  EXPECT_FALSE(DrivePath::parse("a2/x").value().is_within(DrivePath::parse("a").value()));
  EXPECT_TRUE(p.parent().child("d").ok());
  EXPECT_FALSE(p.parent().child("..").ok());
  EXPECT_FALSE(p.parent().child("x/y").ok());
  EXPECT_TRUE(DrivePath::parse(".git/config").value().is_hidden());
  EXPECT_TRUE(DrivePath::parse("a/.hidden").value().is_hidden());
  EXPECT_FALSE(DrivePath::parse("a/b.c").value().is_hidden());
}

}  // namespace skylab::drive
