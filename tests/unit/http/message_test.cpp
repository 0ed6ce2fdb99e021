#include "http/message.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace skylab::http {
namespace {

TEST(ResponseJson, AlwaysEscapesHtmlSoNoReplyRendersAsHtml) {
  auto r = Response::json(200, {{"name", "<script>alert(1)</script>&amp;"}, {"<k>", 1}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(
      r.body,
      R"({"\u003ck\u003e":1,"name":"\u003cscript\u003ealert(1)\u003c/script\u003e\u0026amp;"})");
  EXPECT_EQ(nlohmann::json::parse(r.body)["name"], "<script>alert(1)</script>&amp;");  // same value
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].second, "application/json");
}

TEST(ResponseJson, ErrorMessagesAreEscapedAndInvalidUtf8Replaced) {
  auto r = Response::error(400, "Unknown field '<img src=x onerror=alert(1)>\xff'");
  EXPECT_EQ(r.body.find('<'), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(r.body)["message"],
            "Unknown field '<img src=x onerror=alert(1)>\xef\xbf\xbd'");
}

}  // namespace
}  // namespace skylab::http
