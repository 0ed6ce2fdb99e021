#include "kernel/ws_framing.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace skylab::kernel {

namespace {
Message sample(bool with_buffers) {
  Message m;
  m.header = R"({"msg_id":"m1","msg_type":"comm_msg","session":"s"})";
  m.parent_header = R"({"msg_id":"p1"})";
  m.metadata = "{}";
  m.content = R"({"data":{"x":1}})";
  if (with_buffers) m.buffers = {std::string("\x00\x01\x02", 3), "hello"};
  return m;
}
}  // namespace

TEST(WsFraming, LegacyTextRoundTrip) {
  Message m = sample(false);
  auto info = inspect(m).value();
  auto f = encode_for_client(WsProtocol::kLegacy, Channel::kIopub, m, info);
  EXPECT_FALSE(f.binary);
  auto j = nlohmann::json::parse(f.data);
  EXPECT_EQ(j["channel"], "iopub");
  EXPECT_EQ(j["msg_type"], "comm_msg");
  EXPECT_EQ(j["msg_id"], "m1");
  EXPECT_EQ(j["parent_header"]["msg_id"], "p1");
  EXPECT_EQ(j["content"]["data"]["x"], 1);
  EXPECT_TRUE(j["buffers"].empty());

  auto back = decode_from_client(WsProtocol::kLegacy, f.data, false);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->first, Channel::kIopub);
  EXPECT_EQ(nlohmann::json::parse(back->second.content), nlohmann::json::parse(m.content));
}

TEST(WsFraming, LegacyBinaryRoundTrip) {
  Message m = sample(true);
  auto info = inspect(m).value();
  auto f = encode_for_client(WsProtocol::kLegacy, Channel::kShell, m, info);
  EXPECT_TRUE(f.binary);
  auto back = decode_from_client(WsProtocol::kLegacy, f.data, true);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->first, Channel::kShell);
  EXPECT_EQ(back->second.buffers, m.buffers);
}

TEST(WsFraming, V1RoundTripKeepsPartsByteExact) {
  Message m = sample(true);
  auto info = inspect(m).value();
  auto f = encode_for_client(WsProtocol::kV1, Channel::kStdin, m, info);
  EXPECT_TRUE(f.binary);
  auto back = decode_from_client(WsProtocol::kV1, f.data, true);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->first, Channel::kStdin);
  EXPECT_EQ(back->second.header, m.header);
  EXPECT_EQ(back->second.parent_header, m.parent_header);
  EXPECT_EQ(back->second.content, m.content);
  EXPECT_EQ(back->second.buffers, m.buffers);
}

TEST(WsFraming, V1LayoutMatchesJupyterServer) {
  // offsets: count, then [start of channel, end of channel, end of each part]
  Message m;
  m.header = "H";
  m.parent_header = "P";
  m.metadata = "M";
  m.content = "C";
  MessageInfo info{"id", "t", "", "", ""};
  auto f = encode_for_client(WsProtocol::kV1, Channel::kShell, m, info);
  auto le = [&](std::size_t at) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(f.data[at + i]);
    return v;
  };
  EXPECT_EQ(le(0), 6u);
  EXPECT_EQ(le(8), 56u);
  EXPECT_EQ(le(16), 61u);
  EXPECT_EQ(le(48), 65u);
  EXPECT_EQ(f.data.substr(56), "shellHPMC");
}

TEST(WsFraming, RejectsMalformedFrames) {
  EXPECT_FALSE(decode_from_client(WsProtocol::kLegacy, "{not json", false).ok());
  EXPECT_FALSE(decode_from_client(WsProtocol::kLegacy, "[]", false).ok());
  EXPECT_FALSE(
      decode_from_client(WsProtocol::kLegacy, R"({"header":{}})", false).ok());  // no channel
  EXPECT_FALSE(
      decode_from_client(WsProtocol::kLegacy, R"({"channel":"nope","header":{}})", false).ok());
  EXPECT_FALSE(
      decode_from_client(WsProtocol::kLegacy, R"({"channel":"shell","header":[]})", false).ok());
  EXPECT_FALSE(decode_from_client(WsProtocol::kV1, "short", true).ok());
  std::string huge_count(8, '\xff');
  huge_count += std::string(64, 'x');
  EXPECT_FALSE(decode_from_client(WsProtocol::kV1, huge_count, true).ok());
  // offsets past the end
  std::string bad;
  auto put = [&](std::uint64_t v) {
    for (int i = 0; i < 8; ++i) bad.push_back(char((v >> (8 * i)) & 0xff));
  };
  put(6);
  put(56);
  put(1000);
  put(1000);
  put(1000);
  put(1000);
  put(1000);
  EXPECT_FALSE(decode_from_client(WsProtocol::kV1, bad, true).ok());
  EXPECT_FALSE(
      decode_from_client(WsProtocol::kLegacy, std::string("\x00\x00\x00\x09", 4) + "xxxx", true)
          .ok());
}

}  // namespace skylab::kernel

namespace skylab::kernel {
namespace {

TEST(WsFramingLimits, DeepContentIsRefusedWith1007InBothFramings) {
  std::string deep = "{\"a\":" + std::string(50000, '[') + std::string(50000, ']') + "}";
  std::string legacy =
      "{\"channel\":\"shell\",\"header\":{\"msg_id\":\"1\",\"msg_type\":\"execute_request\"},"
      "\"content\":" +
      deep + "}";
  std::uint16_t code = 0;
  EXPECT_FALSE(decode_from_client(WsProtocol::kLegacy, legacy, false, &code).ok());
  EXPECT_EQ(code, 1007);

  // v1: offsets then channel, header, parent_header, metadata, content.
  std::vector<std::string> parts = {"shell", "{\"msg_id\":\"1\",\"msg_type\":\"execute_request\"}",
                                    "{}", "{}", deep};
  std::string frame;
  auto le64 = [&](std::uint64_t v) {
    for (int i = 0; i < 8; ++i) frame.push_back(static_cast<char>(v >> (8 * i)));
  };
  std::uint64_t n = parts.size() + 1;
  le64(n);
  std::uint64_t off = 8 * (n + 1);
  for (auto& p : parts) {
    le64(off);
    off += p.size();
  }
  le64(off);
  for (auto& p : parts) frame += p;
  code = 0;
  EXPECT_FALSE(decode_from_client(WsProtocol::kV1, frame, true, &code).ok());
  EXPECT_EQ(code, 1007);

  code = 7;
  EXPECT_FALSE(decode_from_client(WsProtocol::kLegacy, "{not json", false, &code).ok());
  EXPECT_EQ(code, 0);  // merely malformed: ignored, not closed
}

}  // namespace
}  // namespace skylab::kernel
