#include "runtime/config.hpp"

#include <gtest/gtest.h>

namespace skylab::runtime {

using namespace std::chrono_literals;

TEST(RuntimeConfig, Durations) {
  EXPECT_EQ(parse_duration("90m").value(), 90min);
  EXPECT_EQ(parse_duration("12h").value(), 12h);
  EXPECT_EQ(parse_duration("30s").value(), 30s);
  EXPECT_EQ(parse_duration("1h30m").value(), 90min);
  EXPECT_EQ(parse_duration("45").value(), 45s);
  EXPECT_FALSE(parse_duration("").ok());
  EXPECT_FALSE(parse_duration("m").ok());
  EXPECT_FALSE(parse_duration("10x").ok());
  EXPECT_FALSE(parse_duration("-5m").ok());
  EXPECT_FALSE(parse_duration("1h30").ok());
}

TEST(RuntimeConfig, Sizes) {
  EXPECT_EQ(parse_size("8G").value(), 8ull << 30);
  EXPECT_EQ(parse_size("512M").value(), 512ull << 20);
  EXPECT_EQ(parse_size("512MiB").value(), 512ull << 20);
  EXPECT_EQ(parse_size("1.5G").value(), 3ull << 29);
  EXPECT_EQ(parse_size("1024").value(), 1024u);
  EXPECT_FALSE(parse_size("lots").ok());
  EXPECT_FALSE(parse_size("8Q").ok());
}

TEST(RuntimeConfig, DesignExampleParses) {
  auto c = parse_config(R"(
[runtimes]
idle_timeout = "90m"     # no execution and no client activity
max_lifetime = "12h"
warning = "10m"
[runtime_types.cpu]
memory = "8G"
cpus = 2
[runtime_types.gpu]
gpus = 1
[gpus]
fake = 0
)");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->runtimes.idle_timeout, 90min);
  EXPECT_EQ(c->types.at("cpu").memory_bytes, 8ull << 30);
  EXPECT_EQ(c->types.at("cpu").cpus, 2);
  EXPECT_EQ(c->types.at("gpu").gpus, 1);
  EXPECT_EQ(c->types.at("gpu").display_name, "GPU");
  EXPECT_EQ(c->max_lifetime(c->types.at("gpu")), 12h);
}

TEST(RuntimeConfig, PerTypeDeadlinesOverride) {
  auto c = parse_config(
      "[runtimes]\nidle_timeout = \"1h\"\n[runtime_types.short]\nidle_timeout = \"5s\"\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->idle_timeout(c->types.at("short")), 5s);
  EXPECT_EQ(c->idle_timeout(c->types.at("cpu")), 1h);
}

TEST(RuntimeConfig, UnknownKeysAreNamed) {
  auto a = parse_config("[runtimes]\nidle_timeut = \"5m\"\n");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.error().message.find("runtimes.idle_timeut"), std::string::npos) << a.error().message;
  auto b = parse_config("[runtime_types.gpu]\ngpu = 1\n");
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().message.find("runtime_types.gpu.gpu"), std::string::npos)
      << b.error().message;
  auto d = parse_config("[server]\nport = 1\n");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message.find("server"), std::string::npos);
}

TEST(RuntimeConfig, BadValuesAreNamed) {
  auto a = parse_config("[runtimes]\nmax_lifetime = \"soon\"\n");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.error().message.find("runtimes.max_lifetime"), std::string::npos);
  EXPECT_FALSE(parse_config("[runtime_types.cpu]\ncpus = \"two\"\n").ok());
  EXPECT_FALSE(parse_config("[gpus]\nfake = -1\n").ok());
  EXPECT_FALSE(parse_config("[runtimes]\ndefault_type = \"tpu\"\n").ok());
  EXPECT_FALSE(parse_config("[runtimes]\nwarning = \"13h\"\n").ok());
  EXPECT_FALSE(parse_config("not toml at all [").ok());
}

TEST(RuntimeConfig, WarmPoolAndDisk) {
  auto c = parse_config(R"(
[runtimes]
warm_pool = 2
[runtime_types.small]
disk = "64M"
)");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->runtimes.warm_pool, 2);
  EXPECT_EQ(c->types.at("small").disk_bytes, 64ull << 20);
  EXPECT_EQ(c->types.at("cpu").disk_bytes, 0u);  // no limit unless configured
  EXPECT_EQ(default_config().runtimes.warm_pool, 0);
  auto bad = parse_config("[runtimes]\nwarm_pool = 100\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("runtimes.warm_pool"), std::string::npos)
      << bad.error().message;
  auto old = parse_config("[runtimes]\npool_size = 1\n");
  ASSERT_FALSE(old.ok());
  EXPECT_NE(old.error().message.find("unknown key"), std::string::npos);
}

TEST(RuntimeConfig, ServerAllowedHosts) {
  auto a =
      parse_config("[server]\nallowed_hosts = [\"colab.example.org\", \"10.0.0.5\", \"[::1]\"]\n");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->server.allowed_hosts,
            (std::vector<std::string>{"colab.example.org", "10.0.0.5", "[::1]"}));
  EXPECT_TRUE(parse_config("[server]\nallowed_hosts = [\"*\"]\n").ok());
  for (const char* bad :
       {"[server]\nallowed_hosts = \"x\"\n", "[server]\nallowed_hosts = [1]\n",
        "[server]\nallowed_hosts = [\"a b\"]\n", "[server]\nallowed_hosts = [\"\"]\n"}) {
    auto r = parse_config(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().message.find("server.allowed_hosts"), std::string::npos)
        << r.error().message;
  }
  auto u = parse_config("[server]\nallowed_host = [\"x\"]\n");
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.error().message.find("server.allowed_host"), std::string::npos) << u.error().message;
}

}  // namespace skylab::runtime

namespace skylab::runtime {
TEST(RuntimeConfig, QuotasParseAndNameBadKeys) {
  auto c = parse_config(
      "[quotas]\ngpu_hours_per_week = 10\n[quotas.users.alice]\ngpu_hours_per_week = 20.5\n"
      "[quotas.groups.admins]\ngpu_hours_per_week = 0\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(*c->quotas.gpu_hours_per_week, 10);
  EXPECT_EQ(c->quotas.users.at("alice"), 20.5);
  EXPECT_EQ(c->quotas.groups.at("admins"), 0);
  EXPECT_FALSE(default_config().quotas.gpu_hours_per_week);
  auto bad = parse_config("[quotas.users.bob]\ngpu_hours = 1\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("quotas.users.bob.gpu_hours"), std::string::npos)
      << bad.error().message;
  auto group = parse_config("[quotas.groups.staff]\ngpu_hours_per_week = 1\n");
  ASSERT_FALSE(group.ok());
  EXPECT_NE(group.error().message.find("quotas.groups.staff"), std::string::npos);
  EXPECT_FALSE(parse_config("[quotas]\ngpu_hours_per_week = -1\n").ok());
  EXPECT_FALSE(parse_config("[quotas]\ngpu_hours_per_week = \"ten\"\n").ok());
}
}  // namespace skylab::runtime

namespace skylab::runtime {

TEST(RuntimeConfig, CgroupParent) {
  EXPECT_EQ(parse_config("").value().runtimes.cgroup_parent, "");
  EXPECT_EQ(parse_config("[runtimes]\ncgroup_parent = \"/system.slice/skylab-runtimes.service\"\n")
                .value()
                .runtimes.cgroup_parent,
            "/system.slice/skylab-runtimes.service");
  for (const char* bad : {"a/b", "/", "/a/", "/a//b", "/a/../b", "/./a", "/a b", "/a$b"}) {
    auto c = parse_config(std::string("[runtimes]\ncgroup_parent = \"") + bad + "\"\n");
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_NE(c.error().message.find("runtimes.cgroup_parent"), std::string::npos) << bad;
  }
  auto nul = parse_config("[runtimes]\ncgroup_parent = \"/a\\u0000b\"\n");
  EXPECT_FALSE(nul.ok());
}

}  // namespace skylab::runtime
