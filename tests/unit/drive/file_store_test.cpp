#include "drive/file_store.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include "temp_dir.hpp"

namespace skylab::drive {

namespace fs = std::filesystem;

namespace {

DrivePath P(std::string_view s) {
  return DrivePath::parse(s).value();
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
void spit(const fs::path& p, std::string_view s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

//! Fails writes with `err` once `budget` bytes have been written.
class FailingIo : public FileIo {
 public:
  std::atomic<long> budget{1L << 40};
  int err = ENOSPC;
  ssize_t write(int fd, const void* buf, std::size_t n) override {
    if (budget.load() <= 0) {
      errno = err;
      return -1;
    }
    std::size_t allowed = std::min<std::size_t>(n, static_cast<std::size_t>(budget.load()));
    ssize_t w = FileIo::write(fd, buf, allowed);
    if (w > 0) budget -= w;
    return w;
  }
};

class FileStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(base_ / "outside");
    spit(base_ / "outside" / "secret.txt", "secret");
    io_ = std::make_shared<FailingIo>();
    auto s = open_local_file_store((base_ / "drive").string(), io_);
    ASSERT_TRUE(s.ok()) << s.error().message;
    store_ = std::move(s.value());
    ASSERT_TRUE(store_->stat("alice", DrivePath()).ok());  // creates the root
    root_ = base_ / "drive" / "alice";
  }

  std::vector<std::string> names(const fs::path& dir) {
    std::vector<std::string> out;
    for (auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

  TempDir tmp_{"skylab-fs-test"};
  fs::path base_ = tmp_.path(), root_;
  std::shared_ptr<FailingIo> io_;
  std::unique_ptr<FileStore> store_;
};

}  // namespace

TEST_F(FileStoreTest, RootIsPrivateAndPerUser) {
  struct stat st;
  ASSERT_EQ(::stat(root_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_TRUE(store_->write_atomic("alice", P("a.txt"), "A").ok());
  ASSERT_TRUE(store_->write_atomic("bob", P("a.txt"), "B").ok());
  EXPECT_EQ(slurp(base_ / "drive" / "alice" / "a.txt"), "A");
  EXPECT_EQ(slurp(base_ / "drive" / "bob" / "a.txt"), "B");
  EXPECT_FALSE(store_->stat("../alice", DrivePath()).ok());
  EXPECT_FALSE(store_->stat(".hidden", DrivePath()).ok());
  EXPECT_FALSE(store_->stat("", DrivePath()).ok());
}

TEST_F(FileStoreTest, WriteReadListStat) {
  ASSERT_TRUE(store_->make_directory("alice", P("d")).ok());
  ASSERT_TRUE(store_->write_atomic("alice", P("d/x.txt"), "hello").ok());
  auto r = store_->read("alice", P("d/x.txt"), 100);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), "hello");
  EXPECT_EQ(store_->read("alice", P("d/x.txt"), 3).error().code, Error::Code::kTooLarge);
  auto st = store_->stat("alice", P("d/x.txt"));
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->size, 5u);
  EXPECT_FALSE(st->directory);
  EXPECT_TRUE(store_->stat("alice", P("d"))->directory);
  EXPECT_EQ(store_->write_atomic("alice", P("missing/x.txt"), "x").error().code,
            Error::Code::kNotFound);
  EXPECT_EQ(store_->write_atomic("alice", P("d"), "x").error().code, Error::Code::kBadRequest);
  EXPECT_EQ(store_->make_directory("alice", P("d")).error().code, Error::Code::kConflict);
  spit(root_ / ".hidden", "h");
  ::mkfifo((root_ / "fifo").c_str(), 0600);
  auto l = store_->list("alice", DrivePath());
  ASSERT_TRUE(l.ok());
  ASSERT_EQ(l->size(), 1u);  // hidden files and FIFOs are not listed
  EXPECT_EQ((*l)[0].name, "d");
  // Opening a FIFO must not hang.
  EXPECT_FALSE(store_->read("alice", P("fifo"), 100).ok());
}

TEST_F(FileStoreTest, SymlinksAreNeverFollowed) {
  fs::create_symlink(base_ / "outside", root_ / "linkdir");
  fs::create_symlink(base_ / "outside" / "secret.txt", root_ / "link.txt");
  fs::create_symlink(base_ / "drive" / "alice", root_ / "self");  // pointing inside is refused too
  // read
  EXPECT_FALSE(store_->read("alice", P("link.txt"), 100).ok());
  EXPECT_FALSE(store_->read("alice", P("linkdir/secret.txt"), 100).ok());
  EXPECT_FALSE(store_->open_read("alice", P("link.txt")).ok());
  EXPECT_FALSE(store_->stat("alice", P("link.txt")).ok());
  EXPECT_FALSE(store_->list("alice", P("linkdir")).ok());
  // write
  EXPECT_FALSE(store_->write_atomic("alice", P("link.txt"), "pwned").ok());
  EXPECT_FALSE(store_->write_atomic("alice", P("linkdir/new.txt"), "pwned").ok());
  // chunked upload: start, append, finish through the link
  EXPECT_FALSE(store_->write_chunk("alice", P("link.txt"), 1, "pwned").ok());
  EXPECT_FALSE(store_->write_chunk("alice", P("link.txt"), 2, "pwned").ok());
  EXPECT_FALSE(store_->write_chunk("alice", P("link.txt"), -1, "pwned").ok());
  EXPECT_FALSE(store_->write_chunk("alice", P("linkdir/x"), 1, "pwned").ok());
  // a staging file planted as a symlink
  ASSERT_TRUE(store_->write_chunk("alice", P("up.bin"), 1, "a").ok());
  for (auto& n : names(root_))
    if (n.rfind(".~skylab-upload-", 0) == 0) {
      fs::remove(root_ / n);
      fs::create_symlink(base_ / "outside" / "secret.txt", root_ / n);
    }
  EXPECT_FALSE(store_->write_chunk("alice", P("up.bin"), 2, "pwned").ok());
  EXPECT_FALSE(store_->write_chunk("alice", P("up.bin"), -1, "pwned").ok());
  // other operations
  EXPECT_FALSE(store_->make_directory("alice", P("linkdir/sub")).ok());
  EXPECT_FALSE(store_->copy_file("alice", P("link.txt"), P("copy.txt")).ok());
  EXPECT_FALSE(store_->copy_file("alice", P("self/x"), P("linkdir/copy.txt")).ok());
  EXPECT_FALSE(store_->rename("alice", P("link.txt"), P("renamed.txt")).ok());
  EXPECT_FALSE(store_->rename("alice", P("linkdir/secret.txt"), P("stolen.txt")).ok());
  EXPECT_FALSE(store_->remove("alice", P("linkdir/secret.txt")).ok());
  EXPECT_FALSE(store_->remove("alice", P("link.txt")).ok());
  auto l = store_->list("alice", DrivePath());
  ASSERT_TRUE(l.ok());
  for (auto& n : *l)
    EXPECT_TRUE(n.name != "link.txt" && n.name != "linkdir" && n.name != "self") << n.name;
  // nothing outside was touched
  EXPECT_EQ(slurp(base_ / "outside" / "secret.txt"), "secret");
  EXPECT_EQ(names(base_ / "outside"), std::vector<std::string>{"secret.txt"});
  EXPECT_TRUE(fs::is_symlink(root_ / "link.txt"));
}

TEST_F(FileStoreTest, RemoveOfADirectoryDoesNotFollowLinksInside) {
  ASSERT_TRUE(store_->make_directory("alice", P("d")).ok());
  fs::create_symlink(base_ / "outside", root_ / "d" / "out");
  ASSERT_TRUE(store_->write_atomic("alice", P("d/f"), "x").ok());
  ASSERT_TRUE(store_->remove("alice", P("d")).ok());
  EXPECT_FALSE(fs::exists(root_ / "d"));
  EXPECT_EQ(slurp(base_ / "outside" / "secret.txt"), "secret");
}

TEST_F(FileStoreTest, AtomicWriteKeepsOldFileOnDiskFull) {
  ASSERT_TRUE(store_->write_atomic("alice", P("nb.ipynb"), "old content").ok());
  ::chmod((root_ / "nb.ipynb").c_str(), 0640);
  io_->budget = 4;  // the disk fills up after 4 bytes
  auto st = store_->write_atomic("alice", P("nb.ipynb"), "new content that does not fit");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Error::Code::kInsufficientStorage);
  EXPECT_NE(st.error().message.find("disk space"), std::string::npos) << st.error().message;
  EXPECT_EQ(slurp(root_ / "nb.ipynb"), "old content");
  EXPECT_EQ(names(root_), std::vector<std::string>{"nb.ipynb"});  // no temporary left behind
  io_->budget = 1L << 40;
  ASSERT_TRUE(store_->write_atomic("alice", P("nb.ipynb"), "new").ok());
  EXPECT_EQ(slurp(root_ / "nb.ipynb"), "new");
  struct stat s;
  ASSERT_EQ(::stat((root_ / "nb.ipynb").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 0777, 0640u);  // mode preserved across the replace
}

TEST_F(FileStoreTest, FsyncFailureIsReportedAndOldFileKept) {
  class FsyncFails : public FileIo {
   public:
    int fsync(int) override {
      errno = EIO;
      return -1;
    }
  };
  auto s = open_local_file_store((base_ / "drive").string(), std::make_shared<FsyncFails>());
  ASSERT_TRUE(s.ok());
  spit(root_ / "f.txt", "old");
  auto st = s.value()->write_atomic("alice", P("f.txt"), "new");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Error::Code::kInternal);
  EXPECT_EQ(slurp(root_ / "f.txt"), "old");
  EXPECT_EQ(names(root_), std::vector<std::string>{"f.txt"});
}

TEST_F(FileStoreTest, ChunkedUploadIsInvisibleUntilTheLastChunk) {
  spit(root_ / "big.bin", "previous");
  auto r = store_->write_chunk("alice", P("big.bin"), 1, "aaa");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->committed);
  EXPECT_EQ(r->bytes_so_far, 3u);
  ASSERT_TRUE(store_->write_chunk("alice", P("big.bin"), 2, "bbb").ok());
  EXPECT_EQ(slurp(root_ / "big.bin"), "previous");  // the partial upload never shows
  auto l = store_->list("alice", DrivePath());
  ASSERT_EQ(l->size(), 1u);
  EXPECT_EQ((*l)[0].size, 8u);
  r = store_->write_chunk("alice", P("big.bin"), -1, "c");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->committed);
  EXPECT_EQ(slurp(root_ / "big.bin"), "aaabbbc");
  EXPECT_EQ(names(root_), std::vector<std::string>{"big.bin"});
  // chunk 1 again restarts; a chunk without a start is refused
  EXPECT_EQ(store_->write_chunk("alice", P("other.bin"), 3, "x").error().code,
            Error::Code::kBadRequest);
  EXPECT_EQ(store_->write_chunk("alice", P("other.bin"), 0, "x").error().code,
            Error::Code::kBadRequest);
  EXPECT_EQ(store_->write_chunk("alice", P("other.bin"), -2, "x").error().code,
            Error::Code::kBadRequest);
  ASSERT_TRUE(store_->write_chunk("alice", P("one.bin"), -1, "single").ok());
  EXPECT_EQ(slurp(root_ / "one.bin"), "single");
}

TEST_F(FileStoreTest, ChunkedUploadOnDiskFullDiscardsAndKeepsOldFile) {
  spit(root_ / "big.bin", "previous");
  ASSERT_TRUE(store_->write_chunk("alice", P("big.bin"), 1, "aaa").ok());
  io_->budget = 2;
  auto r = store_->write_chunk("alice", P("big.bin"), 2, "bbbbbb");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Error::Code::kInsufficientStorage);
  EXPECT_EQ(slurp(root_ / "big.bin"), "previous");
  EXPECT_EQ(names(root_), std::vector<std::string>{"big.bin"});
  io_->budget = 1L << 40;
  EXPECT_FALSE(store_->write_chunk("alice", P("big.bin"), 3, "c").ok());  // the upload is gone
}

TEST_F(FileStoreTest, RenameCopyRemove) {
  ASSERT_TRUE(store_->make_directory("alice", P("d")).ok());
  ASSERT_TRUE(store_->write_atomic("alice", P("a.txt"), "A").ok());
  ASSERT_TRUE(store_->write_atomic("alice", P("b.txt"), "B").ok());
  EXPECT_EQ(store_->rename("alice", P("a.txt"), P("b.txt")).error().code, Error::Code::kConflict);
  EXPECT_EQ(slurp(root_ / "b.txt"), "B");
  ASSERT_TRUE(store_->rename("alice", P("a.txt"), P("d/a.txt")).ok());
  EXPECT_EQ(slurp(root_ / "d" / "a.txt"), "A");
  EXPECT_EQ(store_->rename("alice", P("d"), P("d/sub")).error().code, Error::Code::kBadRequest);
  ASSERT_TRUE(store_->copy_file("alice", P("d/a.txt"), P("c.txt")).ok());
  EXPECT_EQ(slurp(root_ / "c.txt"), "A");
  EXPECT_EQ(store_->copy_file("alice", P("d/a.txt"), P("b.txt")).error().code,
            Error::Code::kConflict);
  ASSERT_TRUE(store_->remove("alice", P("d")).ok());
  EXPECT_FALSE(fs::exists(root_ / "d"));
  EXPECT_EQ(store_->remove("alice", P("d")).error().code, Error::Code::kNotFound);
  EXPECT_EQ(store_->remove("alice", DrivePath()).error().code, Error::Code::kBadRequest);
}

TEST_F(FileStoreTest, SweepRemovesOldTemporariesOnly) {
  ASSERT_TRUE(store_->make_directory("alice", P("d")).ok());
  spit(root_ / "d" / ".~skylab-save-1234", "partial");
  spit(root_ / ".~skylab-upload-abcd", "partial");
  spit(root_ / "keep.txt", "k");
  EXPECT_EQ(store_->sweep_temporaries(std::chrono::hours(1)), 0u);  // too recent
  EXPECT_EQ(store_->sweep_temporaries(std::chrono::seconds(-1)), 2u);
  EXPECT_EQ(names(root_), (std::vector<std::string>{"d", "keep.txt"}));
  EXPECT_TRUE(names(root_ / "d").empty());
}

}  // namespace skylab::drive

namespace skylab::drive {

TEST_F(FileStoreTest, NewFilesTakeTheDirectorysOwnerAndReplacedOnesKeepTheirs) {
  if (::geteuid() != 0) GTEST_SKIP() << "changing owners needs root";
  ASSERT_EQ(::chown(root_.c_str(), 4242, 4243), 0);
  ASSERT_TRUE(store_->write_atomic("alice", P("new.txt"), "x").ok());
  ASSERT_TRUE(store_->make_directory("alice", P("dir")).ok());
  ASSERT_TRUE(store_->write_chunk("alice", P("up.bin"), -1, "y").ok());
  ASSERT_TRUE(store_->copy_file("alice", P("new.txt"), P("copy.txt")).ok());
  for (const char* n : {"new.txt", "dir", "up.bin", "copy.txt"}) {
    struct stat st;
    ASSERT_EQ(::stat((root_ / n).c_str(), &st), 0) << n;
    EXPECT_EQ(st.st_uid, 4242u) << n;
    EXPECT_EQ(st.st_gid, 4243u) << n;
  }
  ASSERT_EQ(::chown((root_ / "new.txt").c_str(), 5151, 5152), 0);
  ASSERT_TRUE(store_->write_atomic("alice", P("new.txt"), "replaced").ok());
  struct stat st;
  ASSERT_EQ(::stat((root_ / "new.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 5151u);
  EXPECT_EQ(st.st_gid, 5152u);
}

}  // namespace skylab::drive

namespace skylab::drive {

TEST_F(FileStoreTest, ItemIdsFollowTheFileNotThePath) {
  ASSERT_TRUE(store_->make_directory("alice", P("d")).ok());
  ASSERT_TRUE(store_->write_atomic("alice", P("d/doc.txt"), "v1").ok());
  ASSERT_TRUE(store_->write_atomic("alice", P("d/private.txt"), "alice only").ok());
  EXPECT_EQ(store_->item_id("alice", P("d/doc.txt"), false).value(), "");  // none until asked for
  auto id = store_->item_id("alice", P("d/doc.txt"), true);
  ASSERT_TRUE(id.ok()) << id.error().message;
  ASSERT_EQ(id->size(), 32u);
  EXPECT_EQ(store_->item_id("alice", P("d/doc.txt"), true).value(), id.value());  // stable
  // A save (atomic replace) and a chunked upload keep it.
  ASSERT_TRUE(store_->write_atomic("alice", P("d/doc.txt"), "v2").ok());
  ASSERT_TRUE(store_->write_chunk("alice", P("d/doc.txt"), -1, "v3").ok());
  EXPECT_EQ(store_->item_id("alice", P("d/doc.txt"), false).value(), id.value());
  // Moved behind the store's back: found by walking.
  fs::rename(root_ / "d" / "doc.txt", root_ / "moved.txt");
  EXPECT_EQ(store_->find_item("alice", id.value(), 1000).value(), "moved.txt");
  // Another file renamed onto the old path is not the item.
  fs::rename(root_ / "d" / "private.txt", root_ / "d" / "doc.txt");
  EXPECT_EQ(store_->item_id("alice", P("d/doc.txt"), false).value(), "");
  // Copies are new items; a deleted item is not found; a symlink is never followed.
  ASSERT_TRUE(store_->copy_file("alice", P("moved.txt"), P("copy.txt")).ok());
  EXPECT_EQ(store_->item_id("alice", P("copy.txt"), false).value(), "");
  fs::create_symlink(root_ / "moved.txt", root_ / "link.txt");
  EXPECT_FALSE(store_->item_id("alice", P("link.txt"), false).ok());
  fs::remove(root_ / "moved.txt");
  EXPECT_EQ(store_->find_item("alice", id.value(), 1000).error().code, Error::Code::kNotFound);
  EXPECT_EQ(store_->find_item("alice", id.value(), 1).error().code,
            Error::Code::kUnavailable);  // walk cut short
}

}  // namespace skylab::drive
