#include "auth/account_store.hpp"

#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "auth/share_store.hpp"
#include "auth/web_policy.hpp"
#include "temp_dir.hpp"

namespace skylab::auth {

namespace fs = std::filesystem;

namespace {
// When re-executed by AnotherProcesssChangesAreSeen: do to that database
// what `skylab user add bob` or `skylab user passwd alice` does, then exit
// before any test runs.
const bool kUserCommandChild = [] {
  const char* db = std::getenv("SKYLAB_AUTH_TEST_DB");
  const char* what = std::getenv("SKYLAB_AUTH_TEST_DO");
  if (!db || !what) return false;
  AccountStoreOptions o;
  o.path = db;
  o.hash = PasswordHashParams::minimal();
  auto s = AccountStore::open(o);
  bool ok = s.ok() && (std::string(what) == "add"
                           ? s.value()->add_user("bob", "bob-password", false).ok()
                           : s.value()->set_password("alice", "another-password").ok());
  std::exit(ok ? 0 : 1);
}();
}  // namespace

class AccountStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = open();
    ASSERT_TRUE(store_);
  }
  std::shared_ptr<AccountStore> open() {
    AccountStoreOptions o;
    o.path = (fs::path(dir_) / "skylab.db").string();
    o.hash = PasswordHashParams::minimal();
    o.session_lifetime_seconds = 3600;
    o.max_sessions_per_user = 3;
    o.max_tokens_per_user = 5;
    o.clock = &clock_;
    auto s = AccountStore::open(o);
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
    return s.ok() ? s.value() : nullptr;
  }

  TempDir tmp_{"skylab-auth-test"};
  std::string dir_ = tmp_.str();
  ManualClock clock_{ManualClock::WallPoint{std::chrono::seconds(1'800'000'000)}};
  std::int64_t now() const { return unix_seconds(clock_); }
  std::shared_ptr<AccountStore> store_;
};

TEST(Usernames, Shape) {
  for (const char* ok : {"alice", "a", "_svc", "bob-2", "x_y", "abcdefghijklmnopqrstuvwxyz012345"})
    EXPECT_TRUE(valid_username(ok)) << ok;
  for (const char* bad : {"", "Alice", "1abc", "-x", "a b", "a/b", "..", "a.b", "é",
                          "abcdefghijklmnopqrstuvwxyz0123456"})
    EXPECT_FALSE(valid_username(bad)) << bad;
  EXPECT_FALSE(valid_username(std::string(10 << 20, 'a')));
  EXPECT_FALSE(valid_username(std::string("a\0b", 3)));
}

TEST(Passwords, Rules) {
  EXPECT_EQ(password_problem("12345678"), "");
  EXPECT_NE(password_problem("1234567"), "");
  EXPECT_NE(password_problem(std::string(1025, 'x')), "");
  EXPECT_NE(password_problem(std::string("abcd\0efgh", 9)), "");
}

TEST_F(AccountStoreTest, SchemaOneGainsTheEmailColumn) {
  // A database written by the first version (no users.email) opens, keeps
  // its accounts, and stores e-mail addresses from then on.
  ASSERT_TRUE(store_->add_user("alice", "alice-password", false).ok());
  store_.reset();
  sqlite3* db = nullptr;
  auto path = (fs::path(dir_) / "skylab.db").string();
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db, "ALTER TABLE users DROP COLUMN email; UPDATE auth_schema SET version = 1",
                   nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);
  AccountStoreOptions o;
  o.path = path;
  o.hash = PasswordHashParams::minimal();
  auto s = AccountStore::open(o);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s.value()->find_user("alice")->email, "");
  ASSERT_TRUE(s.value()->add_user("bob", "bob-password", false, "bob@example.edu").ok());
  EXPECT_EQ(s.value()->find_user("bob")->email, "bob@example.edu");
}

TEST_F(AccountStoreTest, FileIsPrivateAndVersioned) {
  struct stat st {};
  ASSERT_EQ(::stat((fs::path(dir_) / "skylab.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((fs::path(dir_) / "skylab.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT version FROM auth_schema WHERE component='auth'", -1, &s,
                               nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(s, 0), 2);
  sqlite3_finalize(s);
  // A newer schema is refused rather than misread.
  ASSERT_EQ(sqlite3_exec(db, "UPDATE auth_schema SET version = 99", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  AccountStoreOptions o;
  o.path = (fs::path(dir_) / "skylab.db").string();
  EXPECT_FALSE(AccountStore::open(o).ok());
}

TEST_F(AccountStoreTest, AddAndCheckPassword) {
  ASSERT_TRUE(store_->add_user("alice", "alice-password", false).ok());
  EXPECT_EQ(store_->add_user("alice", "another-password", false).error().code,
            Error::Code::kConflict);
  EXPECT_EQ(store_->add_user("Bad Name", "alice-password", false).error().code,
            Error::Code::kBadRequest);
  EXPECT_EQ(store_->add_user(std::string(10 << 20, 'a'), "alice-password", false).error().code,
            Error::Code::kBadRequest);
  EXPECT_EQ(store_->add_user("bob", "short", false).error().code, Error::Code::kBadRequest);
  auto users = store_->list_users();
  ASSERT_TRUE(users.ok());
  ASSERT_EQ(users->size(), 1u);  // nothing stored by the refused calls
  EXPECT_FALSE((*users)[0].admin);

  auto ok = store_->check_password("alice", "alice-password");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->username, "alice");
  auto wrong = store_->check_password("alice", "alice-passwordX");
  auto unknown = store_->check_password("nobody", "alice-password");
  ASSERT_FALSE(wrong.ok());
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(wrong.error().code, Error::Code::kForbidden);
  EXPECT_EQ(wrong.error().message, unknown.error().message);  // no user enumeration

  ASSERT_TRUE(store_->set_disabled("alice", true).ok());
  EXPECT_FALSE(store_->check_password("alice", "alice-password").ok());
  ASSERT_TRUE(store_->set_disabled("alice", false).ok());
  ASSERT_TRUE(store_->set_password("alice", "new-password!").ok());
  EXPECT_FALSE(store_->check_password("alice", "alice-password").ok());
  EXPECT_TRUE(store_->check_password("alice", "new-password!").ok());
  EXPECT_EQ(store_->set_password("nobody", "new-password!").error().code, Error::Code::kNotFound);
}

TEST_F(AccountStoreTest, SessionsEndOnPasswordChangeDisableAndExpiry) {
  ASSERT_TRUE(store_->add_user("alice", "alice-password", true).ok());
  auto user = store_->find_user("alice");
  ASSERT_TRUE(user.ok());
  auto s = store_->create_session(user.value());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->xsrf, xsrf_token_for_session(s->secret));
  auto who = store_->session_identity(s->secret);
  ASSERT_TRUE(who.has_value());
  EXPECT_EQ(who->username, "alice");
  EXPECT_TRUE(who->admin);
  EXPECT_EQ(who->via, Via::kSession);
  EXPECT_EQ(who->xsrf, s->xsrf);
  EXPECT_TRUE(store_->still_valid(*who));
  EXPECT_FALSE(store_->session_identity(s->secret + "0").has_value());
  EXPECT_FALSE(store_->session_identity("").has_value());

  ASSERT_TRUE(store_->set_password("alice", "changed-password").ok());
  EXPECT_FALSE(store_->session_identity(s->secret).has_value());
  EXPECT_FALSE(store_->still_valid(*who));

  auto s2 = store_->create_session(user.value());
  ASSERT_TRUE(s2.ok());
  ASSERT_TRUE(store_->set_disabled("alice", true).ok());
  EXPECT_FALSE(store_->session_identity(s2->secret).has_value());
  ASSERT_TRUE(store_->set_disabled("alice", false).ok());
  EXPECT_FALSE(store_->session_identity(s2->secret).has_value());  // does not come back

  auto s3 = store_->create_session(user.value());
  ASSERT_TRUE(s3.ok());
  clock_.advance(std::chrono::seconds(3599));
  EXPECT_TRUE(store_->session_identity(s3->secret).has_value());
  clock_.advance(std::chrono::seconds(1));
  EXPECT_FALSE(store_->session_identity(s3->secret).has_value());

  auto s4 = store_->create_session(user.value());
  ASSERT_TRUE(s4.ok());
  store_->end_session(s4->secret);
  EXPECT_FALSE(store_->session_identity(s4->secret).has_value());
}

TEST_F(AccountStoreTest, SessionsPerUserAreBounded) {
  ASSERT_TRUE(store_->add_user("alice", "alice-password", false).ok());
  auto user = store_->find_user("alice").value();
  std::vector<std::string> secrets;
  for (int i = 0; i < 5; ++i) {
    clock_.advance(std::chrono::seconds(1));
    secrets.push_back(store_->create_session(user)->secret);
  }
  EXPECT_FALSE(store_->session_identity(secrets[0]).has_value());
  EXPECT_FALSE(store_->session_identity(secrets[1]).has_value());
  for (int i = 2; i < 5; ++i) EXPECT_TRUE(store_->session_identity(secrets[i]).has_value()) << i;
}

TEST_F(AccountStoreTest, TokensParseExpireAndRevoke) {
  ASSERT_TRUE(store_->add_user("alice", "alice-password", false).ok());
  ASSERT_TRUE(store_->add_user("bob", "bob-password", false).ok());
  auto forever = store_->create_token("alice", "vscode", std::nullopt);
  auto hour = store_->create_token("alice", "script", 3600);
  ASSERT_TRUE(forever.ok() && hour.ok());
  EXPECT_EQ(forever->token.rfind(kApiTokenPrefix, 0), 0u);
  EXPECT_GE(forever->token.size(), 40u);
  EXPECT_FALSE(forever->record.expires.has_value());
  EXPECT_EQ(hour->record.expires.value(), now() + 3600);

  auto who = store_->token_identity(forever->token);
  ASSERT_TRUE(who.has_value());
  EXPECT_EQ(who->username, "alice");
  EXPECT_EQ(who->via, Via::kApiToken);
  EXPECT_EQ(who->credential_id, "token:" + forever->record.id);
  EXPECT_FALSE(
      store_->token_identity(forever->token.substr(0, forever->token.size() - 1)).has_value());
  EXPECT_FALSE(store_->token_identity("skt_").has_value());
  EXPECT_FALSE(store_->token_identity(forever->token.substr(4)).has_value());  // prefix required

  EXPECT_EQ(store_->list_tokens("alice")->size(), 2u);
  EXPECT_EQ(store_->list_tokens("bob")->size(), 0u);

  clock_.advance(std::chrono::seconds(3600));
  EXPECT_FALSE(store_->token_identity(hour->token).has_value());
  EXPECT_TRUE(store_->token_identity(forever->token).has_value());
  EXPECT_EQ(store_->list_tokens("alice")->size(), 1u);

  // Another user's token id is "not found", and stays valid.
  EXPECT_EQ(store_->revoke_token("bob", forever->record.id).error().code, Error::Code::kNotFound);
  EXPECT_TRUE(store_->token_identity(forever->token).has_value());
  ASSERT_TRUE(store_->revoke_token("alice", forever->record.id).ok());
  EXPECT_FALSE(store_->token_identity(forever->token).has_value());
  EXPECT_FALSE(store_->still_valid(*who));
}

TEST_F(AccountStoreTest, TokensOfDisabledUsersAreRefused) {
  ASSERT_TRUE(store_->add_user("alice", "alice-password", false).ok());
  auto t = store_->create_token("alice", "x", std::nullopt);
  ASSERT_TRUE(t.ok());
  auto who = store_->token_identity(t->token).value();
  ASSERT_TRUE(store_->set_disabled("alice", true).ok());
  EXPECT_FALSE(store_->token_identity(t->token).has_value());
  EXPECT_FALSE(store_->still_valid(who));
  ASSERT_TRUE(store_->set_disabled("alice", false).ok());
  EXPECT_TRUE(store_->token_identity(t->token).has_value());
  EXPECT_EQ(store_->create_token("nobody", "x", std::nullopt).error().code, Error::Code::kNotFound);
}

TEST_F(AccountStoreTest, TokensPerUserAreBounded) {
  ASSERT_TRUE(store_->add_user("alice", "alice-password", false).ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(store_->create_token("alice", "t", std::nullopt).ok());
  EXPECT_EQ(store_->create_token("alice", "t", std::nullopt).error().code, Error::Code::kConflict);
}

TEST_F(AccountStoreTest, AnotherConnectionsChangesAreSeen) {
  ASSERT_TRUE(store_->add_user("alice", "alice-password", false).ok());
  auto session = store_->create_session(store_->find_user("alice").value());
  ASSERT_TRUE(session.ok());
  auto who = store_->session_identity(session->secret).value();
  auto v0 = store_->data_version();
  auto other = open();  // e.g. `skylab user disable` in another process
  ASSERT_TRUE(other->set_disabled("alice", true).ok());
  EXPECT_NE(store_->data_version(), v0);
  EXPECT_FALSE(store_->still_valid(who));
}

// `skylab user passwd` runs in another process while the server (with its
// account and share stores on the same file) keeps running. Opening the
// second store must not drop the first one's SQLite locks, or the other
// process checkpoints the WAL away and the server reads stale sessions.
TEST_F(AccountStoreTest, AnotherProcesssChangesAreSeen) {
  ASSERT_TRUE(store_->add_user("alice", "alice-password", false).ok());
  auto shares = ShareStore::open((fs::path(dir_) / "skylab.db").string());
  ASSERT_TRUE(shares.ok());
  EXPECT_EQ(store_->list_users()->size(), 1u);
  // A fresh process each time (a fork would share SQLite's lock records).
  auto run = [&](const char* what) {
    std::string db = (fs::path(dir_) / "skylab.db").string();
    pid_t pid = ::fork();
    if (pid == 0) {
      ::setenv("SKYLAB_AUTH_TEST_DB", db.c_str(), 1);
      ::setenv("SKYLAB_AUTH_TEST_DO", what, 1);
      ::execl("/proc/self/exe", "skylab_unit_tests", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    int status = 0;
    return pid > 0 && ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
           WEXITSTATUS(status) == 0;
  };
  ASSERT_TRUE(run("add"));  // `skylab user add` while the server runs
  EXPECT_TRUE(store_->find_user("bob").ok());
  auto session = store_->create_session(store_->find_user("alice").value());
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(run("passwd"));  // then `skylab user passwd alice`
  EXPECT_FALSE(store_->session_identity(session->secret).has_value());
  EXPECT_FALSE(store_->check_password("alice", "alice-password").ok());
  EXPECT_TRUE(store_->check_password("alice", "another-password").ok());
}

TEST_F(AccountStoreTest, Authenticator) {
  ASSERT_TRUE(store_->add_user("alice", "alice-password", false).ok());
  auto token = store_->create_token("alice", "t", std::nullopt)->token;
  auto session = store_->create_session(store_->find_user("alice").value()).value();
  AccountAuthenticator a(store_, "admin-secret");
  std::string h = "token " + token;
  std::string cookie = "skylab_session=" + session.secret;
  std::string host_cookie = "__Host-skylab_session=" + session.secret;

  auto admin = a.authenticate({"token admin-secret", "", "", false});
  ASSERT_TRUE(admin);
  EXPECT_EQ(admin->username, "admin");
  EXPECT_TRUE(admin->admin);
  EXPECT_EQ(admin->via, Via::kAdminToken);
  EXPECT_EQ(a.authenticate({"", "admin-secret", "", false})->username, "admin");

  EXPECT_EQ(a.authenticate({h, "", "", false})->via, Via::kApiToken);
  EXPECT_EQ(a.authenticate({"", token, "", false})->username, "alice");
  auto by_cookie = a.authenticate({"", "", cookie, false});
  ASSERT_TRUE(by_cookie);
  EXPECT_TRUE(by_cookie->by_cookie());
  EXPECT_EQ(by_cookie->xsrf, session.xsrf);

  // A wrong Authorization header is not rescued by a cookie or query token.
  EXPECT_FALSE(a.authenticate({"token wrong", token, cookie, false}));
  EXPECT_FALSE(a.authenticate({"Basic abc", "", cookie, false}));
  // Over TLS only the __Host- cookie counts (a plain one may be injected).
  EXPECT_FALSE(a.authenticate({"", "", cookie, true}));
  EXPECT_TRUE(a.authenticate({"", "", host_cookie, true}));
  EXPECT_FALSE(a.authenticate({"", "", host_cookie, false}));
  EXPECT_FALSE(a.authenticate({"", "", "", false}));
  EXPECT_FALSE(a.authenticate({"", "", "skylab_session=", false}));

  // Without an admin token configured, nothing is the admin token.
  AccountAuthenticator none(store_, "");
  EXPECT_FALSE(none.authenticate({"", "", "", false}));
  EXPECT_FALSE(none.authenticate({"token ", "", "", false}));
}

}  // namespace skylab::auth

namespace skylab::auth {

// The login URL's sessions: the admin token's identity, in memory only,
// known to session_identity/still_valid/end_session, bounded, expiring.
TEST_F(AccountStoreTest, AdminSessionsLiveInMemoryOnly) {
  auto s = store_->create_admin_session();
  EXPECT_EQ(s.identity.username, "admin");
  EXPECT_TRUE(s.identity.admin);
  EXPECT_EQ(s.identity.via, Via::kSession);
  auto who = store_->session_identity(s.secret);
  ASSERT_TRUE(who);
  EXPECT_EQ(who->username, "admin");
  EXPECT_TRUE(who->admin);
  EXPECT_EQ(who->xsrf, s.xsrf);
  EXPECT_EQ(who->credential_id, s.identity.credential_id);
  EXPECT_TRUE(store_->still_valid(*who));
  // Another store on the same file (a restart, `skylab user`) does not know it.
  auto other = open();
  ASSERT_TRUE(other);
  EXPECT_FALSE(other->session_identity(s.secret));
  // Sign-out ends it; its WebSockets are then refused.
  store_->end_session(s.secret);
  EXPECT_FALSE(store_->session_identity(s.secret));
  EXPECT_FALSE(store_->still_valid(*who));
  // Expiry.
  auto t = store_->create_admin_session();
  clock_.advance(std::chrono::seconds(3601));
  EXPECT_FALSE(store_->session_identity(t.secret));
  // At most kMaxAdminSessions: the oldest goes first.
  auto first = store_->create_admin_session();
  for (std::size_t i = 0; i < AccountStore::kMaxAdminSessions; ++i) {
    clock_.advance(std::chrono::seconds(1));
    store_->create_admin_session();
  }
  EXPECT_FALSE(store_->session_identity(first.secret));
}

}  // namespace skylab::auth
