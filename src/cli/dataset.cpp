// `skylab dataset ...`: the datasets an operator provides to every runtime.
// They live in <data-dir>/datasets/<name>/, mounted read-only at
// /datasets/<name> in each runtime; skylab.datasets looks there before the
// user's cache and before downloading.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/args.hpp"
#include "cli/runtime_setup.hpp"
#include "common/util.hpp"

namespace skylab::cli {

namespace fs = std::filesystem;

namespace {

const char* kDatasetHelp =
    "usage: skylab dataset <command> [options]\n"
    "\n"
    "  add NAME PATH [--replace] [--link]   copy the file or folder PATH into the datasets\n"
    "                                       every runtime sees read-only at /datasets/NAME\n"
    "  list [--json]                        the provided datasets, with their sizes\n"
    "  remove NAME                          take a dataset away\n"
    "\n"
    "options:\n"
    "  --data-dir D   the server's data directory (default ./skylab-data); datasets are in\n"
    "                 D/datasets/NAME (you may also put them there by hand, world-readable)\n"
    "  --replace      replace an existing dataset of that name (atomically)\n"
    "  --link         hard-link the files instead of copying (same filesystem only)\n"
    "\n"
    "NAME: 1 to 64 of a-z, 0-9, '_', '-' and '.', starting with a letter or digit. The names\n"
    "the skylab.datasets loaders look for: cifar10, mnist, california_housing (see\n"
    "docs/datasets.md for the files each expects).\n";

struct DatasetArgs {
  std::string command;
  std::vector<std::string> positional;
  std::string data_dir = "./skylab-data";
  bool replace = false;
  bool link = false;
  bool json = false;
};

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(n[0])) return false;
  for (char c : n)
    if (!alnum(c) && c != '_' && c != '-' && c != '.') return false;
  return true;
}

ArgParser::Outcome parse(const std::vector<std::string>& args, DatasetArgs& out) {
  ArgParser p("skylab dataset", kDatasetHelp);
  p.option({"--data-dir"}, &out.data_dir)
      .flag({"--replace"}, &out.replace)
      .flag({"--link"}, &out.link)
      .flag({"--json"}, &out.json)
      .command(&out.command, &out.positional);
  auto outcome = p.parse(args);
  if (outcome == ArgParser::Outcome::kRun && out.command.empty()) {
    p.usage_error("no command given");
    return ArgParser::Outcome::kError;
  }
  return outcome;
}

// Runtimes run as other uids: everything must be readable (and folders enterable) by all.
void make_world_readable(const fs::path& root) {
  std::error_code ec;
  auto fix = [](const fs::path& p) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0 || S_ISLNK(st.st_mode)) return;
    ::chmod(p.c_str(), S_ISDIR(st.st_mode) ? 0755 : (st.st_mode & 0111 ? 0755 : 0644));
  };
  fix(root);
  if (fs::is_directory(root, ec))
    for (auto it = fs::recursive_directory_iterator(root, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
      fix(it->path());
}

struct Usage {
  std::uintmax_t bytes = 0;
  std::uintmax_t files = 0;
};

Usage usage_of(const fs::path& p) {
  Usage u;
  std::error_code ec;
  if (fs::is_regular_file(p, ec)) return {fs::file_size(p, ec), 1};
  for (auto it = fs::recursive_directory_iterator(p, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) {
      u.bytes += it->file_size(ec);
      ++u.files;
    }
  }
  return u;
}

std::string human(std::uintmax_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int i = 0;
  while (v >= 1024 && i < 4) {
    v /= 1024;
    ++i;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, i == 0 ? "%.0f %s" : "%.1f %s", v, units[i]);
  return buf;
}

int fail(const std::string& msg, int code = 1) {
  std::fprintf(stderr, "skylab dataset: %s\n", msg.c_str());
  return code;
}

int add(const DatasetArgs& da, const fs::path& root) {
  if (da.positional.size() != 2)
    return fail("usage: skylab dataset add NAME PATH [--replace] [--link]", 2);
  const std::string& name = da.positional[0];
  if (!valid_name(name))
    return fail("'" + name + "' is not a dataset name (a-z, 0-9, '_', '-', '.'; up to 64)", 2);
  std::error_code ec;
  fs::path src = fs::absolute(da.positional[1], ec);
  if (!fs::exists(src, ec)) return fail(da.positional[1] + ": no such file or folder", 2);
  fs::path dst = root / name;
  if (fs::exists(dst, ec) && !da.replace)
    return fail("a dataset named '" + name + "' exists already (use --replace to replace it)");

  fs::create_directories(root, ec);
  if (ec) return fail("cannot create " + root.string() + ": " + ec.message());
  ::chmod(root.c_str(), 0755);
  // Build it beside the target, then rename: runtimes never see half a dataset.
  fs::path tmp = root / ("." + name + ".tmp-" + util::random_hex(6));
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code e;
      if (!p.empty()) fs::remove_all(p, e);
    }
  } cleanup{tmp};
  auto opts = fs::copy_options::recursive |
              (da.link ? fs::copy_options::create_hard_links : fs::copy_options::none);
  if (fs::is_directory(src, ec)) {
    fs::copy(src, tmp, opts, ec);
  } else {
    fs::create_directory(tmp, ec);
    if (!ec) fs::copy(src, tmp / src.filename(), opts, ec);
  }
  if (ec)
    return fail("cannot " + std::string(da.link ? "link" : "copy") + " " + src.string() + ": " +
                ec.message());
  make_world_readable(tmp);
  fs::path old;
  if (fs::exists(dst, ec)) {
    old = root / ("." + name + ".old-" + util::random_hex(6));
    fs::rename(dst, old, ec);
    if (ec) return fail("cannot replace " + dst.string() + ": " + ec.message());
  }
  fs::rename(tmp, dst, ec);
  if (ec) {
    if (!old.empty()) fs::rename(old, dst, ec);
    return fail("cannot move the dataset into place: " + ec.message());
  }
  cleanup.p.clear();
  if (!old.empty()) fs::remove_all(old, ec);
  Usage u = usage_of(dst);
  std::printf("dataset %s: %ju file%s, %s in %s (runtimes see /datasets/%s)\n", name.c_str(),
              u.files, u.files == 1 ? "" : "s", human(u.bytes).c_str(), dst.string().c_str(),
              name.c_str());
  return 0;
}

int list(const DatasetArgs& da, const fs::path& root) {
  nlohmann::json out = nlohmann::json::array();
  std::error_code ec;
  std::vector<fs::path> entries;
  for (auto& e : fs::directory_iterator(root, ec)) {
    std::string n = e.path().filename().string();
    if (!n.empty() && n[0] != '.') entries.push_back(e.path());
  }
  std::sort(entries.begin(), entries.end());
  for (auto& p : entries) {
    Usage u = usage_of(p);
    out.push_back({{"name", p.filename().string()},
                   {"files", u.files},
                   {"bytes", u.bytes},
                   {"path", p.string()}});
  }
  if (da.json) {
    std::cout << out.dump(1) << std::endl;
    return 0;
  }
  if (out.empty()) {
    std::printf("no datasets in %s (add one with: skylab dataset add NAME PATH)\n",
                root.string().c_str());
    return 0;
  }
  for (auto& d : out)
    std::printf("%-24s %8ju file%s  %10s\n", d["name"].get<std::string>().c_str(),
                d["files"].get<std::uintmax_t>(), d["files"].get<std::uintmax_t>() == 1 ? " " : "s",
                human(d["bytes"].get<std::uintmax_t>()).c_str());
  return 0;
}

int remove(const DatasetArgs& da, const fs::path& root) {
  if (da.positional.size() != 1) return fail("usage: skylab dataset remove NAME", 2);
  const std::string& name = da.positional[0];
  if (!valid_name(name)) return fail("'" + name + "' is not a dataset name", 2);
  std::error_code ec;
  fs::path dst = root / name;
  if (!fs::exists(dst, ec)) return fail("no dataset named '" + name + "'");
  // Out of sight first (one rename), then deleted.
  fs::path gone = root / ("." + name + ".old-" + util::random_hex(6));
  fs::rename(dst, gone, ec);
  if (ec) return fail("cannot remove " + dst.string() + ": " + ec.message());
  fs::remove_all(gone, ec);
  std::printf("dataset %s removed\n", name.c_str());
  return 0;
}

}  // namespace

int dataset_main(const std::vector<std::string>& args) {
  DatasetArgs da;
  if (auto o = parse(args, da); o != ArgParser::Outcome::kRun) return ArgParser::exit_code(o);
  fs::path root = datasets_dir(fs::absolute(da.data_dir));
  if (da.command == "add") return add(da, root);
  if (da.command == "list") return list(da, root);
  if (da.command == "remove") return remove(da, root);
  return usage_error("skylab dataset", "unknown command '" + da.command + "'");
}

}  // namespace skylab::cli
