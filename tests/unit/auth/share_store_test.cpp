#include "auth/share_store.hpp"

#include <stdlib.h>

#include <filesystem>

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>

#include "common/clock.hpp"
#include "temp_dir.hpp"

namespace skylab::auth {

namespace fs = std::filesystem;

class ShareStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = ShareStore::open((fs::path(dir_) / "skylab.db").string(), clock_);
    ASSERT_TRUE(s.ok());
    store_ = s.value();
  }
  TempDir tmp_{"skylab-share-test"};
  std::string dir_ = tmp_.str();
  // Each reading one second later than the one before (distinct share times).
  struct TickingClock final : Clock {
    mutable std::atomic<std::int64_t> seconds{1000};
    SteadyPoint now() const override { return SteadyPoint{std::chrono::seconds(seconds++)}; }
    WallPoint wall() const override { return WallPoint{std::chrono::seconds(seconds++)}; }
  } clock_;
  std::shared_ptr<ShareStore> store_;
};

TEST_F(ShareStoreTest, GrantFindListRevoke) {
  auto s = store_->grant("olga", "proj/a.ipynb", "i1", std::string("vera"), ShareRole::kViewer);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->owner, "olga");
  EXPECT_EQ(s->grantee.value(), "vera");
  EXPECT_FALSE(s->is_link());
  EXPECT_EQ(store_->find(s->id)->path, "proj/a.ipynb");
  EXPECT_EQ(store_->with_user("vera")->size(), 1u);
  EXPECT_EQ(store_->with_user("olga")->size(), 0u);
  EXPECT_EQ(store_->by_owner("olga")->size(), 1u);
  EXPECT_EQ(store_->by_owner("olga", std::string_view("proj/a.ipynb"))->size(), 1u);
  EXPECT_EQ(store_->by_owner("olga", std::string_view("other"))->size(), 0u);
  // Granting again changes the role, not the id.
  auto again = store_->grant("olga", "proj/a.ipynb", "i1", std::string("vera"), ShareRole::kEditor);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id, s->id);
  EXPECT_EQ(store_->find(s->id)->role, ShareRole::kEditor);
  // Only the owner revokes.
  EXPECT_EQ(store_->revoke("vera", s->id).error().code, Error::Code::kNotFound);
  ASSERT_TRUE(store_->revoke("olga", s->id).ok());
  EXPECT_EQ(store_->find(s->id).error().code, Error::Code::kNotFound);
  EXPECT_EQ(store_->revoke("olga", s->id).error().code, Error::Code::kNotFound);
}

TEST_F(ShareStoreTest, LinksAreViewOnlyLongAndUnique) {
  auto link = store_->grant("olga", "a.ipynb", "i1", std::nullopt, ShareRole::kEditor);
  ASSERT_TRUE(link.ok());
  EXPECT_TRUE(link->is_link());
  EXPECT_EQ(link->role, ShareRole::kViewer);
  EXPECT_GE(link->id.size(), 40u);
  EXPECT_EQ(store_->grant("olga", "a.ipynb", "i1", std::nullopt, ShareRole::kViewer)->id, link->id);
  EXPECT_EQ(store_->with_user("anyone")->size(), 0u);  // links are not "shared with me"
}

TEST(ShareAccess, WhoMayUseAShare) {
  Share s;
  s.owner = "olga";
  s.grantee = "vera";
  s.role = ShareRole::kViewer;
  EXPECT_EQ(share_access(s, "vera"), ShareRole::kViewer);
  EXPECT_EQ(share_access(s, "olga"), ShareRole::kEditor);
  EXPECT_FALSE(share_access(s, "mallory").has_value());
  EXPECT_FALSE(share_access(s, "").has_value());
  s.grantee.reset();  // a link: anyone signed in
  EXPECT_EQ(share_access(s, "mallory"), ShareRole::kViewer);
  EXPECT_FALSE(share_access(s, "").has_value());
  EXPECT_EQ(parse_share_role("editor"), ShareRole::kEditor);
  EXPECT_FALSE(parse_share_role("owner").has_value());
}

TEST_F(ShareStoreTest, SharesFollowMovesAndEndWithDeletes) {
  auto f = store_->grant("olga", "proj", "d1", std::string("vera"), ShareRole::kViewer);
  auto g = store_->grant("olga", "proj/sub/é.txt", "f1", std::string("vera"), ShareRole::kViewer);
  auto h = store_->grant("olga", "projX", "f2", std::string("vera"), ShareRole::kViewer);
  ASSERT_TRUE(f.ok() && g.ok() && h.ok());
  ASSERT_TRUE(store_->moved("olga", "proj", "archive/2024").ok());
  EXPECT_EQ(store_->find(f->id)->path, "archive/2024");
  EXPECT_EQ(store_->find(g->id)->path, "archive/2024/sub/é.txt");
  EXPECT_EQ(store_->find(h->id)->path, "projX");  // a sibling with the same prefix stays
  ASSERT_TRUE(store_->removed("olga", "archive/2024").ok());
  EXPECT_FALSE(store_->find(f->id).ok());
  EXPECT_FALSE(store_->find(g->id).ok());
  EXPECT_TRUE(store_->find(h->id).ok());
  // A new item at an old path is a new share, not the old one's.
  auto again = store_->grant("olga", "projX", "f3", std::string("vera"), ShareRole::kViewer);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(again->id, h->id);
  EXPECT_FALSE(store_->find(h->id).ok());
}

TEST(ShareStoreMigration, PathSharesAreBoundOrDropped) {
  TempDir tmp("skylab-share-mig");
  std::string db = (tmp / "skylab.db").string();
  {  // a version-1 database, as Skylab wrote it before item ids
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
    const char* v1 =
        "CREATE TABLE auth_schema(component TEXT PRIMARY KEY, version INTEGER NOT NULL);"
        "INSERT INTO auth_schema VALUES('shares', 1);"
        "CREATE TABLE auth_shares(id TEXT PRIMARY KEY, owner TEXT NOT NULL, path TEXT NOT NULL,"
        " grantee TEXT, role TEXT NOT NULL, created INTEGER NOT NULL);"
        "INSERT INTO auth_shares VALUES('aaaaaaaaaaaaaaaaaaaaaaaa', 'olga', 'kept.txt', 'vera', "
        "'viewer', 1);"
        "INSERT INTO auth_shares VALUES('bbbbbbbbbbbbbbbbbbbbbbbb', 'olga', 'gone.txt', 'vera', "
        "'viewer', 2);";
    ASSERT_EQ(sqlite3_exec(raw, v1, nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(raw);
  }
  auto s = ShareStore::open(db);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s.value()->find("aaaaaaaaaaaaaaaaaaaaaaaa")->item, "");
  auto dropped = s.value()->migrate_items([](const std::string&, const std::string& path) {
    return path == "kept.txt" ? std::optional<std::string>("id1") : std::nullopt;
  });
  ASSERT_TRUE(dropped.ok());
  EXPECT_EQ(dropped.value(), 1u);
  EXPECT_EQ(s.value()->find("aaaaaaaaaaaaaaaaaaaaaaaa")->item, "id1");
  EXPECT_FALSE(s.value()->find("bbbbbbbbbbbbbbbbbbbbbbbb").ok());
}

}  // namespace skylab::auth
