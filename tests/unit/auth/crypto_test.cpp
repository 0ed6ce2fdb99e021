#include "auth/crypto.hpp"

#include <gtest/gtest.h>

namespace skylab::auth {

TEST(Crypto, PasswordHashIsArgon2idAndVerifies) {
  auto h = hash_password("correct horse battery", PasswordHashParams::minimal());
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->rfind("$argon2id$", 0), 0u) << *h;
  EXPECT_EQ(h->find("correct"), std::string::npos);
  EXPECT_TRUE(verify_password(*h, "correct horse battery"));
  EXPECT_FALSE(verify_password(*h, "correct horse batterY"));
  EXPECT_FALSE(verify_password(*h, ""));
}

TEST(Crypto, SaltsDiffer) {
  auto a = hash_password("same password", PasswordHashParams::minimal());
  auto b = hash_password("same password", PasswordHashParams::minimal());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(verify_password(*b, "same password"));
}

TEST(Crypto, InteractiveParamsAreLibsodiumsRecommendation) {
  auto p = PasswordHashParams::interactive();
  EXPECT_GE(p.mem_limit, 64u << 20);
  EXPECT_GE(p.ops_limit, 2u);
}

TEST(Crypto, MalformedHashesNeverVerify) {
  EXPECT_FALSE(verify_password("", "x"));
  EXPECT_FALSE(verify_password("plaintext", "plaintext"));
  EXPECT_FALSE(verify_password("$argon2i$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA", "x"));
  EXPECT_FALSE(verify_password("$argon2id$garbage", "x"));
  EXPECT_FALSE(verify_password(std::string(1000, 'a'), "x"));
}

TEST(Crypto, Sha256Hex) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace skylab::auth
