#include <dirent.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "backup/backup.hpp"
#include "backup/internal.hpp"
#include "backup/tar.hpp"
#include "common/safe_fs.hpp"

namespace skylab::backup {

namespace fs = std::filesystem;
using safe_fs::UniqueFd;

namespace {

constexpr std::uint64_t kMaxManifest = 512ull << 20;
constexpr std::size_t kMaxEntries = 20'000'000;
constexpr std::size_t kMaxPath = 4096;
constexpr int kMaxDepth = 128;

Error sys_error(const std::string& what) {
  return Error::internal(what + ": " + std::strerror(errno));
}
Error refused(const std::string& why) {
  return Error::bad_request("refused: " + why);
}

//! The components of an archive path below data/, or empty when it is unsafe.
std::vector<std::string> safe_components(const std::string& rel) {
  std::vector<std::string> parts;
  if (rel.empty() || rel.size() > kMaxPath || rel.front() == '/' ||
      rel.find('\0') != std::string::npos)
    return {};
  std::size_t pos = 0;
  while (pos <= rel.size()) {
    std::size_t slash = rel.find('/', pos);
    std::string c = rel.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
    if (c.empty() || c == "." || c == ".." || c.size() > 255) return {};
    parts.push_back(c);
    if (slash == std::string::npos) break;
    pos = slash + 1;
  }
  if (parts.size() > kMaxDepth) return {};
  return parts;
}

struct Extracted {
  EntryKind kind;
  std::uint64_t size = 0;
  std::string sha256;
};

// Removes `name` in `dir` and everything below it, never following a link.
void remove_at(int dir, const std::string& name, int depth = 0) {
  struct stat st;
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return;
  if (S_ISDIR(st.st_mode) && depth < 256) {
    int fd = ::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
      std::unique_ptr<DIR, int (*)(DIR*)> d(::fdopendir(fd), ::closedir);
      if (!d) ::close(fd);
      std::vector<std::string> names;
      while (d && (true)) {
        auto* e = ::readdir(d.get());
        if (!e) break;
        std::string n = e->d_name;
        if (n != "." && n != "..") names.push_back(n);
      }
      for (auto& n : names) remove_at(::dirfd(d.get()), n, depth + 1);
    }
    ::unlinkat(dir, name.c_str(), AT_REMOVEDIR);
  } else {
    ::unlinkat(dir, name.c_str(), 0);
  }
}

// Mount points at or below `path` (as /proc/self/mountinfo says).
bool has_mounts_below(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string id, parent, devs, root, point;
    f >> id >> parent >> devs >> root >> point;
    if (point == path || point.rfind(path + "/", 0) == 0) return true;
  }
  return false;
}

class Extractor {
 public:
  Extractor(int staging, bool root) : staging_(staging), root_(root) {}

  // Opens (creating 0700 when missing) the directory at `parts[0..n)` below staging.
  Result<UniqueFd> open_dir(const std::vector<std::string>& parts, std::size_t n) {
    UniqueFd cur(::dup(staging_));
    for (std::size_t i = 0; i < n; ++i) {
      if (::mkdirat(cur.get(), parts[i].c_str(), 0700) != 0 && errno != EEXIST)
        return sys_error("create a folder");
      UniqueFd next(
          ::openat(cur.get(), parts[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (next.get() < 0) return refused("a path goes through something that is not a folder");
      cur = std::move(next);
    }
    return cur;
  }

  Status apply_meta(int fd, const TarEntry& e) {
    if (root_ && ::fchown(fd, e.uid, e.gid) != 0) return sys_error("set the owner of " + e.path);
    if (::fchmod(fd, e.mode & 01777) != 0)
      return sys_error("set the mode of " + e.path);  // never setuid/setgid
    for (auto& [k, v] : e.xattrs) {
      if (!skylab_xattr(k) || v.size() > 1024) continue;
      if (k.rfind("trusted.", 0) == 0 && !root_) continue;
      ::fsetxattr(fd, k.c_str(), v.data(), v.size(),
                  0);  // best effort: the filesystem may lack them
    }
    return ok_status();
  }

  Status entry(TarReader& tar, const TarEntry& e, const std::string& rel) {
    auto parts = safe_components(rel);
    if (parts.empty())
      return refused("an unsafe path in the archive: '" + e.path.substr(0, 200) + "'");
    if (seen_.size() >= kMaxEntries) return refused("too many entries");
    if (seen_.count(rel)) return refused("a duplicate entry: " + rel);
    auto parent = open_dir(parts, parts.size() - 1);
    if (!parent.ok()) return parent.error();
    const std::string& name = parts.back();
    if (e.kind == EntryKind::kDirectory) {
      if (::mkdirat(parent.value().get(), name.c_str(), 0700) != 0 && errno != EEXIST)
        return sys_error("create " + rel);
      UniqueFd d(::openat(parent.value().get(), name.c_str(),
                          O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (d.get() < 0) return refused("a folder entry where a file is: " + rel);
      if (auto s = apply_meta(d.get(), e); !s.ok()) return s;
      seen_[rel] = {EntryKind::kDirectory, 0, ""};
      return ok_status();
    }
    UniqueFd f(::openat(parent.value().get(), name.c_str(),
                        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (f.get() < 0) {
      if (errno == EEXIST) return refused("a file entry where something already is: " + rel);
      return sys_error("create " + rel);
    }
    Sha256 sha;
    std::uint64_t size = 0;
    auto st = tar.read_content([&](const char* p, std::size_t n) -> Status {
      sha.update(p, n);
      size += n;
      if (!safe_fs::write_all(f.get(), {p, n})) return sys_error("write " + rel);
      return ok_status();
    });
    if (!st.ok()) return st;
    if (auto s = apply_meta(f.get(), e); !s.ok()) return s;
    struct timespec times[2] = {{e.mtime, 0}, {e.mtime, 0}};
    ::futimens(f.get(), times);
    seen_[rel] = {EntryKind::kFile, size, sha.hex()};
    return ok_status();
  }

  const std::map<std::string, Extracted>& seen() const { return seen_; }

 private:
  int staging_;
  bool root_;
  std::map<std::string, Extracted> seen_;
};

Status check_database(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, nullptr) !=
      SQLITE_OK) {
    sqlite3_close_v2(db);
    return refused("a database in the archive cannot be opened: " + path);
  }
  sqlite3_stmt* st = nullptr;
  std::string result;
  if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    result = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close_v2(db);
  if (result != "ok")
    return refused("a database in the archive fails its integrity check: " + path + ": " + result);
  return ok_status();
}

}  // namespace

Result<Summary> restore_backup(const RestoreOptions& o) {
  UniqueFd in(::open(o.archive.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.get() < 0)
    return Error::not_found("cannot open " + o.archive + ": " + std::strerror(errno));
  struct stat ast;
  ::fstat(in.get(), &ast);

  std::error_code ec;
  fs::create_directories(o.data_dir, ec);
  if (ec) return Error::internal("cannot create " + o.data_dir + ": " + ec.message());
  fs::path data = fs::canonical(o.data_dir, ec);
  auto data_fd = safe_fs::open_dir(data.string());
  if (!data_fd.ok()) return data_fd.error();
  bool empty = fs::is_empty(data, ec);
  if (!empty && !o.force)
    return Error::conflict(
        data.string() +
        " is not empty (restore into an empty folder, or pass --force to replace it)");
  if (!empty && has_mounts_below(data.string()))
    return Error::conflict("something is mounted below " + data.string() +
                           " (a running server's volumes?): stop it first");

  std::string staging_name = ".skylab-restore-" + std::to_string(::getpid());
  remove_at(data_fd.value().get(), staging_name);
  if (::mkdirat(data_fd.value().get(), staging_name.c_str(), 0700) != 0)
    return sys_error("create a staging folder");
  struct Cleanup {
    int dir;
    std::string name;
    bool armed = true;
    ~Cleanup() {
      if (armed) remove_at(dir, name);
    }
  } cleanup{data_fd.value().get(), staging_name};
  UniqueFd staging(::openat(data_fd.value().get(), staging_name.c_str(),
                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (staging.get() < 0) return sys_error("open the staging folder");

  Extractor ex(staging.get(), ::geteuid() == 0);
  TarReader tar(in.get());
  std::string manifest_text;
  bool have_manifest = false;
  Progress progress;
  progress.total_bytes = static_cast<std::uint64_t>(ast.st_size);
  for (;;) {
    TarEntry e;
    auto more = tar.next(e);
    if (!more.ok())
      return more.error().code == Error::Code::kBadRequest ? refused(more.error().message)
                                                           : more.error();
    if (!more.value()) break;
    if (have_manifest) return refused("entries after the manifest");
    if (e.path == kManifestName && e.kind == EntryKind::kFile) {
      if (e.size > kMaxManifest) return refused("the manifest is too large");
      auto st = tar.read_content([&](const char* p, std::size_t n) -> Status {
        manifest_text.append(p, n);
        return ok_status();
      });
      if (!st.ok()) return st.error();
      have_manifest = true;
      continue;
    }
    if (e.path.rfind("data/", 0) != 0)
      return refused("an entry outside data/: '" + e.path.substr(0, 200) + "'");
    std::string rel = e.path.substr(5);
    if (e.kind == EntryKind::kDirectory && !rel.empty() && rel.back() == '/')
      rel.pop_back();  // as tar writes folders
    if (auto st = ex.entry(tar, e, rel); !st.ok()) return st.error();
    progress.done_bytes = tar.bytes_read();
    progress.done_files++;
    if (o.progress) o.progress(progress);
  }
  if (!have_manifest)
    return refused("the archive has no manifest (not a Skylab backup, or cut short)");

  nlohmann::json manifest = nlohmann::json::parse(manifest_text, nullptr, false);
  if (manifest.is_discarded() || !manifest.is_object() ||
      manifest.value("format", "") != "skylab-backup" || !manifest.contains("entries") ||
      !manifest["entries"].is_array())
    return refused("the manifest is not a Skylab backup manifest");
  if (manifest.value("version", 0) != 1)
    return refused("a backup format this Skylab does not know (version " +
                   manifest["version"].dump() + ")");
  Summary summary;
  std::map<std::string, bool> listed;
  std::vector<std::string> databases;
  try {
    for (auto& m : manifest["entries"]) {
      std::string path = m.at("path").get<std::string>();
      std::string type = m.at("type").get<std::string>();
      auto it = ex.seen().find(path);
      if (it == ex.seen().end())
        return refused("the manifest lists " + path + ", the archive does not hold it");
      if (listed.count(path)) return refused("the manifest lists " + path + " twice");
      listed[path] = true;
      if (type == "directory") {
        if (it->second.kind != EntryKind::kDirectory)
          return refused(path + " differs from the manifest");
        summary.directories++;
      } else if (type == "file") {
        if (it->second.kind != EntryKind::kFile ||
            it->second.size != m.at("size").get<std::uint64_t>() ||
            it->second.sha256 != m.at("sha256").get<std::string>())
          return refused(path + " differs from the manifest (size or checksum)");
        summary.files++;
        summary.bytes += it->second.size;
        if (m.value("sqlite", false) && path.find('/') == std::string::npos)
          databases.push_back(path);
      } else {
        return refused("the manifest lists an entry of unknown type");
      }
    }
  } catch (const nlohmann::json::exception&) {
    return refused("the manifest is malformed");
  }
  for (auto& [path, _] : ex.seen())
    if (!listed.count(path)) return refused(path + " is in the archive but not in the manifest");
  for (auto& db : databases) {
    if (auto st = check_database((data / staging_name / db).string()); !st.ok()) return st.error();
    summary.databases++;
  }

  // Into place: (with --force) what was there goes, then each top-level entry moves up.
  std::vector<std::string> existing, restored;
  for (auto& e : fs::directory_iterator(data, ec))
    if (e.path().filename() != staging_name) existing.push_back(e.path().filename().string());
  for (auto& e : fs::directory_iterator(data / staging_name, ec))
    restored.push_back(e.path().filename().string());
  for (auto& n : existing) remove_at(data_fd.value().get(), n);
  for (auto& n : restored)
    if (::renameat(staging.get(), n.c_str(), data_fd.value().get(), n.c_str()) != 0)
      return sys_error("move " + n + " into place");
  if (::syncfs(data_fd.value().get()) != 0) return sys_error("sync " + data.string());
  if (manifest.contains("root") && manifest["root"].is_object()) {
    auto& r = manifest["root"];
    ::fchmod(data_fd.value().get(), r.value("mode", 0711u) & 0777);
    if (::geteuid() == 0) ::fchown(data_fd.value().get(), r.value("uid", 0u), r.value("gid", 0u));
  }
  return summary;
}

}  // namespace skylab::backup
