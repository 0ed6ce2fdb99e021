#include "drive/drive.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "drive/notebook.hpp"
#include "temp_dir.hpp"

namespace skylab::drive {

namespace fs = std::filesystem;
using namespace std::chrono;
using nlohmann::json;

namespace {

auth::Identity user(const std::string& name) {
  auth::Identity id;
  id.username = name;
  return id;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class DriveTest : public ::testing::Test {
 protected:
  void SetUp() override { open(); }
  void TearDown() override { drive_.reset(); }
  void open() {
    DriveOptions o;
    o.files_dir = (base_ / "drive").string();
    o.database = (base_ / "drive.db").string();
    o.clock = &clock_;
    auto d = Drive::open(o);
    ASSERT_TRUE(d.ok()) << d.error().message;
    drive_ = d.value();
  }
  json notebook(const std::string& marker) {
    json nb = new_notebook();
    nb["cells"].push_back({{"id", "cell1"},
                           {"cell_type", "markdown"},
                           {"metadata", json::object()},
                           {"source", marker}});
    return nb;
  }

  TempDir tmp_{"skylab-drive-test"};
  fs::path base_ = tmp_.path();
  // The fake clock: read by the Drive's revision writer thread too.
  ManualClock clock_{ManualClock::WallPoint{seconds(1704844800)}};  // 2024-01-10 00:00 UTC
  void advance(system_clock::duration d) { clock_.advance(d); }
  std::shared_ptr<Drive> drive_;
  auth::Identity alice_ = user("alice");
  auth::Identity bob_ = user("bob");
};

}  // namespace

TEST_F(DriveTest, EachUserHasTheirOwnRoot) {
  ASSERT_TRUE(drive_->save_file(alice_, "a.txt", "alice's").ok());
  EXPECT_EQ(drive_->get(bob_, "a.txt").error().code, Error::Code::kNotFound);
  EXPECT_EQ(drive_->read_file(bob_, "../alice/a.txt").error().code, Error::Code::kBadRequest);
  EXPECT_EQ(slurp(base_ / "drive" / "alice" / "a.txt"), "alice's");
  EXPECT_EQ(drive_->get(user("../x"), "").error().code, Error::Code::kForbidden);
}

TEST_F(DriveTest, HiddenPathsAreInvisibleAndReadOnly) {
  fs::create_directories(base_ / "drive" / "alice");
  std::ofstream(base_ / "drive" / "alice" / ".env") << "KEY=1";
  EXPECT_EQ(drive_->get(alice_, ".env").error().code, Error::Code::kNotFound);
  EXPECT_EQ(drive_->read_file(alice_, ".env").error().code, Error::Code::kNotFound);
  EXPECT_EQ(drive_->save_file(alice_, ".env", "x").error().code, Error::Code::kBadRequest);
  EXPECT_EQ(drive_->remove(alice_, ".env").error().code, Error::Code::kBadRequest);
  EXPECT_EQ(drive_->list(alice_, "")->size(), 0u);
}

TEST_F(DriveTest, UntitledNamesAndCopiesFollowJupyter) {
  EXPECT_EQ(drive_->new_untitled(alice_, "", std::nullopt, ".ipynb")->name, "Untitled.ipynb");
  EXPECT_EQ(drive_->new_untitled(alice_, "", EntryType::kNotebook, "")->name, "Untitled1.ipynb");
  EXPECT_EQ(drive_->new_untitled(alice_, "", EntryType::kFile, ".txt")->name, "untitled.txt");
  EXPECT_EQ(drive_->new_untitled(alice_, "", EntryType::kFile, ".txt")->name, "untitled1.txt");
  EXPECT_EQ(drive_->new_untitled(alice_, "", EntryType::kDirectory, "")->name, "Untitled Folder");
  EXPECT_EQ(drive_->new_untitled(alice_, "", EntryType::kDirectory, "")->name, "Untitled Folder 1");
  EXPECT_EQ(drive_->new_untitled(alice_, "nope", EntryType::kFile, "").error().code,
            Error::Code::kNotFound);
  ASSERT_TRUE(drive_->save_file(alice_, "data.tar.gz", "x").ok());
  EXPECT_EQ(drive_->copy(alice_, "data.tar.gz", "")->name, "data-Copy1.tar.gz");
  EXPECT_EQ(drive_->copy(alice_, "data-Copy1.tar.gz", "")->name, "data-Copy2.tar.gz");
  EXPECT_EQ(drive_->copy(alice_, "Untitled.ipynb", "")->name, "Untitled-Copy1.ipynb");
  EXPECT_EQ(drive_->copy(alice_, "Untitled.ipynb", "Untitled Folder")->path,
            "Untitled Folder/Untitled.ipynb");
  EXPECT_EQ(drive_->copy(alice_, "Untitled.ipynb", "exact.ipynb")->path, "exact.ipynb");
  EXPECT_EQ(drive_->copy(alice_, "Untitled Folder", "").error().code,
            Error::Code::kBadRequest);  // no directories
}

TEST_F(DriveTest, NotebookSavesAreValidatedAndKeepRevisions) {
  auto bad = notebook("x");
  bad["cells"][0]["cell_type"] = "nope";
  auto r = drive_->save_notebook(alice_, "n.ipynb", bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Error::Code::kBadRequest);
  EXPECT_FALSE(fs::exists(base_ / "drive" / "alice" / "n.ipynb"));

  auto s1 = drive_->save_notebook(alice_, "n.ipynb", notebook("v1"));
  ASSERT_TRUE(s1.ok()) << s1.error().message;
  EXPECT_TRUE(s1->created);
  EXPECT_EQ(s1->entry.type, EntryType::kNotebook);
  advance(minutes(1));
  auto s2 = drive_->save_notebook(alice_, "n.ipynb", notebook("v2"));
  ASSERT_TRUE(s2.ok());
  EXPECT_FALSE(s2->created);
  advance(minutes(1));
  ASSERT_TRUE(drive_->save_notebook(alice_, "n.ipynb", notebook("v2"))
                  .ok());  // same content: no new revision
  auto revs = drive_->revisions(alice_, "n.ipynb");
  ASSERT_TRUE(revs.ok());
  ASSERT_EQ(revs->size(), 2u);
  EXPECT_LT((*revs)[0].created, (*revs)[1].created);
  auto v1 = drive_->revision_bytes(alice_, "n.ipynb", (*revs)[0].id);
  ASSERT_TRUE(v1.ok());
  EXPECT_NE(v1->find("v1"), std::string::npos);

  // Restore v1: the file goes back, and v2 stays in the history.
  ASSERT_TRUE(drive_->restore_revision(alice_, "n.ipynb", (*revs)[0].id).ok());
  EXPECT_NE(slurp(base_ / "drive" / "alice" / "n.ipynb").find("v1"), std::string::npos);
  revs = drive_->revisions(alice_, "n.ipynb");
  ASSERT_EQ(revs->size(), 3u);
  EXPECT_NE(drive_->revision_bytes(alice_, "n.ipynb", (*revs)[1].id)->find("v2"),
            std::string::npos);

  // Another user cannot see or restore them.
  EXPECT_TRUE(drive_->revisions(bob_, "n.ipynb")->empty());
  EXPECT_EQ(drive_->restore_revision(bob_, "n.ipynb", (*revs)[0].id).error().code,
            Error::Code::kNotFound);
}

TEST_F(DriveTest, RevisionsArePrunedByThePolicyWithTheInjectedClock) {
  // One save every 10 minutes for three days.
  for (int i = 0; i < 3 * 24 * 6; ++i) {
    ASSERT_TRUE(drive_->save_notebook(alice_, "n.ipynb", notebook("v" + std::to_string(i))).ok());
    advance(minutes(10));
  }
  auto revs = drive_->revisions(alice_, "n.ipynb");
  ASSERT_TRUE(revs.ok());
  // last hour (6) + one per hour for the rest of the day (~23) + one per earlier day (2)
  EXPECT_GE(revs->size(), 29u);
  EXPECT_LE(revs->size(), 33u);
  // A month later, pruning keeps only the newest one.
  advance(hours(24 * 40));
  auto dropped = drive_->prune_all();
  ASSERT_TRUE(dropped.ok());
  EXPECT_EQ(drive_->revisions(alice_, "n.ipynb")->size(), 1u);
}

TEST_F(DriveTest, RevisionsFollowRenamesAndGoWithDeletes) {
  ASSERT_TRUE(drive_->save_directory(alice_, "d").ok());
  ASSERT_TRUE(drive_->save_notebook(alice_, "d/n.ipynb", notebook("a")).ok());
  ASSERT_TRUE(drive_->save_notebook(alice_, "d2.ipynb", notebook("b")).ok());
  ASSERT_TRUE(drive_->rename(alice_, "d", "e").ok());
  EXPECT_TRUE(drive_->revisions(alice_, "d/n.ipynb")->empty());
  EXPECT_EQ(drive_->revisions(alice_, "e/n.ipynb")->size(), 1u);
  EXPECT_EQ(drive_->revisions(alice_, "d2.ipynb")->size(), 1u);  // "d2" is not below "d"
  ASSERT_TRUE(drive_->remove(alice_, "e").ok());
  EXPECT_TRUE(drive_->revisions(alice_, "e/n.ipynb")->empty());
  EXPECT_EQ(drive_->rename(alice_, "d2.ipynb", "e/x.ipynb").error().code, Error::Code::kNotFound);
}

TEST_F(DriveTest, CheckpointsOfFiles) {
  ASSERT_TRUE(drive_->save_file(alice_, "t.txt", "one").ok());
  EXPECT_TRUE(
      drive_->revisions(alice_, "t.txt")->empty());  // plain files: checkpoints only on request
  auto cp = drive_->create_checkpoint(alice_, "t.txt");
  ASSERT_TRUE(cp.ok());
  ASSERT_TRUE(drive_->save_file(alice_, "t.txt", "two").ok());
  ASSERT_TRUE(drive_->restore_revision(alice_, "t.txt", cp->id).ok());
  EXPECT_EQ(drive_->read_file(alice_, "t.txt").value(), "one");
  ASSERT_TRUE(drive_->delete_revision(alice_, "t.txt", cp->id).ok());
  EXPECT_EQ(drive_->delete_revision(alice_, "t.txt", cp->id).error().code, Error::Code::kNotFound);
  EXPECT_EQ(drive_->create_checkpoint(alice_, "missing.txt").error().code, Error::Code::kNotFound);
}

TEST_F(DriveTest, RevisionsSurviveARestart) {
  ASSERT_TRUE(drive_->save_notebook(alice_, "n.ipynb", notebook("a")).ok());
  drive_.reset();
  open();
  EXPECT_EQ(drive_->revisions(alice_, "n.ipynb")->size(), 1u);
}

}  // namespace skylab::drive
