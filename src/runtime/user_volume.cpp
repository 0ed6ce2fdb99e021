#include "runtime/user_volume.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/safe_fs.hpp"
#include "common/subprocess.hpp"
#include "runtime/sandbox.hpp"

namespace skylab::runtime {

namespace fs = std::filesystem;

namespace {

bool empty_or_missing(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(dir, ec))) return true;
  return fs::is_empty(dir, ec) && !ec;
}

//! Bind-mounts `from` at `to`, nosuid,nodev.
Status bind_mount(const std::string& from, const std::string& to) {
  if (::mount(from.c_str(), to.c_str(), nullptr, MS_BIND, nullptr) != 0)
    return Error::unavailable("cannot bind " + from + " at " + to + ": " + std::strerror(errno));
  ::mount(nullptr, to.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV, nullptr);
  return ok_status();
}

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

//! What makes a copied item the same item to its users: the id that shares
//! name it by (trusted.skylab.id) and its times (the app and Jupyter clients
//! compare `last_modified` to detect saves made elsewhere).
void copy_identity(int in, int out, const struct stat& st) {
  char id[64];
  ssize_t idn = ::fgetxattr(in, "trusted.skylab.id", id, sizeof id);
  if (idn > 0) ::fsetxattr(out, "trusted.skylab.id", id, static_cast<std::size_t>(idn), 0);
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  ::futimens(out, times);
}

//! Copies the tree in `src` into the (empty) directory `dst`, fd-relative
//! and never following a symbolic link (links are copied as links; special
//! files are skipped); everything created is owned by uid:gid, without
//! set-id bits. Returns 0 or an errno (ENOSPC when the volume is full).
int copy_tree(int src, int dst, uid_t uid, gid_t gid, int depth) {
  if (depth > 256) return ELOOP;
  for (auto& n : safe_fs::entry_names(src)) {
    struct stat st;
    if (::fstatat(src, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    mode_t mode = st.st_mode & 0777;
    if (S_ISDIR(st.st_mode)) {
      Fd in(::openat(src, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (in.fd < 0) continue;
      if (::mkdirat(dst, n.c_str(), 0700) != 0) return errno;
      Fd out(::openat(dst, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (out.fd < 0) return errno;
      if (::fchown(out.fd, uid, gid) != 0 || ::fchmod(out.fd, mode) != 0) return errno;
      if (int err = copy_tree(in.fd, out.fd, uid, gid, depth + 1)) return err;
      copy_identity(in.fd, out.fd, st);
    } else if (S_ISREG(st.st_mode)) {
      Fd in(::openat(src, n.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
      if (in.fd < 0 || ::fstat(in.fd, &st) != 0 || !S_ISREG(st.st_mode)) continue;
      Fd out(::openat(dst, n.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (out.fd < 0) return errno;
      // read/write: copy_file_range does not cross filesystems everywhere.
      std::vector<char> buf(1 << 20);
      while (true) {
        ssize_t k = ::read(in.fd, buf.data(), buf.size());
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return errno;
        if (k == 0) break;
        if (!safe_fs::write_all(out.fd, {buf.data(), static_cast<std::size_t>(k)})) return errno;
      }
      if (::fchown(out.fd, uid, gid) != 0 || ::fchmod(out.fd, mode) != 0) return errno;
      copy_identity(in.fd, out.fd, st);
    } else if (S_ISLNK(st.st_mode)) {
      char target[4096];
      ssize_t len = ::readlinkat(src, n.c_str(), target, sizeof target - 1);
      if (len < 0) continue;
      target[len] = '\0';
      if (::symlinkat(target, dst, n.c_str()) != 0) return errno;
      ::fchownat(dst, n.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW);
      struct timespec times[2] = {st.st_atim, st.st_mtim};
      ::utimensat(dst, n.c_str(), times, AT_SYMLINK_NOFOLLOW);
    }
  }
  return 0;
}

//! Copies directory `from` (whose parent is trusted) into directory `to`.
int copy_dir(const fs::path& from, const fs::path& to, uid_t uid, gid_t gid) {
  Fd src(::open(from.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (src.fd < 0) return errno == ENOENT ? 0 : errno;
  Fd dst(::open(to.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (dst.fd < 0) return errno;
  return copy_tree(src.fd, dst.fd, uid, gid, 0);
}

}  // namespace

UserVolumes::UserVolumes(std::string data_dir, std::uint64_t quota_bytes)
    : data_dir_(std::move(data_dir)), quota_(quota_bytes) {}

Status UserVolumes::ensure(const std::string& user, uid_t uid, gid_t gid, bool runtimes_running) {
  if (quota_ == 0) return ok_status();
  MutexLock lock(mutex_);
  if (ready_.count(user)) return ok_status();
  auto st = mount_volume(user, uid, gid, runtimes_running);
  if (st.ok())
    ready_.insert(user);
  else if (warned_.insert(user).second)
    log::warn("drive quota for '" + user +
              "' is enforced by the server only (not inside runtimes): " + st.error().message);
  return st;
}

Status UserVolumes::mount_volume(const std::string& user, uid_t uid, gid_t gid,
                                 bool runtimes_running) {
  fs::path data(data_dir_);
  fs::path drive = data / "drive" / user, cache = data / "cache" / user;
  fs::path vol = data / "volumes" / user, image = data / "volumes" / (user + ".img");
  std::error_code ec;
  if (is_mount_point(drive.string()) && is_mount_point(cache.string()))
    return ok_status();  // an earlier server's
  if (::geteuid() != 0) return Error::unavailable("the server does not run as root");
  // A runtime still running sees the old folders: their data is moved when
  // none is left (a later start), so that nothing it writes is lost.
  bool has_data = (!empty_or_missing(drive) && !is_mount_point(drive.string())) ||
                  (!empty_or_missing(cache) && !is_mount_point(cache.string()));
  if (has_data && runtimes_running)
    return Error::unavailable(
        "the user's data predates the quota and a runtime is using it; moved at a later start");
  fs::create_directories(vol, ec);
  if (ec) return Error::internal("cannot create " + vol.string() + ": " + ec.message());
  ::chmod((data / "volumes").c_str(), 0700);
  if (!is_mount_point(vol.string())) {
    if (!fs::exists(image, ec)) {
      int fd = ::open(image.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd < 0)
        return Error::internal("cannot create " + image.string() + ": " + std::strerror(errno));
      bool sized = ::ftruncate(fd, static_cast<off_t>(quota_)) == 0;
      ::close(fd);
      if (!sized) {
        ::unlink(image.c_str());
        return Error::internal("cannot size " + image.string());
      }
      // A journal for quotas of 1 GiB and more (it costs 4 MiB or more); no
      // blocks reserved for root: the quota is what the user can write.
      std::vector<std::string> mkfs = {"mkfs.ext4",
                                       "-q",
                                       "-F",
                                       "-m",
                                       "0",
                                       "-E",
                                       "root_owner=" + std::to_string(uid) + ":" +
                                           std::to_string(gid) +
                                           // sparse: what is never written reads as zeros
                                           ",nodiscard,lazy_itable_init=1,lazy_journal_init=1"};
      if (quota_ < (1ull << 30)) mkfs.insert(mkfs.end(), {"-O", "^has_journal"});
      mkfs.push_back(image.string());
      int rc = subprocess::run_quiet(mkfs);
      if (rc != 0) {
        ::unlink(image.c_str());
        return Error::unavailable(rc == 127 ? "mkfs.ext4 is not installed (e2fsprogs)"
                                            : "mkfs.ext4 failed");
      }
    }
    if (subprocess::run_quiet({"mount", "-t", "ext4", "-o", "loop,nosuid,nodev,noinit_itable",
                               image.string(), vol.string()}) != 0)
      return Error::unavailable("cannot loop-mount " + image.string() + " (no loop devices?)");
    mounted_.insert(user);
  }
  for (auto sub : {"drive", "cache"}) {
    fs::path d = vol / sub;
    fs::create_directory(d, ec);
    if (::lchown(d.c_str(), uid, gid) != 0 || ::chmod(d.c_str(), 0700) != 0)
      return Error::internal("cannot prepare " + d.string() + ": " + std::strerror(errno));
  }
  // Data from before the volume: copied in once (fd-relative, symbolic
  // links copied as links, never followed), then the old folder removed.
  for (auto [sub, at] : {std::pair<const char*, fs::path>{"drive", drive}, {"cache", cache}}) {
    if (is_mount_point(at.string()) || empty_or_missing(at)) continue;
    fs::path into = vol / sub;
    if (!fs::is_empty(into, ec)) {  // an earlier, interrupted copy
      for (auto& e : fs::directory_iterator(into, ec)) fs::remove_all(e.path(), ec);
    }
    if (int err = copy_dir(at, into, uid, gid)) {
      for (auto& e : fs::directory_iterator(into, ec)) fs::remove_all(e.path(), ec);
      return Error::unavailable(std::string("the user's ") + sub +
                                " could not be moved onto the volume (" + std::strerror(err) +
                                (err == ENOSPC ? ": larger than the quota" : "") + ")");
    }
    fs::path aside = at.parent_path() / ("." + user + ".pre-quota");
    fs::remove_all(aside, ec);
    if (::rename(at.c_str(), aside.c_str()) != 0)
      return Error::internal("cannot move the old " + std::string(sub) +
                             " aside: " + std::strerror(errno));
    fs::remove_all(aside, ec);  // never follows symbolic links; no runtime uses it
  }
  for (auto [sub, at] : {std::pair<const char*, fs::path>{"drive", drive}, {"cache", cache}}) {
    if (is_mount_point(at.string())) continue;
    fs::create_directories(at, ec);
    if (auto st = bind_mount((vol / sub).string(), at.string()); !st.ok()) return st;
  }
  return ok_status();
}

void UserVolumes::release(const std::function<bool(const std::string&)>& busy) {
  MutexLock lock(mutex_);
  fs::path data(data_dir_);
  // Every volume there is (also those an earlier, killed server mounted).
  std::set<std::string> users = mounted_;
  std::error_code ec;
  for (auto it = fs::directory_iterator(data / "volumes", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec))
    if (it->is_directory(ec) && !it->is_symlink(ec)) users.insert(it->path().filename().string());
  for (const auto& user : users) {
    if (busy(user)) continue;
    for (const auto& p : {data / "drive" / user, data / "cache" / user, data / "volumes" / user})
      if (is_mount_point(p.string())) ::umount2(p.c_str(), 0);  // busy: stays mounted, reused later
    ready_.erase(user);
    mounted_.erase(user);
  }
}

}  // namespace skylab::runtime
