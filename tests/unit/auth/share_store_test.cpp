#include "auth/share_store.hpp"

#include <stdlib.h>

#include <filesystem>

#include <gtest/gtest.h>

namespace skylab::auth {

namespace fs = std::filesystem;

class ShareStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/skylab-share-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto s = ShareStore::open((fs::path(dir_) / "skylab.db").string(), [this] { return now_++; });
    ASSERT_TRUE(s.ok());
    store_ = s.value();
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }
  std::string dir_;
  std::int64_t now_ = 1000;
  std::shared_ptr<ShareStore> store_;
};

TEST_F(ShareStoreTest, GrantFindListRevoke) {
  auto s = store_->grant("olga", "proj/a.ipynb", std::string("vera"), ShareRole::kViewer);
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
  auto again = store_->grant("olga", "proj/a.ipynb", std::string("vera"), ShareRole::kEditor);
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
  auto link = store_->grant("olga", "a.ipynb", std::nullopt, ShareRole::kEditor);
  ASSERT_TRUE(link.ok());
  EXPECT_TRUE(link->is_link());
  EXPECT_EQ(link->role, ShareRole::kViewer);
  EXPECT_GE(link->id.size(), 40u);
  EXPECT_EQ(store_->grant("olga", "a.ipynb", std::nullopt, ShareRole::kViewer)->id, link->id);
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

}  // namespace skylab::auth
