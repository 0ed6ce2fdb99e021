// ChannelsHub: which client WebSocket gets which kernel message (iopub to
// all, replies and stdin to the asker or its reconnected session), the
// bounded replay buffer while no client is connected, and kernel removal.
// Clients are real ChannelsConnections over a recording WebSocket; the kernel
// is FakeKernelService.
#include "api/channels.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "api/secrets.hpp"
#include "kernel/fake_kernel_service.hpp"

namespace skylab::api {
namespace {

using kernel::Channel;
using kernel::WsProtocol;
using nlohmann::json;

//! A WebSocket that keeps what is sent and how it was closed.
class RecordingWs final : public http::WebSocket {
 public:
  bool send(std::shared_ptr<const std::string> data, bool binary) override {
    frames.emplace_back(*data, binary);
    return true;
  }
  void close(std::uint16_t code, std::string reason) override {
    close_code = code;
    close_reason = std::move(reason);
  }
  const std::string& subprotocol() const override { return subprotocol_; }

  std::vector<std::pair<std::string, bool>> frames;
  std::uint16_t close_code = 0;
  std::string close_reason;

 private:
  std::string subprotocol_;
};

//! What a client got: (channel, msg_id) of each frame, decoded as it was framed.
struct Got {
  Channel channel;
  std::string msg_id;
  std::string msg_type;
  bool operator==(const Got&) const = default;
};

struct Client {
  std::shared_ptr<ChannelsConnection> conn;
  std::shared_ptr<RecordingWs> ws;
  WsProtocol protocol;

  std::vector<Got> got() const {
    std::vector<Got> out;
    for (auto& [data, binary] : ws->frames) {
      auto d = kernel::decode_from_client(protocol, data, binary);
      EXPECT_TRUE(d.ok()) << d.error().message;
      if (!d.ok()) continue;
      auto info = kernel::inspect(d->second).value();
      out.push_back({d->first, info.msg_id, info.msg_type});
    }
    return out;
  }
  std::vector<std::string> ids() const {
    std::vector<std::string> out;
    for (auto& g : got()) out.push_back(g.msg_id);
    return out;
  }
  //! The client sends a request on `ch` (as a browser would) and returns its msg_id.
  std::string request(const std::string& msg_id, Channel ch = Channel::kShell,
                      const std::string& type = "execute_request") {
    json frame = {{"channel", std::string(kernel::channel_name(ch))},
                  {"header",
                   {{"msg_id", msg_id},
                    {"msg_type", type},
                    {"session", "browser"},
                    {"username", "u"},
                    {"date", "2026-01-01T00:00:00Z"},
                    {"version", "5.3"}}},
                  {"parent_header", json::object()},
                  {"metadata", json::object()},
                  {"content", json::object()}};
    conn->on_message(frame.dump(), false);
    return msg_id;
  }
  void leave() { conn->on_close(); }
};

class ChannelsHubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kernels = std::make_shared<kernel::FakeKernelService>();
    kernel::KernelModel k;
    k.id = "k1";
    k.owner = "ann";
    kernels->put(k);
    hub = std::make_shared<ChannelsHub>(
        "k1", [this] { ++removed_calls; },
        [this](const std::string& id, Channel ch, const kernel::Message& m) {
          hooked.emplace_back(id, ch, kernel::inspect(m)->msg_id);
        });
  }

  Client connect(const std::string& session, WsProtocol p = WsProtocol::kLegacy) {
    Client c{std::make_shared<ChannelsConnection>(hub, kernels, "k1", session, p),
             std::make_shared<RecordingWs>(), p};
    c.conn->on_open(c.ws);
    return c;
  }

  //! The kernel sends a message of `type` on `ch`, child of request `parent`.
  void kernel_says(Channel ch, const std::string& type, const std::string& parent = "",
                   const json& content = json::object()) {
    json ph = parent.empty() ? json::object() : json{{"msg_id", parent}};
    auto msg = std::make_shared<const kernel::Message>(
        kernel::make_message(type, content, "kernel-session", "kernel", ph.dump()));
    auto info = kernel::inspect(*msg).value();
    hub->on_kernel_message(ch, msg, info);
    last_id = info.msg_id;
  }
  std::string iopub(const std::string& text = "x") {
    kernel_says(Channel::kIopub, "stream", "", {{"name", "stdout"}, {"text", text}});
    return last_id;
  }

  std::shared_ptr<kernel::FakeKernelService> kernels;
  std::shared_ptr<ChannelsHub> hub;
  int removed_calls = 0;
  std::vector<std::tuple<std::string, Channel, std::string>> hooked;
  std::string last_id;
};

TEST_F(ChannelsHubTest, IopubGoesToEveryClientInItsOwnFraming) {
  auto a = connect("s1", WsProtocol::kLegacy);
  auto b = connect("s2", WsProtocol::kV1);
  std::string id = iopub();
  ASSERT_EQ(a.ids(), std::vector<std::string>{id});
  ASSERT_EQ(b.ids(), std::vector<std::string>{id});
  EXPECT_FALSE(a.ws->frames[0].second) << "legacy JSON is a text frame";
  EXPECT_TRUE(b.ws->frames[0].second) << "v1 is a binary frame";
  EXPECT_EQ(a.got()[0].channel, Channel::kIopub);
}

TEST_F(ChannelsHubTest, RepliesGoOnlyToTheClientThatAsked) {
  auto a = connect("s1");
  auto b = connect("s2");
  a.request("ra");
  b.request("rb");
  // What the clients sent reached the kernel and the hook, in order.
  auto sent = kernels->sent();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(kernel::inspect(std::get<2>(sent[0]))->msg_id, "ra");
  ASSERT_EQ(hooked.size(), 2u);
  EXPECT_EQ(std::get<2>(hooked[1]), "rb");

  kernel_says(Channel::kShell, "execute_reply", "rb");
  std::string to_b = last_id;
  kernel_says(Channel::kShell, "execute_reply", "ra");
  std::string to_a = last_id;
  kernel_says(Channel::kShell, "execute_reply", "nobody-asked");
  EXPECT_EQ(a.ids(), std::vector<std::string>{to_a});
  EXPECT_EQ(b.ids(), std::vector<std::string>{to_b});
}

TEST_F(ChannelsHubTest, StdinRequestGoesToTheRequesterUntilItsReply) {
  auto a = connect("s1");
  auto b = connect("s2");
  a.request("ra");
  kernel_says(Channel::kStdin, "input_request", "ra", {{"prompt", "? "}});
  std::string input = last_id;
  // The client's answer on stdin is no new request: it is not tracked.
  a.request("answer", Channel::kStdin, "input_reply");
  kernel_says(Channel::kShell, "execute_reply", "ra");
  std::string reply = last_id;
  // After the reply the request is over: a late stdin message for it reaches nobody.
  kernel_says(Channel::kStdin, "input_request", "ra");
  kernel_says(Channel::kShell, "execute_reply", "answer");
  EXPECT_EQ(a.ids(), (std::vector<std::string>{input, reply}));
  EXPECT_TRUE(b.got().empty());
  EXPECT_EQ(a.got()[0].channel, Channel::kStdin);
}

TEST_F(ChannelsHubTest, ServerSecretRequestsReachNoClient) {
  auto a = connect("s1");
  a.request("ra");
  kernel_says(Channel::kStdin, kSecretRequest, "ra");
  EXPECT_TRUE(a.got().empty());
}

TEST_F(ChannelsHubTest, ClientIopubFramesAreDroppedAndBadFramesIgnored) {
  auto a = connect("s1");
  a.request("io", Channel::kIopub, "stream");
  a.conn->on_message("not json", false);
  EXPECT_TRUE(kernels->sent().empty());
  EXPECT_TRUE(hooked.empty());
  EXPECT_EQ(a.ws->close_code, 0) << "a malformed frame is ignored, not a reason to close";
}

TEST_F(ChannelsHubTest, AReconnectedSessionGetsTheRepliesOfItsRequests) {
  auto a = connect("s1");
  auto other = connect("s2");  // keeps the hub from buffering
  a.request("ra");
  a.request("ra2");
  a.leave();
  kernel_says(Channel::kShell, "execute_reply", "ra");  // nobody of s1 is here: dropped
  auto back = connect("s1");
  auto stranger = connect("s3");
  kernel_says(Channel::kShell, "execute_reply", "ra2");
  EXPECT_EQ(back.ids(), std::vector<std::string>{last_id});
  EXPECT_TRUE(other.got().empty());
  EXPECT_TRUE(stranger.got().empty());
  EXPECT_TRUE(a.got().empty());
}

TEST_F(ChannelsHubTest, NoSessionIdMeansNoReconnection) {
  auto a = connect("");
  auto other = connect("");
  a.request("ra");
  a.leave();
  kernel_says(Channel::kShell, "execute_reply", "ra");
  EXPECT_TRUE(other.got().empty());
}

TEST_F(ChannelsHubTest, WhileNoClientIsConnectedMessagesAreReplayedToTheSameSession) {
  auto a = connect("s1");
  a.request("ra");
  a.leave();
  std::vector<std::string> want = {iopub("1"), iopub("2")};
  kernel_says(Channel::kShell, "execute_reply", "ra");
  want.push_back(last_id);
  auto back = connect("s1");
  EXPECT_EQ(back.ids(), want);
  // Replayed once: live again afterwards, the buffer is gone.
  std::string live = iopub("3");
  want.push_back(live);
  EXPECT_EQ(back.ids(), want);
  back.leave();
  auto again = connect("s1");
  EXPECT_TRUE(again.got().empty());
}

TEST_F(ChannelsHubTest, AnotherSessionGetsNoReplayAndTheBufferIsDropped) {
  auto a = connect("s1");
  a.leave();
  iopub("missed");
  auto stranger = connect("s2");
  EXPECT_TRUE(stranger.got().empty());
  stranger.leave();
  auto late = connect("s1");  // the buffer went when s2 attached; s2's own is empty
  EXPECT_TRUE(late.got().empty());
}

TEST_F(ChannelsHubTest, NothingIsBufferedBeforeTheFirstClient) {
  iopub("early");
  auto a = connect("");
  auto b = connect("s1");
  EXPECT_TRUE(a.got().empty());
  EXPECT_TRUE(b.got().empty());
}

TEST_F(ChannelsHubTest, TheReplayBufferKeepsTheNewestMessagesByCount) {
  auto a = connect("s1");
  a.leave();
  const std::size_t extra = 5;
  std::vector<std::string> ids;
  for (std::size_t i = 0; i < ChannelsHub::kMaxBufferedMessages + extra; ++i)
    ids.push_back(iopub());
  auto back = connect("s1");
  auto got = back.ids();
  ASSERT_EQ(got.size(), ChannelsHub::kMaxBufferedMessages);
  EXPECT_EQ(got.front(), ids[extra]);
  EXPECT_EQ(got.back(), ids.back());
}

TEST_F(ChannelsHubTest, TheReplayBufferKeepsTheNewestMessagesByBytes) {
  auto a = connect("s1");
  a.leave();
  const std::string big(1u << 20, 'x');
  std::vector<std::string> ids;
  std::size_t each = 0;
  for (int i = 0; i < 70; ++i) {
    auto msg = kernel::make_message("stream", {{"name", "stdout"}, {"text", big}}, "ks");
    each = msg.byte_size();
    auto info = kernel::inspect(msg).value();
    ids.push_back(info.msg_id);
    hub->on_kernel_message(Channel::kIopub, std::make_shared<const kernel::Message>(std::move(msg)),
                           info);
  }
  auto back = connect("s1");
  auto got = back.ids();
  std::size_t fits = ChannelsHub::kMaxBufferedBytes / each;
  ASSERT_LT(fits, ids.size()) << "the test must overflow the byte bound";
  ASSERT_EQ(got.size(), fits);
  EXPECT_EQ(got.back(), ids.back());
  EXPECT_EQ(got.front(), ids[ids.size() - fits]);
}

TEST_F(ChannelsHubTest, PendingRequestsAreBoundedOldestFirst) {
  auto a = connect("s1");
  for (std::size_t i = 0; i <= ChannelsHub::kMaxPending; ++i)
    hub->track_request("r" + std::to_string(i), a.conn);
  kernel_says(Channel::kShell, "execute_reply", "r0");  // forgotten: the oldest
  kernel_says(Channel::kShell, "execute_reply", "r1");
  std::string r1 = last_id;
  kernel_says(Channel::kShell, "execute_reply", "r" + std::to_string(ChannelsHub::kMaxPending));
  std::string newest = last_id;
  EXPECT_EQ(a.ids(), (std::vector<std::string>{r1, newest}));
}

TEST_F(ChannelsHubTest, KernelRemovalClosesEveryClientAndRefusesNewOnes) {
  auto a = connect("s1");
  auto b = connect("s2", WsProtocol::kV1);
  hub->on_kernel_removed();
  EXPECT_EQ(removed_calls, 1);
  EXPECT_EQ(a.ws->close_code, 1000);
  EXPECT_EQ(b.ws->close_code, 1000);
  EXPECT_EQ(a.ws->close_reason, "kernel shut down");
  auto late = connect("s1");
  EXPECT_EQ(late.ws->close_code, 1000);
  a.leave();
  b.leave();
  iopub("after");  // no client, and no buffering after removal
  auto later = connect("s2");
  EXPECT_TRUE(later.got().empty());
  EXPECT_TRUE(late.got().empty());
}

TEST_F(ChannelsHubTest, ConnectionsAreCountedOnTheKernel) {
  auto a = connect("s1");
  auto b = connect("s2");
  EXPECT_EQ(kernels->get("k1")->connections, 2);
  a.leave();
  EXPECT_EQ(kernels->get("k1")->connections, 1);
}

TEST(ChannelsRegistry, OneHubPerKernelObservingItUntilItIsRemoved) {
  auto kernels = std::make_shared<kernel::FakeKernelService>();
  kernel::KernelModel k;
  k.id = "k1";
  kernels->put(k);
  auto reg = std::make_shared<ChannelsRegistry>(kernels);
  auto h1 = reg->hub("k1");
  ASSERT_TRUE(h1.ok()) << h1.error().message;
  EXPECT_EQ(reg->hub("k1").value(), h1.value());
  EXPECT_EQ(kernels->observer_count("k1"), 1u);
  EXPECT_FALSE(reg->hub("nope").ok());

  // A client of the hub gets what the kernel sends through the service.
  auto ws = std::make_shared<RecordingWs>();
  auto conn =
      std::make_shared<ChannelsConnection>(h1.value(), kernels, "k1", "s", WsProtocol::kLegacy);
  conn->on_open(ws);
  kernels->emit("k1", Channel::kIopub,
                kernel::make_message("status", {{"execution_state", "idle"}}, "ks"));
  EXPECT_EQ(ws->frames.size(), 1u);

  kernels->remove("k1");  // the kernel is gone: its hub closes and is forgotten
  EXPECT_EQ(ws->close_code, 1000);
  kernels->put(k);
  auto h2 = reg->hub("k1");
  ASSERT_TRUE(h2.ok());
  EXPECT_NE(h2.value(), h1.value());
  reg->close_all();  // a server shutting down: 1001 to the new hub's clients
}

}  // namespace
}  // namespace skylab::api
