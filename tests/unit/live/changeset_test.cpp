#include "live/changeset.hpp"

#include <gtest/gtest.h>

namespace skylab::live {
namespace {

using nlohmann::json;

std::string run_cs(std::string_view text, const json& cs) {
  auto r = apply_changes(text, cs, 1000, 1 << 20);
  return r.ok() ? r.value() : "ERR:" + r.error().message;
}

TEST(ChangeSet, CountsUtf16CodeUnits) {
  EXPECT_EQ(utf16_length("abc"), 3u);
  EXPECT_EQ(utf16_length("é"), 1u);  // 2 bytes, 1 unit
  EXPECT_EQ(utf16_length("€"), 1u);  // 3 bytes, 1 unit
  EXPECT_EQ(utf16_length("😀"), 2u);  // 4 bytes, a surrogate pair
  EXPECT_EQ(utf16_length("a\nb"), 3u);
}

TEST(ChangeSet, AppliesCodeMirrorJson) {
  // Keep 1, replace 1 by two lines, keep 1: "a" + "X\nY" + "c".
  EXPECT_EQ(run_cs("abc", json::parse(R"([1,[1,"X","Y"],1])")), "aX\nYc");
  EXPECT_EQ(run_cs("abc", json::parse(R"([[3]])")), "");
  EXPECT_EQ(run_cs("", json::parse(R"([[0,"new"]])")), "new");
  // Positions after non-ASCII text are in UTF-16 units.
  EXPECT_EQ(run_cs("é😀x", json::parse(R"([3,[1,"y"]])")), "é😀y");
  EXPECT_EQ(run_cs("é😀x", json::parse(R"([1,[2],1])")), "éx");
}

TEST(ChangeSet, RefusesWhatDoesNotFit) {
  EXPECT_EQ(run_cs("abc", json::parse("[2]")).rfind("ERR:", 0), 0u);             // too short
  EXPECT_EQ(run_cs("abc", json::parse("[4]")).rfind("ERR:", 0), 0u);             // too long
  EXPECT_EQ(run_cs("😀", json::parse(R"([1,[0,"x"],1])")).rfind("ERR:", 0), 0u);  // splits a pair
  EXPECT_EQ(run_cs("abc", json::parse(R"([[1,"a\nb"],2])")).rfind("ERR:", 0),
            0u);  // a line break in a line
  EXPECT_EQ(run_cs("abc", json::parse(R"([-1,4])")).rfind("ERR:", 0), 0u);
  EXPECT_EQ(run_cs("abc", json::parse(R"("abc")")).rfind("ERR:", 0), 0u);
  EXPECT_EQ(run_cs("abc", json::parse(R"([[1,2],2])")).rfind("ERR:", 0), 0u);
  auto big = apply_changes("", json::parse(R"([[0,"0123456789"]])"), 10, 5);
  EXPECT_FALSE(big.ok());
}

TEST(ChangeSet, DiffRoundTrips) {
  for (auto [a, b] : std::vector<std::pair<std::string, std::string>>{{"abc", "abXc"},
                                                                      {"", "x\ny"},
                                                                      {"é😀x", "é😀"},
                                                                      {"😀", "😁"},
                                                                      {"same", "same"},
                                                                      {"a\nb\n", "a\nc\n"}}) {
    auto r = apply_changes(a, diff_changes(a, b), 1000, 1 << 20);
    ASSERT_TRUE(r.ok()) << a << " -> " << b << ": " << r.error().message;
    EXPECT_EQ(r.value(), b);
  }
}

TEST(ChangeSet, NormalizesNewlines) {
  EXPECT_EQ(normalize_newlines("a\r\nb\rc\n"), "a\nb\nc\n");
}

}  // namespace
}  // namespace skylab::live
