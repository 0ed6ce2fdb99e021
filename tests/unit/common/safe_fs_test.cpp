#include "common/safe_fs.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include "temp_dir.hpp"

namespace skylab::safe_fs {
namespace {

namespace fs = std::filesystem;

class SafeFs : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(root_ / "tree");
    fs::create_directories(root_ / "outside");
    write(root_ / "outside" / "victim", "untouched");
  }
  static void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }
  static std::string read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  TempDir tmp_{"skylab-safe-fs"};
  fs::path root_ = tmp_.path();
};

TEST_F(SafeFs, WriteFileAtReplacesASymlinkInsteadOfFollowingIt) {
  fs::create_symlink(root_ / "outside" / "victim", root_ / "tree" / "state.json");
  fs::create_symlink(root_ / "outside" / "victim", root_ / "tree" / "state.json.tmp");
  auto dir = open_dir((root_ / "tree").string());
  ASSERT_TRUE(dir.ok());
  ASSERT_TRUE(write_file_at(dir->get(), "state.json", "{}", 0644, false).ok());
  EXPECT_EQ(read(root_ / "outside" / "victim"), "untouched");
  EXPECT_FALSE(fs::is_symlink(root_ / "tree" / "state.json"));
  EXPECT_EQ(read(root_ / "tree" / "state.json"), "{}");
  EXPECT_EQ(fs::status(root_ / "tree" / "state.json").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                fs::perms::others_read);
  EXPECT_FALSE(write_file_at(dir->get(), "../escape", "x", 0644, false).ok());
}

TEST_F(SafeFs, TheTwoWriteModes) {
  // Root's mode: a symlinked directory is refused, the mode is exact.
  fs::create_directory_symlink(root_ / "outside", root_ / "tree" / "link");
  auto refused = write_file((root_ / "tree" / "link" / "victim").string(), "evil", 0640, false);
  EXPECT_FALSE(refused.ok());
  EXPECT_EQ(read(root_ / "outside" / "victim"), "untouched");
  mode_t old = ::umask(077);
  ASSERT_TRUE(write_file((root_ / "tree" / "f").string(), "root", 0644, false).ok());
  struct stat st {};
  ASSERT_EQ(::stat((root_ / "tree" / "f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);  // not narrowed by the umask
  // The user's mode: the path is followed as given, the umask applies, and
  // nothing but the file itself is left in the directory.
  ::umask(027);
  auto mine = write_user_file((root_ / "tree" / "link" / "out.ipynb").string(), "{}\n");
  ::umask(old);
  ASSERT_TRUE(mine.ok()) << mine.error().message;
  EXPECT_EQ(read(root_ / "outside" / "out.ipynb"), "{}\n");
  ASSERT_EQ(::stat((root_ / "outside" / "out.ipynb").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  int entries = 0;
  for (auto& e : fs::directory_iterator(root_ / "outside")) entries += e.is_regular_file();
  EXPECT_EQ(entries, 2);  // victim and out.ipynb
  auto missing = write_user_file((root_ / "no" / "such" / "x").string(), "x");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find((root_ / "no" / "such" / "x").string()),
            std::string::npos);
}

TEST_F(SafeFs, EnsureDirAtRefusesASymlinkedDirectory) {
  fs::create_directory_symlink(root_ / "outside", root_ / "tree" / "sub");
  auto dir = open_dir((root_ / "tree").string());
  ASSERT_TRUE(dir.ok());
  EXPECT_FALSE(ensure_dir_at(dir->get(), "sub", 0755).ok());
  EXPECT_FALSE(ensure_path_at(dir->get(), "sub/deeper", 0755).ok());
  EXPECT_FALSE(fs::exists(root_ / "outside" / "deeper"));
  EXPECT_TRUE(ensure_path_at(dir->get(), "a/b/c", 0755).ok());
  EXPECT_TRUE(fs::is_directory(root_ / "tree" / "a" / "b" / "c"));
  EXPECT_FALSE(open_dir((root_ / "tree" / "sub").string()).ok());
}

TEST_F(SafeFs, RemoveTreeDoesNotFollowSymlinks) {
  fs::create_directories(root_ / "tree" / "doomed" / "deep");
  write(root_ / "tree" / "doomed" / "deep" / "f", "x");
  fs::create_directory_symlink(root_ / "outside", root_ / "tree" / "doomed" / "link");
  remove_tree((root_ / "tree" / "doomed").string());
  EXPECT_FALSE(fs::exists(root_ / "tree" / "doomed"));
  EXPECT_EQ(read(root_ / "outside" / "victim"), "untouched");
}

TEST_F(SafeFs, ExistsAtLooksWithoutFollowing) {
  fs::create_symlink(root_ / "nowhere", root_ / "tree" / "dangling");
  auto dir = open_dir((root_ / "tree").string());
  ASSERT_TRUE(dir.ok());
  EXPECT_TRUE(exists_at(dir->get(), "dangling"));
  EXPECT_FALSE(exists_at(dir->get(), "missing"));
}

TEST_F(SafeFs, ReadRegularReadsAFileWithinItsBoundAndNothingElse) {
  auto open_ro = [](const fs::path& p) {
    return UniqueFd(::open(p.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  };
  write(root_ / "tree" / "pem", std::string(5000, 'x'));
  auto got = read_regular(open_ro(root_ / "tree" / "pem").get(), 5000);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got.value(), std::string(5000, 'x'));
  auto big = read_regular(open_ro(root_ / "tree" / "pem").get(), 4999);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().code, Error::Code::kTooLarge);
  // A FIFO (opened non-blocking) and a directory are refused at once.
  ASSERT_EQ(::mkfifo((root_ / "tree" / "fifo").c_str(), 0600), 0);
  auto fifo = read_regular(open_ro(root_ / "tree" / "fifo").get(), 5000);
  ASSERT_FALSE(fifo.ok());
  EXPECT_EQ(fifo.error().code, Error::Code::kBadRequest);
  EXPECT_FALSE(read_regular(open_ro(root_ / "tree").get(), 5000).ok());
}

TEST_F(SafeFs, MigrationChownsRootFilesButNoLinksOrWhatTheyPointAt) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  fs::create_directories(root_ / "tree" / "d");
  write(root_ / "tree" / "d" / "mine", "m");
  fs::create_hard_link(root_ / "outside" / "victim", root_ / "tree" / "d" / "hardlink");
  fs::create_directory_symlink(root_ / "outside", root_ / "tree" / "escape");
  ::mkfifo((root_ / "tree" / "fifo").c_str(), 0600);
  auto dir = open_dir((root_ / "tree").string());
  ASSERT_TRUE(dir.ok());
  auto st = chown_root_owned_tree(dir->get(), 4242, 4242);
  struct stat s {};
  ASSERT_EQ(::lstat((root_ / "tree" / "d" / "mine").c_str(), &s), 0);
  EXPECT_EQ(s.st_uid, 4242u);
  ASSERT_EQ(::lstat((root_ / "tree" / "d").c_str(), &s), 0);
  EXPECT_EQ(s.st_uid, 4242u);
  ASSERT_EQ(::lstat((root_ / "outside" / "victim").c_str(), &s), 0);
  EXPECT_EQ(s.st_uid, 0u);
  ASSERT_EQ(::lstat((root_ / "outside").c_str(), &s), 0);
  EXPECT_EQ(s.st_uid, 0u);
  ASSERT_EQ(::lstat((root_ / "tree" / "fifo").c_str(), &s), 0);
  EXPECT_EQ(s.st_uid, 0u);
  EXPECT_EQ(st.changed, 3u);  // tree, d, mine
  EXPECT_GE(st.skipped, 3u);  // hardlink, escape, fifo
}

}  // namespace
}  // namespace skylab::safe_fs
