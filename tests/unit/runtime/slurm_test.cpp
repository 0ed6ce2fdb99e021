// The Slurm backend's channel (slurm_link.hpp) and its configuration keys.
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "runtime/config.hpp"
#include "runtime/slurm_link.hpp"

using namespace skylab;
using namespace skylab::runtime;

namespace {

struct Pair {
  int a = -1, b = -1;
  Pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    a = fds[0], b = fds[1];
  }
  ~Pair() { ::close(a), ::close(b); }
};

const std::string kSecret(32, 'k');

// What one side wrote, raw (to tamper with or replay).
std::string drain(int fd) {
  std::string out(1 << 16, '\0');
  ssize_t n = ::recv(fd, out.data(), out.size(), MSG_DONTWAIT);
  out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return out;
}

}  // namespace

TEST(SlurmChannel, RoundTripsBothWays) {
  Pair p;
  SecureChannel agent(p.a, kSecret, true), link(p.b, kSecret, false);
  ASSERT_TRUE(agent.send("hello").ok());
  ASSERT_TRUE(agent.send(std::string(100000, 'x')).ok());
  EXPECT_EQ(link.recv().value(), "hello");
  EXPECT_EQ(link.recv().value(), std::string(100000, 'x'));
  ASSERT_TRUE(link.send("back").ok());
  EXPECT_EQ(agent.recv().value(), "back");
}

TEST(SlurmChannel, AnotherRuntimesSecretIsRefused) {
  Pair p;
  SecureChannel agent(p.a, std::string(32, 'o'), true), link(p.b, kSecret, false);
  ASSERT_TRUE(agent.send("hello").ok());
  auto r = link.recv();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Error::Code::kForbidden);
}

TEST(SlurmChannel, DirectionKeysDiffer) {
  // A frame the link sent cannot be reflected back to it as the agent's.
  Pair p;
  SecureChannel link(p.a, kSecret, false), reader(p.b, kSecret, false);
  ASSERT_TRUE(link.send("hello").ok());
  EXPECT_FALSE(reader.recv().ok());
}

TEST(SlurmChannel, TamperedFramesAreRefused) {
  Pair p, q;
  SecureChannel agent(p.a, kSecret, true);
  ASSERT_TRUE(agent.send("print('hi')").ok());
  std::string raw = drain(p.b);
  ASSERT_GT(raw.size(), 40u);
  raw[raw.size() - 3] ^= 1;
  ASSERT_EQ(::write(q.a, raw.data(), raw.size()), static_cast<ssize_t>(raw.size()));
  SecureChannel link(q.b, kSecret, false);
  auto r = link.recv();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Error::Code::kForbidden);
}

TEST(SlurmChannel, ReplayedFramesAreRefused) {
  Pair p, q;
  SecureChannel agent(p.a, kSecret, true);
  ASSERT_TRUE(agent.send("one").ok());
  std::string raw = drain(p.b);
  ASSERT_EQ(::write(q.a, raw.data(), raw.size()), static_cast<ssize_t>(raw.size()));
  ASSERT_EQ(::write(q.a, raw.data(), raw.size()), static_cast<ssize_t>(raw.size()));
  SecureChannel link(q.b, kSecret, false);
  EXPECT_EQ(link.recv().value(), "one");
  auto again = link.recv();
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, Error::Code::kForbidden);
}

TEST(SlurmChannel, OversizedLengthIsRefusedBeforeReading) {
  Pair p;
  unsigned char hdr[4] = {0xff, 0xff, 0xff, 0x7f};
  ASSERT_EQ(::write(p.a, hdr, 4), 4);
  SecureChannel link(p.b, kSecret, false);
  auto r = link.recv();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Error::Code::kForbidden);
}

TEST(SlurmChannel, FramesOverTheCallersLimitAreRefused) {
  Pair p;
  SecureChannel agent(p.a, kSecret, true), link(p.b, kSecret, false);
  ASSERT_TRUE(agent.send(std::string(65, 'x')).ok());
  auto r = link.recv(64);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Error::Code::kForbidden);
}

TEST(SlurmChannel, ZmqFramesRoundTripAndMalformedOnesAreRefused) {
  auto body = encode_zmq(3, {"<IDS|MSG>", "sig", "{}", std::string("\0bin", 4)});
  auto m = decode_zmq(body);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->first, 3);
  ASSERT_EQ(m->second.size(), 4u);
  EXPECT_EQ(m->second[3], std::string("\0bin", 4));
  EXPECT_FALSE(decode_zmq(body.substr(0, body.size() - 1)).ok());
  EXPECT_FALSE(decode_zmq(body + "x").ok());
  std::string bad = body;
  bad[1] = 9;  // no such channel
  EXPECT_FALSE(decode_zmq(bad).ok());
}

TEST(SlurmConfig, SlurmTypesParse) {
  auto c = parse_config(R"toml(
[runtime_types.gpu-cluster]
display_name = "GPU (cluster)"
backend = "slurm"
partition = "gpu"
gpus = 1
memory = "16G"
cpus = 4
account = "lab"
qos = "normal"
constraint = "a100"
sbatch_options = ["--exclusive"]
[slurm]
conf = "/etc/slurm/slurm.conf"
listen_host = "10.0.0.1"
users = "same"
grace = "2m"
)toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  auto& t = c->types.at("gpu-cluster");
  EXPECT_EQ(t.backend, Backend::kSlurm);
  EXPECT_EQ(t.slurm.partition, "gpu");
  EXPECT_EQ(t.slurm.gpus, 1);
  EXPECT_EQ(t.gpus, 0);  // Slurm allocates them, not the server's GPU queue
  EXPECT_EQ(t.slurm.sbatch_options, std::vector<std::string>{"--exclusive"});
  EXPECT_EQ(c->slurm.users, "same");
  EXPECT_EQ(c->slurm.grace, std::chrono::minutes(2));
  EXPECT_EQ(c->types.at("cpu").backend, Backend::kLocal);
}

TEST(SlurmConfig, MistakesAreNamed) {
  auto local = parse_config("[runtime_types.x]\npartition = \"gpu\"\n");
  ASSERT_FALSE(local.ok());
  EXPECT_NE(local.error().message.find("backend"), std::string::npos);
  auto backend = parse_config("[runtime_types.x]\nbackend = \"k8s\"\n");
  ASSERT_FALSE(backend.ok());
  EXPECT_NE(backend.error().message.find("runtime_types.x.backend"), std::string::npos);
  EXPECT_FALSE(parse_config("[slurm]\nusers = \"everyone\"\n").ok());
  EXPECT_FALSE(parse_config("[slurm]\nusers = { alice = \"-rf\" }\n").ok());
  EXPECT_FALSE(parse_config("[slurm]\nport = 5\n").ok());
  auto table = parse_config("[slurm]\nusers = { alice = \"a.smith\" }\n");
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(table->slurm.users, "table");
  EXPECT_EQ(table->slurm.accounts.at("alice"), "a.smith");
}
