#include "auth/secret_store.hpp"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <sqlite3.h>
#include "temp_dir.hpp"

namespace skylab::auth {

namespace fs = std::filesystem;
using Access = SecretStore::Access;

class SecretStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { reopen(); }
  void reopen() {
    store_.reset();
    auto s = SecretStore::open(db(), key());
    ASSERT_TRUE(s.ok()) << s.error().message;
    store_ = s.value();
  }
  std::string db() const { return (fs::path(dir_) / "skylab.db").string(); }
  std::string key() const { return (fs::path(dir_) / "secrets.key").string(); }
  std::string file_bytes(const std::string& p) const {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  TempDir tmp_{"skylab-secret-test"};
  std::string dir_ = tmp_.str();
  std::shared_ptr<SecretStore> store_;
};

TEST_F(SecretStoreTest, NamesAndPaths) {
  EXPECT_TRUE(SecretStore::valid_name("KAGGLE_KEY"));
  EXPECT_TRUE(SecretStore::valid_name("_x1"));
  EXPECT_TRUE(SecretStore::valid_name(std::string(128, 'A')));
  EXPECT_FALSE(SecretStore::valid_name(std::string(129, 'A')));
  EXPECT_FALSE(SecretStore::valid_name(""));
  EXPECT_FALSE(SecretStore::valid_name("1A"));
  EXPECT_FALSE(SecretStore::valid_name("A-B"));
  EXPECT_FALSE(SecretStore::valid_name(std::string("A\0B", 3)));
  EXPECT_EQ(SecretStore::normalize_path("/a/b.ipynb/").value(), "a/b.ipynb");
  EXPECT_FALSE(SecretStore::normalize_path("a/../b").ok());
  EXPECT_FALSE(SecretStore::normalize_path("a//b").ok());
  EXPECT_FALSE(SecretStore::normalize_path("./b").ok());
  EXPECT_FALSE(SecretStore::normalize_path("///").ok());
  EXPECT_FALSE(SecretStore::normalize_path(std::string("a\0b", 3)).ok());
}

TEST_F(SecretStoreTest, ReadNeedsEveryBoundNotebookGranted) {
  ASSERT_TRUE(store_->put("olga", "K", "v1").ok());
  EXPECT_EQ(store_->read("olga", "NOPE", {"a.ipynb"})->access, Access::kNotFound);
  EXPECT_EQ(store_->read("vera", "K", {"a.ipynb"})->access, Access::kNotFound);  // another user's
  EXPECT_EQ(store_->read("olga", "K", {"a.ipynb"})->access, Access::kNoAccess);
  ASSERT_TRUE(store_->set_grant("olga", "K", "/a.ipynb", true).ok());
  auto r = store_->read("olga", "K", {"a.ipynb"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->access, Access::kGranted);
  EXPECT_EQ(r->value, "v1");
  EXPECT_EQ(store_->read("olga", "K", {})->access, Access::kNoAccess);  // no notebook: none
  EXPECT_EQ(store_->read("olga", "K", {"a.ipynb", "b.ipynb"})->access, Access::kNoAccess);
  EXPECT_EQ(store_->read("vera", "K", {"a.ipynb"})->access, Access::kNotFound);
  ASSERT_TRUE(store_->put("olga", "K", "v2").ok());  // grants kept
  EXPECT_EQ(store_->read("olga", "K", {"a.ipynb"})->value, "v2");
  ASSERT_TRUE(store_->set_grant("olga", "K", "a.ipynb", false).ok());
  EXPECT_EQ(store_->read("olga", "K", {"a.ipynb"})->access, Access::kNoAccess);
  EXPECT_EQ(store_->set_grant("olga", "NOPE", "a.ipynb", true).error().code,
            Error::Code::kNotFound);
  EXPECT_EQ(store_->set_grant("vera", "K", "a.ipynb", true).error().code, Error::Code::kNotFound);
}

TEST_F(SecretStoreTest, LimitsAndListing) {
  EXPECT_EQ(
      store_->put("olga", "K", std::string(SecretStore::kMaxValueBytes + 1, 'x')).error().code,
      Error::Code::kTooLarge);
  EXPECT_TRUE(store_->put("olga", "K", std::string(SecretStore::kMaxValueBytes, 'x')).ok());
  EXPECT_EQ(store_->put("olga", "1bad", "v").error().code, Error::Code::kBadRequest);
  for (std::size_t i = 1; i < SecretStore::kMaxPerOwner; ++i)
    ASSERT_TRUE(store_->put("olga", "S" + std::to_string(i), "v").ok());
  EXPECT_EQ(store_->put("olga", "ONE_MORE", "v").error().code, Error::Code::kConflict);
  EXPECT_TRUE(store_->put("olga", "S1", "new").ok());      // replacing is no new secret
  EXPECT_TRUE(store_->put("vera", "ONE_MORE", "v").ok());  // per user
  ASSERT_TRUE(store_->set_grant("olga", "K", "b.ipynb", true).ok());
  ASSERT_TRUE(store_->set_grant("olga", "K", "a.ipynb", true).ok());
  ASSERT_TRUE(store_->set_grant("olga", "K", "a.ipynb", true).ok());
  auto l = store_->list("olga");
  ASSERT_TRUE(l.ok());
  ASSERT_EQ(l->size(), SecretStore::kMaxPerOwner);
  EXPECT_EQ(l->front().name, "K");
  EXPECT_EQ(l->front().grants, (std::vector<std::string>{"a.ipynb", "b.ipynb"}));
  EXPECT_TRUE(store_->remove("olga", "K").ok());
  EXPECT_EQ(store_->remove("olga", "K").error().code, Error::Code::kNotFound);
  ASSERT_TRUE(store_->put("olga", "K", "again").ok());
  EXPECT_TRUE(store_->list("olga")->front().grants.empty());  // deleting ended its grants
}

TEST_F(SecretStoreTest, GrantsFollowMovesAndEndWithTheNotebook) {
  ASSERT_TRUE(store_->put("olga", "K", "v").ok());
  ASSERT_TRUE(store_->set_grant("olga", "K", "proj/a.ipynb", true).ok());
  ASSERT_TRUE(store_->set_grant("olga", "K", "projx/b.ipynb", true).ok());
  ASSERT_TRUE(store_->moved("olga", "proj", "new").ok());
  EXPECT_EQ(store_->list("olga")->front().grants,
            (std::vector<std::string>{"new/a.ipynb", "projx/b.ipynb"}));
  ASSERT_TRUE(store_->moved("vera", "new", "x").ok());  // another user's move changes nothing
  EXPECT_EQ(store_->read("olga", "K", {"new/a.ipynb"})->access, Access::kGranted);
  ASSERT_TRUE(store_->removed("olga", "new/a.ipynb").ok());
  EXPECT_EQ(store_->list("olga")->front().grants, (std::vector<std::string>{"projx/b.ipynb"}));
}

TEST_F(SecretStoreTest, EncryptedAtRestUnderARootOnlyKeyBoundToOwnerAndName) {
  const std::string value = "very-secret-value-0123456789";
  ASSERT_TRUE(store_->put("olga", "K", value).ok());
  ASSERT_TRUE(store_->put("vera", "K", "vera's").ok());
  ASSERT_TRUE(store_->set_grant("olga", "K", "a.ipynb", true).ok());
  ASSERT_TRUE(store_->set_grant("vera", "K", "a.ipynb", true).ok());
  store_.reset();  // checkpoints the WAL
  EXPECT_EQ(file_bytes(db()).find(value), std::string::npos);
  struct stat st {};
  ASSERT_EQ(::stat(key().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 32);
  // A row copied onto another user's does not open for them.
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(db().c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(
          raw,
          "UPDATE auth_secrets SET nonce = (SELECT nonce FROM auth_secrets WHERE owner='olga'), "
          "sealed = (SELECT sealed FROM auth_secrets WHERE owner='olga') WHERE owner='vera'",
          nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(raw);
  reopen();
  EXPECT_EQ(store_->read("olga", "K", {"a.ipynb"})->value, value);  // the same key after a restart
  auto swapped = store_->read("vera", "K", {"a.ipynb"});
  ASSERT_FALSE(swapped.ok());
  EXPECT_EQ(swapped.error().code, Error::Code::kInternal);
  // Another key: nothing decrypts.
  store_.reset();
  fs::remove(key());
  reopen();
  EXPECT_FALSE(store_->read("olga", "K", {"a.ipynb"}).ok());
}

TEST_F(SecretStoreTest, RefusesAKeyFileThatIsNotOne) {
  store_.reset();
  fs::remove(key());
  fs::create_symlink("/etc/passwd", key());
  EXPECT_FALSE(SecretStore::open(db(), key()).ok());  // never follows a link
  fs::remove(key());
  std::ofstream(key()) << "short";
  EXPECT_FALSE(SecretStore::open(db(), key()).ok());
}

}  // namespace skylab::auth
