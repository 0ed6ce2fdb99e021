#include "drive/codec.hpp"

#include <gtest/gtest.h>

#include <random>

namespace skylab::drive {

TEST(Codec, Base64RoundTripsEverySize) {
  std::mt19937 rng(7);
  for (std::size_t n = 0; n < 300; ++n) {
    std::string bytes(n, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng());
    auto enc = base64_encode(bytes);
    EXPECT_EQ(enc.size() % 4, 0u);
    auto dec = base64_decode(enc);
    ASSERT_TRUE(dec) << n;
    EXPECT_EQ(*dec, bytes) << n;
  }
}

TEST(Codec, Base64KnownValuesWhitespaceAndErrors) {
  EXPECT_EQ(base64_encode("Man"), "TWFu");
  EXPECT_EQ(base64_encode("Ma"), "TWE=");
  EXPECT_EQ(base64_encode("M"), "TQ==");
  EXPECT_EQ(base64_decode("TWFu\nTWE=").value(), "ManMa");
  EXPECT_EQ(base64_decode("TW Fu\r\n").value(), "Man");
  EXPECT_EQ(base64_decode("TWE").value(), "Ma");  // padding optional
  EXPECT_EQ(base64_decode("").value(), "");
  EXPECT_FALSE(base64_decode("TW!u"));
  EXPECT_FALSE(base64_decode("TWFu-_"));  // URL-safe alphabet is not accepted
  EXPECT_FALSE(base64_decode("TQ==TQ=="));
  EXPECT_FALSE(base64_decode("T"));
}

TEST(Codec, Sha256) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Sha256 h;
  h.update("a");
  h.update("bc");
  EXPECT_EQ(h.hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Codec, Mimetypes) {
  EXPECT_EQ(guess_mimetype("a.txt").value(), "text/plain");
  EXPECT_EQ(guess_mimetype("A.PNG").value(), "image/png");
  EXPECT_EQ(guess_mimetype("x.py").value(), "text/x-python");
  EXPECT_FALSE(guess_mimetype("x.ipynb"));
  EXPECT_FALSE(guess_mimetype("noext"));
  EXPECT_FALSE(guess_mimetype("trailing."));
}

}  // namespace skylab::drive
