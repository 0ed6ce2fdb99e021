#include "kernel/log_cap.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace skylab::kernel {

namespace fs = std::filesystem;

TEST(KernelLogCap, RotatesTheTailAndTheWriterContinuesAtTheNewEnd) {
  char tmpl[] = "/tmp/skylab-logcap-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  fs::path dir(tmpl);
  int dfd = ::open(tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(dfd, 0);
  // The "kernel": a writer with O_APPEND, as the spawn sets it up.
  int w = ::open((dir / "k.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  ASSERT_GE(w, 0);
  std::string head(1000, 'a'), tail(1000, 'b');
  ASSERT_EQ(::write(w, head.data(), head.size()), 1000);
  EXPECT_FALSE(rotate_log_if_over(dfd, "k.log", 1500));  // under the cap: untouched
  ASSERT_EQ(::write(w, tail.data(), tail.size()), 1000);
  EXPECT_TRUE(rotate_log_if_over(dfd, "k.log", 1500));
  EXPECT_EQ(fs::file_size(dir / "k.log"), 0u);
  ASSERT_EQ(fs::file_size(dir / "k.log.1"), 1500u);
  std::ifstream in(dir / "k.log.1");
  std::string rotated((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(rotated, std::string(500, 'a') + tail);
  ASSERT_EQ(::write(w, "x", 1), 1);
  EXPECT_EQ(fs::file_size(dir / "k.log"), 1u);  // no hole: O_APPEND writes at the new end
  // A symlink is never followed.
  fs::remove(dir / "k.log.1");
  fs::create_symlink(dir / "k.log", dir / "l.log");
  EXPECT_FALSE(rotate_log_if_over(dfd, "l.log", 0));
  ::close(w);
  ::close(dfd);
  fs::remove_all(dir);
}

}  // namespace skylab::kernel
