// skylab backup --data-dir D FILE / skylab restore FILE --data-dir D [--force]
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "backup/backup.hpp"
#include "cli/args.hpp"

namespace skylab::cli {

namespace {

const char* kBackupHelp =
    "usage: skylab backup [--data-dir D] [--quiet] FILE\n"
    "\n"
    "Writes a consistent backup of data directory D (default ./skylab-data) to\n"
    "FILE (a tar archive with a manifest of checksums), also while the server\n"
    "runs: databases through SQLite's online backup, users' Drives with owners,\n"
    "modes and item ids. Not included: caches, running runtimes. See\n"
    "docs/operations.md.\n";

const char* kRestoreHelp =
    "usage: skylab restore FILE --data-dir D [--force] [--quiet]\n"
    "\n"
    "Restores a backup made by `skylab backup` into D, which must be empty (or\n"
    "missing) unless --force (its content is then replaced; stop the server\n"
    "first). Every entry is checked against the archive's manifest before\n"
    "anything is moved into place.\n";

std::string human(std::uint64_t b) {
  char buf[32];
  if (b >= (1ull << 30))
    std::snprintf(buf, sizeof buf, "%.1f GiB", b / 1073741824.0);
  else if (b >= (1ull << 20))
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / 1048576.0);
  else
    std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  return buf;
}

// A progress bar on stderr when it is a terminal.
backup::ProgressFn progress_bar(bool quiet) {
  if (quiet || !::isatty(STDERR_FILENO)) return nullptr;
  return [](const backup::Progress& p) {
    double f =
        p.total_bytes ? static_cast<double>(p.done_bytes) / static_cast<double>(p.total_bytes) : 0;
    if (f > 1) f = 1;
    int filled = static_cast<int>(f * 30);
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(30, ' ');
    std::fprintf(stderr, "\r[%s] %3d%%  %s / %s  %llu files ", bar.c_str(),
                 static_cast<int>(f * 100), human(p.done_bytes).c_str(),
                 human(p.total_bytes).c_str(), static_cast<unsigned long long>(p.done_files));
    std::fflush(stderr);
  };
}

//! The one archive FILE argument.
ArgParser::Take one_file(std::string* file) {
  return [file](const std::string& a) -> std::string {
    if (!file->empty()) return "unexpected argument '" + a + "' (one archive FILE)";
    *file = a;
    return "";
  };
}

}  // namespace

int backup_main(const std::vector<std::string>& args) {
  std::string data_dir = "skylab-data", file;
  bool quiet = false;
  ArgParser p("skylab backup", kBackupHelp);
  p.option({"--data-dir"}, &data_dir).flag({"-q", "--quiet"}, &quiet).positional(one_file(&file));
  if (auto o = p.parse(args); o != ArgParser::Outcome::kRun) return ArgParser::exit_code(o);
  if (file.empty()) return p.usage_error("name the archive FILE");
  backup::BackupOptions o;
  o.data_dir = data_dir;
  o.output = file;
  o.progress = progress_bar(quiet);
  auto r = backup::create_backup(o);
  if (o.progress) std::fputc('\n', stderr);
  if (!r.ok()) {
    std::fprintf(stderr, "skylab backup: %s\n", r.error().message.c_str());
    return 1;
  }
  if (!quiet)
    std::fprintf(
        stderr, "skylab backup: %s: %llu files (%s), %llu folders, %llu databases%s\n",
        file.c_str(), static_cast<unsigned long long>(r->files), human(r->bytes).c_str(),
        static_cast<unsigned long long>(r->directories),
        static_cast<unsigned long long>(r->databases),
        r->skipped ? (", " + std::to_string(r->skipped) + " links or special files skipped").c_str()
                   : "");
  return 0;
}

int restore_main(const std::vector<std::string>& args) {
  std::string data_dir, file;
  bool quiet = false, force = false;
  ArgParser p("skylab restore", kRestoreHelp);
  p.option({"--data-dir"}, &data_dir)
      .flag({"--force"}, &force)
      .flag({"-q", "--quiet"}, &quiet)
      .positional(one_file(&file));
  if (auto o = p.parse(args); o != ArgParser::Outcome::kRun) return ArgParser::exit_code(o);
  if (file.empty() || data_dir.empty())
    return p.usage_error("name the archive FILE and --data-dir D");
  backup::RestoreOptions o;
  o.archive = file;
  o.data_dir = data_dir;
  o.force = force;
  o.progress = progress_bar(quiet);
  auto r = backup::restore_backup(o);
  if (o.progress) std::fputc('\n', stderr);
  if (!r.ok()) {
    std::fprintf(stderr, "skylab restore: %s\n", r.error().message.c_str());
    return 1;
  }
  if (!quiet)
    std::fprintf(stderr, "skylab restore: %s: %llu files (%s), %llu folders, %llu databases\n",
                 data_dir.c_str(), static_cast<unsigned long long>(r->files),
                 human(r->bytes).c_str(), static_cast<unsigned long long>(r->directories),
                 static_cast<unsigned long long>(r->databases));
  return 0;
}

}  // namespace skylab::cli
