#include "common/subprocess.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

namespace skylab::subprocess {
namespace {

using namespace std::chrono_literals;

Spec sh(const std::string& script) {
  Spec s;
  s.argv = {"/bin/sh", "-c", script};
  return s;
}

TEST(Subprocess, RunCapturesBothStreamsAndTheStatus) {
  auto o = run(sh("echo out; echo err >&2; exit 3"), 30s);
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->out, "out\n");
  EXPECT_EQ(o->err, "err\n");
  EXPECT_FALSE(o->timed_out);
  EXPECT_EQ(exit_code(o->status), 3);
}

TEST(Subprocess, ErrToOutMergesTheStreams) {
  Spec s = sh("echo a; echo b >&2");
  s.err_to_out = true;
  auto o = run(s, 30s);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->out, "a\nb\n");
  EXPECT_EQ(o->err, "");
}

TEST(Subprocess, EnvironmentIsReplacedAndCwdSet) {
  Spec s = sh("echo \"$ONLY:$HOME:$(pwd)\"");
  s.env = std::vector<std::string>{"ONLY=1"};
  s.cwd = "/usr";
  auto o = run(s, 30s);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->out, "1::/usr\n");
}

TEST(Subprocess, OutputIsBoundedAndTheRestDrained) {
  // 1 MiB written; only 1000 bytes kept, and the child still ends normally
  // (its writes do not block on a full pipe).
  auto o = run(sh("head -c 1048576 /dev/zero"), 30s, 1000);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->out.size(), 1000u);
  EXPECT_FALSE(o->timed_out);
  EXPECT_EQ(exit_code(o->status), 0);
}

TEST(Subprocess, DeadlineKillsTheChild) {
  auto o = run(sh("exec sleep 30"), 100ms);
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->timed_out);
  ASSERT_TRUE(WIFSIGNALED(o->status));
  EXPECT_EQ(WTERMSIG(o->status), SIGKILL);
}

TEST(Subprocess, MissingProgramIsNotFoundAnd127) {
  Spec s;
  s.argv = {"skylab-no-such-program-here"};
  auto c = spawn(s);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, Error::Code::kNotFound);
  EXPECT_EQ(run_quiet({"skylab-no-such-program-here"}), 127);
  EXPECT_EQ(run_quiet({"/bin/sh", "-c", "exit 4"}), 4);
  EXPECT_EQ(run_quiet({"/bin/sh", "-c", "kill -9 $$"}), -1);
  Spec empty;
  EXPECT_EQ(spawn(empty).error().code, Error::Code::kBadRequest);
}

TEST(Subprocess, FdsAreMappedAndCloseFromClosesTheRest) {
  // An fd without O_CLOEXEC: without close_from it would reach the child.
  int leaky = ::fcntl(::open("/dev/null", O_RDONLY), F_DUPFD, 100);
  ASSERT_GE(leaky, 100);
  int mapped = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  std::string probe = "test -e /proc/self/fd/" + std::to_string(leaky) +
                      " && echo leak; test -e /proc/self/fd/7 && echo seven; true";
  Spec s = sh(probe);
  s.fds = {{mapped, 7}};
  auto open = run(s, 30s);
  ASSERT_TRUE(open.ok());
  EXPECT_NE(open->out.find("leak"), std::string::npos);
  EXPECT_NE(open->out.find("seven"), std::string::npos);
  s.close_from = 8;
  auto closed = run(s, 30s);
  ASSERT_TRUE(closed.ok());
  EXPECT_EQ(closed->out.find("leak"), std::string::npos);
  EXPECT_NE(closed->out.find("seven"), std::string::npos);
  ::close(leaky);
  ::close(mapped);
}

TEST(Subprocess, NewSessionAndDestructionReaps) {
  Spec s = sh("ps -o sid= -p $$; exec sleep 30");
  s.new_session = true;
  s.out = Stdio::kPipe;
  pid_t pid;
  {
    auto c = spawn(s);
    ASSERT_TRUE(c.ok());
    pid = c->pid();
    char buf[64] = {};
    ASSERT_GT(::read(c->out_fd(), buf, sizeof buf - 1), 0);
    EXPECT_EQ(std::atoi(buf), pid);  // the session leader is the child itself
    EXPECT_FALSE(c->try_wait().has_value());
  }  // killed and reaped here: no zombie left under our pid
  EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST(Subprocess, DefaultSignalsUndoAnIgnoredOne) {
  auto old = ::signal(SIGUSR1, SIG_IGN);
  Spec s = sh("kill -USR1 $$; exit 0");
  auto ignored = run(s, 30s);
  s.default_signals = {SIGUSR1};
  auto dflt = run(s, 30s);
  ::signal(SIGUSR1, old);
  ASSERT_TRUE(ignored.ok() && dflt.ok());
  EXPECT_EQ(exit_code(ignored->status), 0);
  EXPECT_EQ(exit_code(dflt->status), 128 + SIGUSR1);
}

}  // namespace
}  // namespace skylab::subprocess
