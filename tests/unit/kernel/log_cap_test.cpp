#include "kernel/log_cap.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include "temp_dir.hpp"

namespace skylab::kernel {

namespace fs = std::filesystem;

// A log folder and the "kernel": a writer with O_APPEND, as the spawn sets it up.
class KernelLogCap : public ::testing::Test {
 protected:
  void SetUp() override {
    dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(dfd, 0);
    w = ::open((dir / "k.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    ASSERT_GE(w, 0);
  }
  void TearDown() override {
    if (w >= 0) ::close(w);
    if (dfd >= 0) ::close(dfd);
  }
  static std::string read_all(const fs::path& p) {
    std::ifstream in(p);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }

  TempDir tmp{"skylab-logcap"};
  fs::path dir = tmp.path();
  int dfd = -1, w = -1;
};

TEST_F(KernelLogCap, RotatesTheTailAndTheWriterContinuesAtTheNewEnd) {
  std::string head(1000, 'a'), tail(1000, 'b');
  ASSERT_EQ(::write(w, head.data(), head.size()), 1000);
  EXPECT_FALSE(rotate_log_if_over(dfd, "k.log", 1500));  // under the cap: untouched
  ASSERT_EQ(::write(w, tail.data(), tail.size()), 1000);
  EXPECT_TRUE(rotate_log_if_over(dfd, "k.log", 1500));
  EXPECT_EQ(fs::file_size(dir / "k.log"), 0u);
  ASSERT_EQ(fs::file_size(dir / "k.log.1"), 1500u);
  EXPECT_EQ(read_all(dir / "k.log.1"), std::string(500, 'a') + tail);
  ASSERT_EQ(::write(w, "x", 1), 1);
  EXPECT_EQ(fs::file_size(dir / "k.log"), 1u);  // no hole: O_APPEND writes at the new end
  // A symlink is never followed.
  fs::remove(dir / "k.log.1");
  fs::create_symlink(dir / "k.log", dir / "l.log");
  EXPECT_FALSE(rotate_log_if_over(dfd, "l.log", 0));
}

// A writer appends numbered lines while the log is rotated over and over:
// every rotated copy shorter than the cap holds everything since the one
// before, and the log continues exactly where the last copy ends. (Where
// the filesystem cannot collapse a range, a line can fall between the copy
// and the truncation; the test then says so and checks only the order.)
TEST_F(KernelLogCap, AWriterLosesNothingWhileTheLogIsRotated) {
  // Probe: can this filesystem collapse a range?
  std::string probe(3 * 4096, 'p');
  ASSERT_EQ(::write(w, probe.data(), probe.size()), static_cast<ssize_t>(probe.size()));
  bool collapses = ::fallocate(w, FALLOC_FL_COLLAPSE_RANGE, 0, 4096) == 0;
  ASSERT_EQ(::ftruncate(w, 0), 0);
  ::close(w);
  w = ::open((dir / "k.log").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  ASSERT_GE(w, 0);

  constexpr int kLines = 200000;  // 16 bytes each: 3.2 MB
  constexpr std::uint64_t kCap = 64 << 10;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    char line[17];
    for (int i = 0; i < kLines; ++i) {
      std::snprintf(line, sizeof line, "%015d\n", i);
      if (::write(w, line, 16) != 16) break;
    }
    done = true;
  });
  std::vector<std::pair<std::string, bool>> chunks;  // content, full (may have dropped a head)
  while (!done) {
    if (rotate_log_if_over(dfd, "k.log", kCap)) {
      std::string c = read_all(dir / "k.log.1");
      chunks.emplace_back(c, c.size() >= kCap);
    }
  }
  writer.join();
  chunks.emplace_back(read_all(dir / "k.log"), false);
  ASSERT_GT(chunks.size(), 3u) << "the log was never rotated";

  long last = -1;
  int gaps = 0;
  for (auto& [c, full] : chunks) {
    ASSERT_EQ(c.size() % 16, 0u);
    for (std::size_t off = 0; off < c.size(); off += 16) {
      long n = std::stol(c.substr(off, 15));
      ASSERT_GT(n, last);
      bool head_may_drop = off == 0 && full;
      if (n != last + 1 && !head_may_drop) ++gaps;
      last = n;
    }
  }
  EXPECT_EQ(last, kLines - 1);
  if (collapses)
    EXPECT_EQ(gaps, 0) << "lines were lost during a rotation";
  else
    std::fprintf(stderr, "this filesystem cannot collapse ranges: %d lines lost\n", gaps);
}

}  // namespace skylab::kernel
