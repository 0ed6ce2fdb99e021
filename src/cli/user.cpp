// `skylab user ...`: account administration on a data directory, also
// while the server runs (both use <data-dir>/skylab.db through SQLite).
#include <pwd.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "auth/account_store.hpp"
#include "auth/audit_log.hpp"
#include "cli/args.hpp"
#include "common/util.hpp"

namespace skylab::cli {

namespace fs = std::filesystem;

namespace {

const char* kUserHelp =
    "usage: skylab user <command> [options]\n"
    "\n"
    "  add NAME [--admin] [--password-stdin]   create an account\n"
    "  passwd NAME [--password-stdin]          set a new password (ends the user's sessions)\n"
    "  disable NAME                            refuse sign-in and tokens, end sessions, close "
    "WebSockets\n"
    "  enable NAME                             undo disable\n"
    "  admin NAME on|off                       grant or revoke administration\n"
    "  token NAME [--name LABEL] [--expires D] print a new API token for NAME on stdout\n"
    "                                          (D: seconds or 30m, 12h, 90d; default never)\n"
    "  list [--json]                           list accounts\n"
    "\n"
    "options for every command:\n"
    "  --data-dir D      the server's data directory (default ./skylab-data)\n"
    "  --password-stdin  read the password from standard input (first line); without it the\n"
    "                    password is asked for on the terminal\n"
    "\n"
    "User names: 1 to 32 of a-z, 0-9, '_' and '-', starting with a letter or '_'.\n"
    "Passwords: 8 to 1024 bytes.\n";

struct UserArgs {
  std::string command;
  std::vector<std::string> positional;
  std::string data_dir = "./skylab-data";
  bool admin = false;
  bool password_stdin = false;
  bool json = false;
  std::string token_name = "cli";
  std::optional<std::int64_t> expires;
};

std::optional<std::int64_t> parse_duration(const std::string& s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  std::int64_t unit = 1;
  std::string digits = s;
  switch (s.back()) {
    case 's':
      unit = 1;
      digits.pop_back();
      break;
    case 'm':
      unit = 60;
      digits.pop_back();
      break;
    case 'h':
      unit = 3600;
      digits.pop_back();
      break;
    case 'd':
      unit = 86400;
      digits.pop_back();
      break;
    default:
      break;
  }
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  auto v = std::stoll(digits);
  if (v <= 0 || v > 3660LL * 86400 / unit) return std::nullopt;
  return v * unit;
}

ArgParser::Outcome parse(const std::vector<std::string>& args, UserArgs& out) {
  ArgParser p("skylab user", kUserHelp);
  p.option({"--data-dir"}, &out.data_dir)
      .flag({"--admin"}, &out.admin)
      .flag({"--password-stdin"}, &out.password_stdin)
      .flag({"--json"}, &out.json)
      .option({"--name"}, &out.token_name)
      .option({"--expires"},
              [&](const std::string& v) -> std::string {
                out.expires = parse_duration(v);
                if (!out.expires)
                  return "--expires must be a duration such as 3600, 30m, 12h or 90d (at most 10 "
                         "years)";
                return "";
              })
      .command(&out.command, &out.positional);
  auto outcome = p.parse(args);
  if (outcome == ArgParser::Outcome::kRun && out.command.empty()) {
    p.usage_error("which command?");
    return ArgParser::Outcome::kError;
  }
  return outcome;
}

// The password: the first line of stdin, or asked twice on the terminal.
std::optional<std::string> read_password(bool from_stdin, std::string& err) {
  std::string pw;
  if (from_stdin) {
    char buf[4096];
    std::size_t n = 0;
    int c;
    while ((c = std::fgetc(stdin)) != EOF && c != '\n') {
      if (n >= sizeof buf) {
        err = "the password is longer than 4096 bytes";
        return std::nullopt;
      }
      buf[n++] = static_cast<char>(c);
    }
    pw.assign(buf, n);
    if (!pw.empty() && pw.back() == '\r') pw.pop_back();
    return pw;
  }
  if (!::isatty(STDIN_FILENO)) {
    err = "no terminal to ask for the password on; use --password-stdin";
    return std::nullopt;
  }
  auto ask = [](const char* prompt) {
    std::fputs(prompt, stderr);
    std::fflush(stderr);
    termios old{};
    ::tcgetattr(STDIN_FILENO, &old);
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    std::string line;
    std::getline(std::cin, line);
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    std::fputs("\n", stderr);
    return line;
  };
  pw = ask("Password: ");
  if (ask("Again: ") != pw) {
    err = "the passwords differ";
    return std::nullopt;
  }
  return pw;
}

std::string when(std::optional<std::int64_t> t) {
  if (!t) return "never";
  return util::iso_time(std::chrono::system_clock::time_point(std::chrono::seconds(*t)))
             .substr(0, 19) +
         "Z";
}

//! Who ran the command, as the audit log names them: "cli:<login>", with the
//! sudo caller when there is one ("cli:root (sudo alice)").
std::string cli_actor() {
  std::string who = "uid " + std::to_string(::getuid());
  struct passwd pw {};
  struct passwd* found = nullptr;
  std::vector<char> buf(4096);
  if (::getpwuid_r(::getuid(), &pw, buf.data(), buf.size(), &found) == 0 && found)
    who = found->pw_name;
  std::string actor = "cli:" + who;
  const char* sudo = std::getenv("SUDO_USER");
  if (sudo && *sudo && util::valid_utf8(sudo)) actor += std::string(" (sudo ") + sudo + ")";
  return actor;
}

int fail(const std::string& m) {
  std::fprintf(stderr, "skylab user: %s\n", m.c_str());
  return 1;
}

}  // namespace

int user_main(const std::vector<std::string>& args) {
  UserArgs ua;
  if (auto o = parse(args, ua); o != ArgParser::Outcome::kRun) return ArgParser::exit_code(o);
  const std::string& cmd = ua.command;
  std::size_t want = cmd == "list" ? 0 : cmd == "admin" ? 2 : 1;
  bool known = cmd == "add" || cmd == "passwd" || cmd == "disable" || cmd == "enable" ||
               cmd == "admin" || cmd == "token" || cmd == "list";
  if (!known) return usage_error("skylab user", "unknown command '" + cmd + "'");
  if (ua.positional.size() != want)
    return usage_error("skylab user", cmd + " expects " + std::to_string(want) + " argument(s)");
  std::string name = want > 0 ? ua.positional[0] : "";
  if (want > 0 && !auth::valid_username(name))
    return fail(
        "invalid user name: use 1 to 32 of a-z, 0-9, '_' and '-', starting with a letter or '_'");

  std::error_code ec;
  fs::create_directories(ua.data_dir, ec);
  if (ec) return fail("cannot create " + ua.data_dir + ": " + ec.message());
  auth::AccountStoreOptions opts;
  opts.path = (fs::path(ua.data_dir) / "skylab.db").string();
  auto store = auth::AccountStore::open(opts);
  if (!store.ok()) return fail(store.error().message);
  auto& s = *store.value();
  // Account changes made here are audited like those made through the API
  // (the Admin page shows them side by side). An audit log that cannot be
  // opened is reported and does not stop the change (as in the server).
  std::shared_ptr<auth::AuditLog> audit_log;
  if (cmd != "list") {
    auto a = auth::AuditLog::open(opts.path);
    if (a.ok())
      audit_log = a.value();
    else
      std::fprintf(stderr, "skylab user: warning: the audit log is off: %s\n",
                   a.error().message.c_str());
  }
  auto audit = [&](const std::string& action, const std::string& detail = {}) {
    if (audit_log) audit_log->record(cli_actor(), action, name, detail);
  };

  if (cmd == "add" || cmd == "passwd") {
    if (cmd == "passwd" && !s.find_user(name).ok()) return fail("no such user: " + name);
    if (cmd == "add" && s.find_user(name).ok()) return fail("user already exists: " + name);
    std::string err;
    auto pw = read_password(ua.password_stdin, err);
    if (!pw) return fail(err);
    auto st = cmd == "add" ? s.add_user(name, *pw, ua.admin) : s.set_password(name, *pw);
    if (!st.ok()) return fail(st.error().message);
    if (cmd == "add")
      audit("user.add", ua.admin ? "administrator" : "");
    else
      audit("user.password");
    std::fprintf(
        stderr, cmd == "add" ? "created user %s\n" : "password of %s changed; its sessions ended\n",
        name.c_str());
    return 0;
  }
  if (cmd == "disable" || cmd == "enable") {
    auto st = s.set_disabled(name, cmd == "disable");
    if (!st.ok()) return fail(st.error().message);
    audit(cmd == "disable" ? "user.disable" : "user.enable");
    std::fprintf(stderr, "%s %s\n", name.c_str(), cmd == "disable" ? "disabled" : "enabled");
    return 0;
  }
  if (cmd == "admin") {
    const std::string& v = ua.positional[1];
    if (v != "on" && v != "off") return fail("say 'on' or 'off'");
    auto st = s.set_admin(name, v == "on");
    if (!st.ok()) return fail(st.error().message);
    audit(v == "on" ? "user.admin" : "user.unadmin");
    return 0;
  }
  if (cmd == "token") {
    if (ua.token_name.empty() || ua.token_name.size() > 100 || !util::valid_utf8(ua.token_name))
      return fail("--name must have 1 to 100 characters");
    auto u = s.find_user(name);
    if (!u.ok()) return fail("no such user: " + name);
    if (u->disabled) return fail(name + " is disabled");
    auto t = s.create_token(name, ua.token_name, ua.expires);
    if (!t.ok()) return fail(t.error().message);
    audit("token.create", ua.token_name);  // the token's name, never the token
    std::cout << t->token << std::endl;
    return 0;
  }
  // list
  auto users = s.list_users();
  if (!users.ok()) return fail(users.error().message);
  if (ua.json) {
    auto out = nlohmann::json::array();
    for (auto& u : users.value())
      out.push_back({{"username", u.username},
                     {"admin", u.admin},
                     {"disabled", u.disabled},
                     {"created", when(u.created)}});
    std::cout << out.dump(2) << std::endl;
    return 0;
  }
  for (auto& u : users.value())
    std::printf("%-32s %-5s %-8s created %s\n", u.username.c_str(), u.admin ? "admin" : "-",
                u.disabled ? "disabled" : "enabled", when(u.created).c_str());
  return 0;
}

}  // namespace skylab::cli
