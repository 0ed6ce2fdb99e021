#include "auth/auth.hpp"

#include <gtest/gtest.h>

namespace skylab::auth {

TEST(Auth, TokenFromAuthorizationHeader) {
  EXPECT_EQ(token_from_authorization("token abc").value(), "abc");
  EXPECT_EQ(token_from_authorization("Token  abc ").value(), "abc");
  EXPECT_EQ(token_from_authorization("Bearer xyz").value(), "xyz");
  EXPECT_FALSE(token_from_authorization("Basic dXNlcjpwYXNz").has_value());
  EXPECT_FALSE(token_from_authorization("token").has_value());
  EXPECT_FALSE(token_from_authorization("token    ").has_value());
}

namespace {

// Credentials from an Authorization header and a ?token= value only.
Credentials creds(std::string_view authorization, std::string_view query) {
  Credentials c;
  c.authorization_header = authorization;
  c.query_token = query;
  return c;
}

}  // namespace

TEST(Auth, AdminToken) {
  AdminTokenAuthenticator a("s3cret");
  EXPECT_TRUE(a.authenticate(creds("token s3cret", "")).has_value());
  EXPECT_TRUE(a.authenticate(creds("", "s3cret")).has_value());
  EXPECT_TRUE(a.authenticate(creds("token s3cret", ""))->admin);
  EXPECT_FALSE(a.authenticate(creds("token wrong", "")).has_value());
  EXPECT_FALSE(a.authenticate(creds("", "")).has_value());
  EXPECT_FALSE(a.authenticate(creds("", "s3cre")).has_value());
  // A header that is present but wrong is not rescued by a query token.
  EXPECT_FALSE(a.authenticate(creds("token wrong", "s3cret")).has_value());
}

}  // namespace skylab::auth
