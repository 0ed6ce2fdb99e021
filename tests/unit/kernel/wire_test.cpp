#include "kernel/wire.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace skylab::kernel {

namespace {
Message sample() {
  Message m;
  m.header =
      R"({"msg_id":"abc","msg_type":"execute_request","session":"s1","username":"u","date":"2020-01-01T00:00:00Z","version":"5.3"})";
  m.parent_header = "{}";
  m.metadata = "{}";
  m.content = R"({"code":"1+1"})";
  return m;
}
}  // namespace

TEST(Wire, SignMatchesKnownHmac) {
  // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog") split across parts.
  Message m;
  m.header = "The quick ";
  m.parent_header = "brown fox ";
  m.metadata = "jumps over ";
  m.content = "the lazy dog";
  EXPECT_EQ(Signer("key").sign(m),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
}

TEST(Wire, EmptyKeyDisablesSigning) {
  EXPECT_EQ(Signer("").sign(sample()), "");
  EXPECT_TRUE(Signer("").verify(sample(), "anything"));
}

TEST(Wire, FromFramesVerifiesSignature) {
  Signer s("secret");
  Message m = sample();
  std::vector<std::string> frames = {
      "ident", std::string(kDelimiter), s.sign(m), m.header, m.parent_header, m.metadata, m.content,
      "buf"};
  auto ok = from_frames(frames, s);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->identities, std::vector<std::string>{"ident"});
  EXPECT_EQ(ok->content, m.content);
  ASSERT_EQ(ok->buffers.size(), 1u);
  EXPECT_EQ(ok->buffers[0], "buf");

  std::vector<std::string> bad = {std::string(kDelimiter), "0000",     m.header,
                                  m.parent_header,         m.metadata, m.content};
  EXPECT_FALSE(from_frames(bad, s).ok());
  std::vector<std::string> tampered = {std::string(kDelimiter), s.sign(m),  m.header,
                                       m.parent_header,         m.metadata, R"({"code":"2+2"})"};
  EXPECT_FALSE(from_frames(tampered, s).ok());
}

TEST(Wire, FromFramesRejectsShortOrUndelimited) {
  Signer s("");
  std::vector<std::string> none = {"a", "b", "c", "d", "e", "f"};
  EXPECT_FALSE(from_frames(none, s).ok());
  std::vector<std::string> short_ = {std::string(kDelimiter), "", "{}", "{}"};
  EXPECT_FALSE(from_frames(short_, s).ok());
}

TEST(Wire, InspectReadsRoutingFields) {
  Message m = sample();
  m.parent_header = R"({"msg_id":"p1","session":"ps"})";
  auto info = inspect(m);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->msg_id, "abc");
  EXPECT_EQ(info->msg_type, "execute_request");
  EXPECT_EQ(info->session, "s1");
  EXPECT_EQ(info->parent_msg_id, "p1");
  EXPECT_EQ(info->parent_session, "ps");
}

TEST(Wire, InspectRejectsBadHeaders) {
  Message m = sample();
  m.header = "[]";
  EXPECT_FALSE(inspect(m).ok());
  m.header = R"({"msg_id":1,"msg_type":"x"})";
  EXPECT_FALSE(inspect(m).ok());
  m.header = "{not json";
  EXPECT_FALSE(inspect(m).ok());
  m = sample();
  m.parent_header = "[1,2,3]";
  EXPECT_FALSE(inspect(m).ok());
}

TEST(Wire, MakeMessageHasFreshHeader) {
  auto a = make_message("status", {{"execution_state", "dead"}}, "sess");
  auto b = make_message("status", {{"execution_state", "dead"}}, "sess");
  auto ia = inspect(a), ib = inspect(b);
  ASSERT_TRUE(ia.ok() && ib.ok());
  EXPECT_NE(ia->msg_id, ib->msg_id);
  EXPECT_EQ(ia->msg_type, "status");
  EXPECT_EQ(ia->session, "sess");
  EXPECT_EQ(nlohmann::json::parse(a.content)["execution_state"], "dead");
}

}  // namespace skylab::kernel
