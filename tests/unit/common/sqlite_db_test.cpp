#include "common/sqlite_db.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include "temp_dir.hpp"

namespace skylab::sqlite {
namespace {

namespace fs = std::filesystem;

Error err(sqlite3* db, const std::string& what) {
  return Error::internal("test db: " + what + ": " + (db ? sqlite3_errmsg(db) : "no handle"));
}

struct SqliteDbTest : ::testing::Test {
  TempDir tmp{"skylab-sqlite-db-test"};
  fs::path dir = tmp.path();
  std::string path;
  sqlite3* db = nullptr;
  void SetUp() override { path = (dir / "t.db").string(); }
  void TearDown() override {
    if (db) sqlite3_close_v2(db);
  }
  std::int64_t one(const char* sql) {
    Stmt q(db, sql);
    return q.step() == SQLITE_ROW ? q.i64(0) : -1;
  }
  std::string text(const char* sql) {
    Stmt q(db, sql);
    return q.step() == SQLITE_ROW ? q.text(0) : "";
  }
};

TEST_F(SqliteDbTest, OpenCreatesAPrivateFileAndSetsThePragmas) {
  OpenOptions o;
  o.foreign_keys = true;
  o.secure_delete = true;
  ASSERT_TRUE(open(path, o, &db, err).ok());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(text("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(one("PRAGMA synchronous"), 1);  // NORMAL
  EXPECT_EQ(one("PRAGMA foreign_keys"), 1);
  EXPECT_EQ(one("PRAGMA secure_delete"), 1);
}

TEST_F(SqliteDbTest, OpenWithoutCreateRefusesAMissingFile) {
  OpenOptions o;
  o.create_private = false;
  auto st = open(path, o, &db, err);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(db, nullptr);
  EXPECT_NE(st.error().message.find("test db: open " + path), std::string::npos);
}

TEST_F(SqliteDbTest, MigrationsRunInOrderOnceAndANewerSchemaIsRefused) {
  ASSERT_TRUE(open(path, {}, &db, err).ok());
  std::vector<Migration> v1 = {{1, "CREATE TABLE t(a INTEGER)"}};
  ASSERT_TRUE(migrate(db, "comp", "the test tables", v1, err).ok());
  ASSERT_TRUE(migrate(db, "comp", "the test tables", v1, err).ok());  // nothing to do
  EXPECT_EQ(one("SELECT version FROM auth_schema WHERE component='comp'"), 1);
  int ran = 0;
  std::vector<Migration> v3 = {{1, "CREATE TABLE t(a INTEGER)"},  // would fail if run again
                               {2, "ALTER TABLE t ADD COLUMN b TEXT NOT NULL DEFAULT ''"},
                               {3, nullptr, [&](sqlite3* h) {
                                  ++ran;
                                  return sqlite3_exec(h, "INSERT INTO t(a) VALUES(7)", nullptr,
                                                      nullptr, nullptr) == SQLITE_OK
                                             ? ok_status()
                                             : Status(err(h, "insert"));
                                }}};
  ASSERT_TRUE(migrate(db, "comp", "the test tables", v3, err).ok());
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(one("SELECT version FROM auth_schema WHERE component='comp'"), 3);
  EXPECT_EQ(one("SELECT a FROM t WHERE b = ''"), 7);
  // Another component in the same database keeps its own version.
  ASSERT_TRUE(migrate(db, "other", "x", {{1, "CREATE TABLE u(a)"}}, err).ok());
  EXPECT_EQ(one("SELECT version FROM auth_schema WHERE component='comp'"), 3);
  // An older binary (steps up to 1) must not touch it.
  auto st = migrate(db, "comp", "the test tables", v1, err);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Error::Code::kUnavailable);
  EXPECT_EQ(st.error().message, "the test tables was written by a newer Skylab (schema 3)");
}

TEST_F(SqliteDbTest, AFailingStepChangesNothing) {
  ASSERT_TRUE(open(path, {}, &db, err).ok());
  auto st = migrate(db, "comp", "t", {{1, "CREATE TABLE t(a)"}, {2, "NOT SQL"}}, err);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("migrate to schema 2"), std::string::npos);
  EXPECT_EQ(one("SELECT COUNT(*) FROM sqlite_master WHERE name='t'"), 0);
  EXPECT_EQ(one("SELECT COUNT(*) FROM auth_schema"), 0);
}

}  // namespace
}  // namespace skylab::sqlite
