// The claim of a runtime started for anyone, against a thread playing the
// waiting kernel (template.py's side of the two FIFOs), and the bubblewrap
// command of such a runtime (no user's folders in it).
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <thread>

#include "runtime/sandbox.hpp"
#include "temp_dir.hpp"

namespace skylab::runtime {
namespace {

namespace fs = std::filesystem;

struct ClaimTest : ::testing::Test {
  TempDir tmp{"skylab-claim"};
  std::string dir = tmp.str();
  void SetUp() override { ASSERT_TRUE(make_claim_fifos(dir).ok()); }

  // The kernel's side: both FIFOs open O_RDWR (as template.py opens them).
  int open_rw(const char* name) const {
    return ::open((dir + "/" + name).c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  }
  static std::string read_line(int fd) {
    std::string got;
    while (got.find('\n') == std::string::npos) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 5000) != 1) break;
      char buf[512];
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, static_cast<std::size_t>(n));
    }
    return got;
  }
};

TEST_F(ClaimTest, TheFifosAreRootsPrivateFifos) {
  for (const char* name : {"claim", "claimed"}) {
    struct stat st {};
    ASSERT_EQ(::lstat((dir + "/" + name).c_str(), &st), 0);
    EXPECT_TRUE(S_ISFIFO(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);
  }
  EXPECT_TRUE(make_claim_fifos(dir).ok());  // again: replaced, not an error
}

TEST_F(ClaimTest, TheKernelGetsTheClaimAndItsOkIsSuccess) {
  int in = open_rw("claim"), out = open_rw("claimed");
  ASSERT_GE(in, 0);
  ASSERT_GE(out, 0);
  std::string seen;
  std::thread kernel([&] {
    seen = read_line(in);
    (void)!::write(out, "ok\n", 3);
    ::close(out);
  });
  auto st = send_claim(dir, R"({"uid":200001})", 5);
  kernel.join();
  ::close(in);
  EXPECT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(seen, "{\"uid\":200001}\n");
}

TEST_F(ClaimTest, TheKernelsReasonIsTheError) {
  int in = open_rw("claim"), out = open_rw("claimed");
  std::thread kernel([&] {
    read_line(in);
    (void)!::write(out, "user site shadows numpy\n", 24);
    ::close(out);
  });
  auto st = send_claim(dir, "{}", 5);
  kernel.join();
  ::close(in);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().message, "user site shadows numpy");
}

TEST_F(ClaimTest, NoWaitingKernelOrOneThatEndsOrStaysSilentIsAnError) {
  // Nobody holds the FIFOs: the claim cannot even be written.
  auto none = send_claim(dir, "{}", 1);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("not waiting"), std::string::npos);
  // The kernel reads the claim and dies without an answer.
  int in = open_rw("claim"), out = open_rw("claimed");
  std::thread dies([&] {
    read_line(in);
    ::close(out);
  });
  auto ended = send_claim(dir, "{}", 5);
  dies.join();
  ASSERT_FALSE(ended.ok());
  EXPECT_NE(ended.error().message.find("ended"), std::string::npos);
  ::close(in);
  // The kernel holds the FIFOs but never answers: bounded by the timeout.
  in = open_rw("claim");
  out = open_rw("claimed");
  auto silent = send_claim(dir, "{}", 0.3);
  ASSERT_FALSE(silent.ok());
  EXPECT_NE(silent.error().message.find("did not answer"), std::string::npos);
  ::close(in);
  ::close(out);
}

TEST_F(ClaimTest, ASymlinkInPlaceOfAFifoIsNotFollowed) {
  fs::remove(dir + "/claim");
  fs::create_symlink("/dev/null", dir + "/claim");
  int out = open_rw("claimed");
  auto st = send_claim(dir, "{}", 1);
  EXPECT_FALSE(st.ok());
  ::close(out);
}

TEST(InstantPlan, ARuntimeForAnyoneBindsNoUsersFolders) {
  SandboxOptions o;
  o.skylab_binary = "/usr/bin/true";
  SandboxPlan p;
  p.uid = p.gid = kNobodyId;
  p.content_dir = "/d/runtimes/k/content";
  EXPECT_TRUE(user_binds(p).empty());
  auto cmd = bwrap_args(o, p, {"python3"});
  EXPECT_EQ(std::find(cmd.begin(), cmd.end(), "/content/drive"), cmd.end());
  EXPECT_EQ(std::find(cmd.begin(), cmd.end(), "/root/.cache"), cmd.end());
  p.drive_dir = "/d/drive/u";
  p.cache_dir = "/d/cache/u";
  auto binds = user_binds(p);
  ASSERT_EQ(binds.size(), 4u);
  EXPECT_EQ(binds[0], (std::pair<std::string, std::string>{"/d/drive/u", "/content/drive"}));
  cmd = bwrap_args(o, p, {"python3"});
  EXPECT_NE(std::find(cmd.begin(), cmd.end(), "/content/drive"), cmd.end());
}

TEST(InstantPlan, NoUserCanBeAnyone) {
  EXPECT_FALSE(valid_owner(kAnyone));
  EXPECT_FALSE(valid_owner(""));
  EXPECT_FALSE(valid_owner("../x"));
  EXPECT_TRUE(valid_owner("alice"));
}

}  // namespace
}  // namespace skylab::runtime
