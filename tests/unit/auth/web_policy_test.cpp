#include "auth/web_policy.hpp"

#include <gtest/gtest.h>

namespace skylab::auth {

TEST(Redirect, LocalPathsAreSafe) {
  for (const char* ok : {"/", "/tree", "/notebooks/a%20b.ipynb?x=1#cell-2", "/api/me", "/a//b"})
    EXPECT_TRUE(is_safe_redirect(ok)) << ok;
  EXPECT_EQ(safe_redirect_target("/tree?x=1"), "/tree?x=1");
}

TEST(Redirect, OtherHostsAreRefused) {
  for (const char* bad : {"",
                          "//evil",
                          "//evil.com/x",
                          "\\\\evil",
                          "\\evil",
                          "/\\evil",
                          "/\\/evil",
                          "https:///x",
                          "https://evil",
                          "http:evil",
                          "javascript:alert(1)",
                          "evil.com",
                          "/\t/evil",
                          "/\n/evil",
                          " /x",
                          "/%2F/evil",
                          "/%2fevil",
                          "/%5Cevil",
                          "/x y",
                          "/\x7f",
                          "/caf\xc3\xa9"})
    EXPECT_FALSE(is_safe_redirect(bad)) << bad;
  EXPECT_EQ(safe_redirect_target("//evil"), "/");
  EXPECT_EQ(safe_redirect_target("https:///x"), "/");
  EXPECT_FALSE(is_safe_redirect("/" + std::string(5000, 'a')));
}

TEST(Cookies, ParseHeader) {
  std::string h = "a=1; skylab_session=abc; _xsrf=\"q\" ;b=";
  EXPECT_EQ(cookie_value(h, "a").value(), "1");
  EXPECT_EQ(cookie_value(h, "skylab_session").value(), "abc");
  EXPECT_EQ(cookie_value(h, "_xsrf").value(), "q");
  EXPECT_EQ(cookie_value(h, "b").value(), "");
  EXPECT_FALSE(cookie_value(h, "session").has_value());
  EXPECT_FALSE(cookie_value("", "a").has_value());
  EXPECT_FALSE(cookie_value("garbage", "garbage").has_value());
  EXPECT_EQ(cookie_value("x=1; x=2", "x").value(), "1");
}

TEST(Cookies, Attributes) {
  EXPECT_EQ(session_cookie_name(false), "skylab_session");
  EXPECT_EQ(session_cookie_name(true), "__Host-skylab_session");
  auto c = set_cookie("s", "v", true, false, 60);
  EXPECT_EQ(c, "s=v; Path=/; SameSite=Lax; Max-Age=60; HttpOnly");
  auto sc = set_cookie("__Host-s", "v", true, true, -1);
  EXPECT_NE(sc.find("; Secure"), std::string::npos);
  EXPECT_EQ(sc.find("Max-Age"), std::string::npos);
  EXPECT_EQ(sc.find("Domain"), std::string::npos);
  EXPECT_EQ(set_cookie("_xsrf", "", false, false, 0).find("HttpOnly"), std::string::npos);
}

TEST(Xsrf, BoundToSessionAndOneWay) {
  auto a = xsrf_token_for_session("secret-a");
  EXPECT_EQ(a, xsrf_token_for_session("secret-a"));
  EXPECT_NE(a, xsrf_token_for_session("secret-b"));
  EXPECT_EQ(a.find("secret"), std::string::npos);
  EXPECT_EQ(a.size(), 64u);
}

TEST(Origin, MatchesHost) {
  EXPECT_TRUE(origin_matches_host("http://127.0.0.1:8888", "127.0.0.1:8888"));
  EXPECT_TRUE(origin_matches_host("http://Example.org", "example.org"));
  EXPECT_TRUE(origin_matches_host("http://example.org", "example.org:80"));
  EXPECT_TRUE(origin_matches_host("https://example.org:443", "example.org"));
  EXPECT_TRUE(origin_matches_host("http://[::1]:8888", "[::1]:8888"));
  EXPECT_FALSE(origin_matches_host("http://evil.org", "example.org"));
  EXPECT_FALSE(origin_matches_host("http://example.org:8889", "example.org:8888"));
  // Host without a port means the default port of the scheme the page used.
  EXPECT_TRUE(origin_matches_host("https://example.org", "example.org"));
  EXPECT_FALSE(origin_matches_host("https://example.org", "example.org:80"));
  EXPECT_FALSE(origin_matches_host("null", "example.org"));
  EXPECT_FALSE(origin_matches_host("", "example.org"));
  EXPECT_FALSE(origin_matches_host("http://example.org.evil.org", "example.org"));
  EXPECT_FALSE(origin_matches_host("http://example.org@evil.org", "evil.org"));
  EXPECT_FALSE(origin_matches_host("http://example.org/path", "example.org"));
  EXPECT_FALSE(origin_matches_host("file://example.org", "example.org"));
  EXPECT_FALSE(origin_matches_host("http://example.org", ""));
}

class CrossSiteTest : public ::testing::Test {
 protected:
  Identity cookie_user() {
    Identity id;
    id.username = "alice";
    id.via = Via::kSession;
    id.xsrf = "the-xsrf-token";
    return id;
  }
  RequestFacts facts(const char* method, const char* origin = "", const char* xsrf = "") {
    RequestFacts f;
    f.method = method;
    f.origin = origin;
    f.host = "skylab.example:8888";
    f.presented_xsrf = xsrf;
    return f;
  }
};

TEST_F(CrossSiteTest, CookieStateChangesNeedTheXsrfToken) {
  auto who = cookie_user();
  EXPECT_EQ(check_cross_site(who, facts("GET")), CrossSite::kAllowed);
  EXPECT_EQ(check_cross_site(who, facts("HEAD")), CrossSite::kAllowed);
  for (const char* m : {"POST", "PUT", "PATCH", "DELETE"}) {
    EXPECT_EQ(check_cross_site(who, facts(m)), CrossSite::kMissingXsrf) << m;
    EXPECT_EQ(check_cross_site(who, facts(m, "", "wrong")), CrossSite::kBadXsrf) << m;
    EXPECT_EQ(check_cross_site(who, facts(m, "", "the-xsrf-token")), CrossSite::kAllowed) << m;
    EXPECT_EQ(check_cross_site(who, facts(m, "http://skylab.example:8888", "the-xsrf-token")),
              CrossSite::kAllowed)
        << m;
    // The right token from a foreign page (e.g. leaked) is still refused.
    EXPECT_EQ(check_cross_site(who, facts(m, "http://evil.example", "the-xsrf-token")),
              CrossSite::kForeignOrigin)
        << m;
  }
}

TEST_F(CrossSiteTest, SessionWithoutXsrfNeverPasses) {
  auto who = cookie_user();
  who.xsrf.clear();
  EXPECT_EQ(check_cross_site(who, facts("POST", "", "")), CrossSite::kMissingXsrf);
  EXPECT_EQ(check_cross_site(who, facts("POST", "", "x")), CrossSite::kBadXsrf);
}

TEST_F(CrossSiteTest, CookieWebSocketsNeedTheirOwnOrigin) {
  auto who = cookie_user();
  auto f = facts("GET", "http://skylab.example:8888");
  f.websocket = true;
  EXPECT_EQ(check_cross_site(who, f), CrossSite::kAllowed);
  f.origin = "http://evil.example";
  EXPECT_EQ(check_cross_site(who, f), CrossSite::kForeignOrigin);
  f.origin = "";
  EXPECT_EQ(check_cross_site(who, f), CrossSite::kForeignOrigin);
}

TEST_F(CrossSiteTest, TokenRequestsAreExempt) {
  for (Via via : {Via::kApiToken, Via::kAdminToken}) {
    Identity who;
    who.username = "alice";
    who.via = via;
    EXPECT_EQ(check_cross_site(who, facts("POST", "http://evil.example")), CrossSite::kAllowed);
    auto f = facts("GET", "http://evil.example");
    f.websocket = true;
    EXPECT_EQ(check_cross_site(who, f), CrossSite::kAllowed);
  }
}

}  // namespace skylab::auth
