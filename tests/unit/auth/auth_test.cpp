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

TEST(Auth, AdminToken) {
  AdminTokenAuthenticator a("s3cret");
  EXPECT_TRUE(a.authenticate({"token s3cret", ""}).has_value());
  EXPECT_TRUE(a.authenticate({"", "s3cret"}).has_value());
  EXPECT_TRUE(a.authenticate({"token s3cret", ""})->admin);
  EXPECT_FALSE(a.authenticate({"token wrong", ""}).has_value());
  EXPECT_FALSE(a.authenticate({"", ""}).has_value());
  EXPECT_FALSE(a.authenticate({"", "s3cre"}).has_value());
  // A header that is present but wrong is not rescued by a query token.
  EXPECT_FALSE(a.authenticate({"token wrong", "s3cret"}).has_value());
}

}  // namespace skylab::auth
