#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>

#include <set>
#include <string>

#include "runtime/config.hpp"
#include "runtime/netns.hpp"
#include "runtime/sandbox.hpp"
#include "runtime/seccomp.hpp"

namespace skylab::runtime {
namespace {

TEST(RuntimeIsolationConfig, NetworkModesAndOldBooleans) {
  auto c = parse_config(
      "[runtime_types.a]\nnetwork = true\n[runtime_types.b]\nnetwork = "
      "false\n[runtime_types.c]\nnetwork = \"host\"\n"
      "[runtime_types.d]\nnetwork = \"none\"\n[runtime_types.e]\nnetwork = "
      "\"isolated\"\n[runtime_types.f]\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->types.at("a").network,
            NetworkMode::kIsolated);  // true: "has a network", now the isolated NAT
  EXPECT_EQ(c->types.at("b").network, NetworkMode::kNone);
  EXPECT_EQ(c->types.at("c").network, NetworkMode::kHost);
  EXPECT_EQ(c->types.at("d").network, NetworkMode::kNone);
  EXPECT_EQ(c->types.at("e").network, NetworkMode::kIsolated);
  EXPECT_EQ(c->types.at("f").network, NetworkMode::kIsolated);  // the default
  EXPECT_EQ(c->types.at("f").seccomp, SeccompMode::kDefault);
  auto bad = parse_config("[runtime_types.a]\nnetwork = \"bridge\"\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("runtime_types.a.network"), std::string::npos);
}

TEST(RuntimeIsolationConfig, SeccompModes) {
  auto c = parse_config(
      "[runtime_types.a]\nseccomp = \"unconfined\"\n[runtime_types.b]\nseccomp = \"default\"\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->types.at("a").seccomp, SeccompMode::kUnconfined);
  EXPECT_EQ(c->types.at("b").seccomp, SeccompMode::kDefault);
  EXPECT_FALSE(parse_config("[runtime_types.a]\nseccomp = true\n").ok());
  EXPECT_FALSE(parse_config("[runtime_types.a]\nseccomp = \"off\"\n").ok());
}

TEST(Seccomp, RuleTableCoversTheIssue) {
  std::set<std::string> always;
  for (auto& r : default_seccomp_rules())
    if (r.arg0_mask == 0) always.insert(r.syscall);
  for (const char* s : {"mount",
                        "umount2",
                        "pivot_root",
                        "move_mount",
                        "fsopen",
                        "setns",
                        "bpf",
                        "perf_event_open",
                        "io_uring_setup",
                        "io_uring_enter",
                        "io_uring_register",
                        "keyctl",
                        "add_key",
                        "request_key",
                        "kexec_load",
                        "kexec_file_load",
                        "open_by_handle_at",
                        "userfaultfd",
                        "init_module",
                        "finit_module",
                        "delete_module",
                        "swapon",
                        "reboot",
                        "acct",
                        "quotactl"})
    EXPECT_TRUE(always.count(s)) << s;
  // What the sandbox itself and ordinary programs need is not in the table.
  for (const char* s :
       {"setresuid", "setresgid", "setgroups", "prctl", "execve", "ptrace", "clone", "unshare"})
    EXPECT_FALSE(always.count(s)) << s;
  bool clone3_enosys = false, clone_checks_user = false, unshare_checks_ns = false;
  for (auto& r : default_seccomp_rules()) {
    if (std::string(r.syscall) == "clone3") clone3_enosys = r.err == ENOSYS && r.arg0_mask == 0;
    if (std::string(r.syscall) == "clone")
      clone_checks_user = (r.arg0_mask & CLONE_NEWUSER) && !(r.arg0_mask & 0xff);
    if (std::string(r.syscall) == "unshare")
      unshare_checks_ns = (r.arg0_mask & CLONE_NEWUSER) && (r.arg0_mask & CLONE_NEWNS);
  }
  EXPECT_TRUE(clone3_enosys);      // glibc then falls back to clone(2), whose flags are visible
  EXPECT_TRUE(clone_checks_user);  // and never the exit-signal byte
  EXPECT_TRUE(unshare_checks_ns);
}

TEST(Seccomp, FilterBuildsAsBpf) {
  auto fd = default_seccomp_bpf_fd();
  ASSERT_TRUE(fd.ok()) << fd.error().message;
  char buf[8];
  EXPECT_EQ(::read(fd.value(), buf, sizeof buf), 8);  // at least one sock_filter instruction
  ::close(fd.value());
}

TEST(NetIsolation, DnsForwardOnlyForLoopbackResolvers) {
  EXPECT_EQ(dns_forward_address("nameserver 10.0.0.53\n", "192.0.2.1"), "");
  EXPECT_EQ(dns_forward_address("# stub\nnameserver 127.0.0.53\noptions edns0\n", "192.0.2.1"),
            "192.0.2.1");
  EXPECT_EQ(dns_forward_address("nameserver ::1\n", "192.0.2.1"), "192.0.2.1");
  EXPECT_EQ(dns_forward_address("nameserver 127.0.0.53\nnameserver 9.9.9.9\n", "192.0.2.1"), "");
  EXPECT_EQ(resolv_nameservers("search x\nnameserver a\n nameserver b\n").size(), 2u);
}

TEST(NetIsolation, ProhibitedPrefixesHaveLinkLocalAndNoLoopback) {
  auto p = prohibited_prefixes();
  ASSERT_FALSE(p.empty());
  EXPECT_EQ(p[0], "169.254.0.0/16");
  for (auto& x : p) {
    EXPECT_NE(x.rfind("127.", 0), 0u) << x;
    EXPECT_NE(x, "::1/128");
  }
}

}  // namespace
}  // namespace skylab::runtime

TEST(RuntimeAccounts, TheRuntimeUidGetsANameAndHostEntriesStay) {
  std::string passwd =
      "root:x:0:0:root:/root:/bin/bash\n"
      "alice:x:1000:1000:Host Alice:/home/alice:/bin/bash\n"
      "stale:x:200007:200007:an old entry of the runtime's uid:/:/bin/sh\n"
      "broken line without fields\n";
  std::string group = "root:x:0:\nalice:x:1000:\nold:x:200007:\n";
  auto f = skylab::runtime::runtime_account_files(passwd, group, "bob", 200007, 200007);
  EXPECT_EQ(f.user_name, "bob");
  EXPECT_EQ(f.passwd,
            "root:x:0:0:root:/root:/bin/bash\n"
            "alice:x:1000:1000:Host Alice:/home/alice:/bin/bash\n"
            "bob:x:200007:200007:Skylab user bob:/root:/bin/bash\n");
  EXPECT_EQ(f.group, "root:x:0:\nalice:x:1000:\nbob:x:200007:\n");
  // A Skylab user named like a host account does not become that account.
  auto g = skylab::runtime::runtime_account_files(passwd, group, "alice", 200008, 200008);
  EXPECT_EQ(g.user_name, "skylab-alice");
  EXPECT_NE(g.passwd.find("alice:x:1000:1000:Host Alice"), std::string::npos);
  EXPECT_NE(g.passwd.find("skylab-alice:x:200008:200008:"), std::string::npos);
  auto r = skylab::runtime::runtime_account_files(passwd, group, "root", 200009, 200009);
  EXPECT_EQ(r.user_name, "skylab-root");
  EXPECT_EQ(r.passwd.find("\nroot:x:200009"), std::string::npos);
  EXPECT_NE(r.passwd.find("\nskylab-root:x:200009:200009:"), std::string::npos);
}
