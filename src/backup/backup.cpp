#include "backup/backup.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sched.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "backup/internal.hpp"
#include "backup/tar.hpp"
#include "common/safe_fs.hpp"
#include "common/subprocess.hpp"

namespace skylab::backup {

namespace fs = std::filesystem;
using safe_fs::UniqueFd;

// ---------------------------------------------------------------- shared helpers (internal.hpp)

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr);
}
Sha256::~Sha256() {
  EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
}
void Sha256::update(const void* p, std::size_t n) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), p, n);
}
std::string Sha256::hex() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), md, &len);
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += digits[md[i] >> 4];
    out += digits[md[i] & 15];
  }
  return out;
}

bool skylab_xattr(const std::string& name) {
  return name.rfind("trusted.skylab.", 0) == 0 || name.rfind("user.skylab.", 0) == 0;
}

bool is_sqlite_header(const char* p, std::size_t n) {
  return n >= 16 && std::memcmp(p, "SQLite format 3\0", 16) == 0;
}

namespace {

constexpr int kMaxDepth = 128;
constexpr std::size_t kMaxPath = 4096;

Error sys_error(const std::string& what) {
  return Error::internal(what + ": " + std::strerror(errno));
}

// Top-level names that are not backed up (see backup.hpp).
bool excluded_top(const std::string& name) {
  static const std::set<std::string> names = {"cache", "volumes", "runtimes", "slurm"};
  if (names.count(name)) return true;
  for (const char* suffix : {"-wal", "-shm", "-journal"})
    if (name.size() > std::strlen(suffix) &&
        name.compare(name.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
      return true;
  return false;
}

std::map<std::string, std::string> read_xattrs(int fd) {
  std::map<std::string, std::string> out;
  char names[4096];
  ssize_t n = ::flistxattr(fd, names, sizeof names);
  if (n <= 0) return out;
  for (ssize_t i = 0; i < n;) {
    std::string name(names + i);
    i += static_cast<ssize_t>(name.size()) + 1;
    if (!skylab_xattr(name)) continue;
    char value[1024];
    ssize_t v = ::fgetxattr(fd, name.c_str(), value, sizeof value);
    if (v >= 0) out[name] = std::string(value, static_cast<std::size_t>(v));
  }
  return out;
}

struct Walker {
  TarWriter* tar = nullptr;
  nlohmann::json* entries = nullptr;
  Summary* summary = nullptr;
  Progress progress;
  ProgressFn on_progress;
  int spool_dir = -1;  // for copies of files whose size changes while read
  bool count_only = false;
  std::chrono::steady_clock::time_point last_report{};

  void report(bool force = false) {
    if (!on_progress || count_only) return;
    auto now = std::chrono::steady_clock::now();
    if (!force && now - last_report < std::chrono::milliseconds(100)) return;
    last_report = now;
    on_progress(progress);
  }

  Status add_dir(const std::string& rel, const struct stat& st, int fd) {
    if (count_only) return ok_status();
    TarEntry e;
    e.path = "data/" + rel;
    e.kind = EntryKind::kDirectory;
    e.mode = st.st_mode & 07777;
    e.uid = st.st_uid;
    e.gid = st.st_gid;
    e.mtime = st.st_mtime;
    e.xattrs = read_xattrs(fd);
    if (auto s = tar->add(e); !s.ok()) return s;
    summary->directories++;
    entries->push_back(
        {{"path", rel}, {"type", "directory"}, {"mode", e.mode}, {"uid", e.uid}, {"gid", e.gid}});
    return ok_status();
  }

  // Adds the regular file open at `fd`: its content is first copied (and
  // hashed) into an unnamed spool file, so the size in the header is the
  // size of what follows even when the file changes while it is read.
  Status add_file(const std::string& rel, int fd, const struct stat& st, bool database = false) {
    if (count_only) {
      progress.total_bytes += static_cast<std::uint64_t>(st.st_size);
      progress.total_files++;
      return ok_status();
    }
    UniqueFd spool(::openat(spool_dir, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
    if (spool.get() < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
      // A filesystem without O_TMPFILE (NFS): a named file, unlinked at once.
      spool = UniqueFd(
          ::openat(spool_dir, "spool", O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (spool.get() >= 0) ::unlinkat(spool_dir, "spool", 0);
    }
    if (spool.get() < 0) return sys_error("create a spool file");
    Sha256 sha;
    std::uint64_t size = 0;
    std::vector<char> buf(1 << 20);
    for (;;) {
      ssize_t r = ::read(fd, buf.data(), buf.size());
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return sys_error("read " + rel);
      if (r == 0) break;
      sha.update(buf.data(), static_cast<std::size_t>(r));
      if (!safe_fs::write_all(spool.get(), {buf.data(), static_cast<std::size_t>(r)}))
        return sys_error("write a spool file");
      size += static_cast<std::uint64_t>(r);
      progress.done_bytes += static_cast<std::uint64_t>(r);
      report();
    }
    if (::lseek(spool.get(), 0, SEEK_SET) != 0) return sys_error("rewind a spool file");
    TarEntry e;
    e.path = "data/" + rel;
    e.size = size;
    e.mode = st.st_mode & 07777;
    e.uid = st.st_uid;
    e.gid = st.st_gid;
    e.mtime = st.st_mtime;
    e.xattrs = read_xattrs(fd);
    if (auto s = tar->add(e, spool.get()); !s.ok()) return s;
    std::string hash = sha.hex();
    summary->files++;
    summary->bytes += size;
    progress.done_files++;
    report();
    nlohmann::json j = {{"path", rel},    {"type", "file"}, {"size", size}, {"sha256", hash},
                        {"mode", e.mode}, {"uid", e.uid},   {"gid", e.gid}};
    if (database) j["sqlite"] = true;
    entries->push_back(std::move(j));
    return ok_status();
  }

  // Everything below the directory `dir` (open), whose archive path is `rel`.
  Status walk(int dir, const std::string& rel, int depth, bool top) {
    if (depth > kMaxDepth) {
      summary->skipped++;
      return ok_status();
    }
    int dup = ::dup(dir);
    if (dup < 0) return sys_error("dup");
    std::unique_ptr<DIR, int (*)(DIR*)> d(::fdopendir(dup), ::closedir);
    if (!d) {
      ::close(dup);
      return sys_error("list " + (rel.empty() ? std::string(".") : rel));
    }
    ::rewinddir(d.get());  // the dup shares the offset of an earlier listing
    std::vector<std::string> names;
    while (auto* ent = ::readdir(d.get())) {
      std::string n = ent->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
      std::string child = rel.empty() ? name : rel + "/" + name;
      if (top && excluded_top(name)) continue;
      if (child.size() > kMaxPath) {
        summary->skipped++;
        continue;
      }
      struct stat st;
      if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
      if (top && name == "runtime" && S_ISDIR(st.st_mode)) {
        // Only the uid map: records and sockets belong to runtimes a restore does not bring back.
        UniqueFd rd(::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (rd.get() < 0) continue;
        if (auto s = add_dir(child, st, rd.get()); !s.ok()) return s;
        struct stat ust;
        UniqueFd uf(
            ::openat(rd.get(), "uids.json", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
        if (uf.get() >= 0 && ::fstat(uf.get(), &ust) == 0 && S_ISREG(ust.st_mode))
          if (auto s = add_file(child + "/uids.json", uf.get(), ust); !s.ok()) return s;
        continue;
      }
      if (S_ISDIR(st.st_mode)) {
        UniqueFd sub(::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (sub.get() < 0) continue;
        if (auto s = add_dir(child, st, sub.get()); !s.ok()) return s;
        if (auto s = walk(sub.get(), child, depth + 1, false); !s.ok()) return s;
      } else if (S_ISREG(st.st_mode)) {
        UniqueFd f(::openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
        if (f.get() < 0) continue;
        struct stat fst;
        if (::fstat(f.get(), &fst) != 0 || !S_ISREG(fst.st_mode)) continue;
        if (top) {
          char head[16];
          ssize_t n = ::pread(f.get(), head, sizeof head, 0);
          if (n == 16 && is_sqlite_header(head, 16)) {
            databases.push_back(name);
            if (count_only) {
              progress.total_bytes += static_cast<std::uint64_t>(fst.st_size);
              progress.total_files++;
            }
            continue;  // after the files, through the backup API
          }
        }
        if (auto s = add_file(child, f.get(), fst); !s.ok()) return s;
      } else if (!count_only) {
        summary->skipped++;  // links, sockets, fifos, devices
      }
    }
    return ok_status();
  }

  std::vector<std::string> databases;  // top-level SQLite files found by walk()
};

bool mount_point(const fs::path& p) {
  struct stat a {
  }, b{};
  if (::lstat(p.c_str(), &a) != 0 || ::stat((p / "..").c_str(), &b) != 0) return false;
  return S_ISDIR(a.st_mode) && (a.st_dev != b.st_dev || a.st_ino == b.st_ino);
}

// Per-user volumes (runtime/user_volume.hpp): a user's Drive lives on
// volumes/<user>.img, bound at drive/<user> while a server has it mounted.
// Where it is not (the server is stopped, or has not mounted it since), the
// image is mounted read-only (noload: no journal replay, nothing written)
// in a mount namespace of this process alone and bound at drive/<user>
// there, so the walk reads it as the server would serve it. The server's
// own view is unchanged; everything goes when this process exits.
Status expose_unmounted_volumes(const fs::path& data, const fs::path& work,
                                std::vector<fs::path>& mounts) {
  std::error_code ec;
  fs::path volumes = data / "volumes";
  if (!fs::is_directory(fs::symlink_status(volumes, ec))) return ok_status();
  bool private_ns = false;
  for (auto& e : fs::directory_iterator(volumes, ec)) {
    std::string name = e.path().filename().string();
    if (name.size() <= 4 || name.compare(name.size() - 4, 4, ".img") != 0) continue;
    if (!e.is_regular_file(ec) || e.is_symlink(ec)) continue;
    std::string user = name.substr(0, name.size() - 4);
    if (user.empty() || user.size() > 64 ||
        user.find_first_not_of(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
            std::string::npos ||
        user[0] == '.')
      continue;
    fs::path drive = data / "drive" / user;
    if (mount_point(drive)) continue;  // served from the volume now: read through the bind mount
    if (::geteuid() != 0)
      return Error::unavailable("the Drive of " + user + " is on " + e.path().string() +
                                ", which is not mounted: run skylab backup as root");
    if (!private_ns) {
      if (::unshare(CLONE_NEWNS) != 0) return sys_error("create a mount namespace");
      if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
        return sys_error("make mounts private");
      private_ns = true;
    }
    fs::path at = work / ("volume-" + user);
    fs::path vol = data / "volumes" / user;
    fs::path source;
    if (mount_point(vol)) {
      source = vol / "drive";
    } else {
      fs::create_directory(at, ec);
      if (subprocess::run_quiet({"mount", "-t", "ext4", "-o", "loop,ro,noload,nosuid,nodev,noexec",
                                 e.path().string(), at.string()}) != 0)
        return Error::unavailable("cannot mount " + e.path().string() + " read-only to back up " +
                                  user + "'s Drive");
      mounts.push_back(at);
      source = at / "drive";
    }
    if (!fs::is_directory(fs::symlink_status(source, ec))) continue;  // a volume with no Drive yet
    struct stat dst;
    if (::lstat(drive.c_str(), &dst) != 0) {
      if (::mkdir(drive.c_str(), 0700) != 0) return sys_error("create " + drive.string());
    } else if (!S_ISDIR(dst.st_mode)) {
      return Error::internal(drive.string() + " is not a folder");
    }
    if (::mount(source.c_str(), drive.c_str(), nullptr, MS_BIND, nullptr) != 0)
      return sys_error("bind " + user + "'s volume");
    mounts.push_back(drive);
  }
  return ok_status();
}

// An online backup of database `src_path` into `dst_path` (a new file).
Status backup_database(const std::string& src_path, const std::string& dst_path) {
  sqlite3* src = nullptr;
  sqlite3* dst = nullptr;
  auto close = [&] {
    if (src) sqlite3_close_v2(src);
    if (dst) sqlite3_close_v2(dst);
  };
  if (sqlite3_open_v2(src_path.c_str(), &src, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW,
                      nullptr) != SQLITE_OK) {
    Error e = Error::internal("open " + src_path + ": " + sqlite3_errmsg(src));
    close();
    return e;
  }
  sqlite3_busy_timeout(src, 10000);
  if (sqlite3_open_v2(dst_path.c_str(), &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                      nullptr) != SQLITE_OK) {
    Error e = Error::internal("create " + dst_path);
    close();
    return e;
  }
  sqlite3_backup* b = sqlite3_backup_init(dst, "main", src, "main");
  if (!b) {
    Error e = Error::internal("back up " + src_path + ": " + sqlite3_errmsg(dst));
    close();
    return e;
  }
  int rc;
  int busy = 0;
  // All pages in one step: one read transaction, so one consistent snapshot
  // (in WAL mode writers go on meanwhile).
  while ((rc = sqlite3_backup_step(b, -1)) == SQLITE_BUSY || rc == SQLITE_LOCKED) {
    if (++busy > 600) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  sqlite3_backup_finish(b);
  if (rc != SQLITE_DONE) {
    Error e = Error::internal("back up " + src_path + ": " + sqlite3_errstr(rc));
    close();
    return e;
  }
  close();
  return ok_status();
}

}  // namespace

Result<Summary> create_backup(const BackupOptions& o) {
  std::error_code ec;
  if (!fs::is_directory(o.data_dir, ec))
    return Error::not_found("no data directory at " + o.data_dir);
  fs::path data = fs::canonical(o.data_dir, ec);
  fs::path out = fs::absolute(o.output, ec);
  fs::path out_dir = fs::canonical(out.parent_path(), ec);
  if (ec) return Error::not_found("no folder for the archive at " + out.parent_path().string());
  std::string od = out_dir.string() + "/", dd = data.string() + "/";
  if (od.rfind(dd, 0) == 0)
    return Error::bad_request("the archive must not be written inside the data directory");
  out = out_dir / out.filename();

  // A private folder beside the archive for spool files and database copies.
  std::string tmpl = (out_dir / (out.filename().string() + ".partial-XXXXXX")).string();
  std::vector<char> t(tmpl.begin(), tmpl.end());
  t.push_back('\0');
  if (!::mkdtemp(t.data())) return sys_error("create a folder beside " + out.string());
  fs::path work(t.data());
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code e;
      fs::remove_all(p, e);
    }
  } cleanup{work};
  UniqueFd work_fd(::open(work.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (work_fd.get() < 0) return sys_error("open " + work.string());
  std::string partial = (work / "archive.tar").string();
  UniqueFd out_fd(::open(partial.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (out_fd.get() < 0) return sys_error("create " + partial);

  struct Unmount {  // before the work folder goes (its volume-* are mount points here)
    std::vector<fs::path> mounts;
    ~Unmount() {
      for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) ::umount2(it->c_str(), MNT_DETACH);
    }
  } unmount;
  if (auto s = expose_unmounted_volumes(data, work, unmount.mounts); !s.ok()) return s.error();
  // Opened after that: an fd from before a new mount namespace would see the old one's mounts.
  auto data_fd = safe_fs::open_dir(data.string());
  if (!data_fd.ok()) return data_fd.error();

  Summary summary;
  nlohmann::json entries = nlohmann::json::array();
  TarWriter tar(out_fd.get());

  // Totals first (for the progress bar), then the files, then the databases.
  Walker counter;
  counter.count_only = true;
  counter.summary = &summary;
  if (auto s = counter.walk(data_fd.value().get(), "", 0, true); !s.ok()) return s.error();
  Walker w;
  w.tar = &tar;
  w.entries = &entries;
  w.summary = &summary;
  w.on_progress = o.progress;
  w.spool_dir = work_fd.get();
  w.progress.total_bytes = counter.progress.total_bytes;
  w.progress.total_files = counter.progress.total_files;
  summary.skipped = 0;
  if (auto s = w.walk(data_fd.value().get(), "", 0, true); !s.ok()) return s.error();

  for (const auto& name : w.databases) {
    std::string copy = (work / ("db-" + name)).string();
    if (auto s = backup_database((data / name).string(), copy); !s.ok()) return s.error();
    struct stat src_st;
    if (::fstatat(data_fd.value().get(), name.c_str(), &src_st, AT_SYMLINK_NOFOLLOW) != 0)
      return sys_error("stat " + name);
    UniqueFd f(::open(copy.c_str(), O_RDONLY | O_CLOEXEC));
    if (f.get() < 0) return sys_error("open " + copy);
    struct stat st = src_st;  // owner and mode of the original
    if (auto s = w.add_file(name, f.get(), st, true); !s.ok()) return s.error();
    summary.databases++;
    ::unlink(copy.c_str());
  }

  nlohmann::json manifest = {
      {"format", "skylab-backup"},
      {"version", 1},
      {"created", std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count()},
      {"entries", std::move(entries)},
  };
  struct stat root_st;
  if (::fstat(data_fd.value().get(), &root_st) == 0)
    manifest["root"] = {
        {"mode", root_st.st_mode & 07777}, {"uid", root_st.st_uid}, {"gid", root_st.st_gid}};
  TarEntry m;
  m.path = kManifestName;
  m.mode = 0600;
  m.mtime = manifest["created"].get<std::int64_t>();
  if (auto s = tar.add_bytes(m, manifest.dump(1)); !s.ok()) return s.error();
  if (auto s = tar.finish(); !s.ok()) return s.error();
  if (::fsync(out_fd.get()) != 0) return sys_error("sync " + partial);
  if (::rename(partial.c_str(), out.c_str()) != 0) return sys_error("rename to " + out.string());
  w.report(true);
  return summary;
}

}  // namespace skylab::backup
