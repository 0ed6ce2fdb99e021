#include "common/safe_fs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

namespace skylab::safe_fs {

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

namespace {

bool one_component(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos;
}

std::string random_suffix() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string s;
  auto v = rng();
  for (int i = 0; i < 16; ++i, v >>= 4) s.push_back(hex[v & 15]);
  return s;
}

// Opens `name` in `dirfd` without following a symlink and without blocking
// (a FIFO swapped in does not hang us); nullopt-like -1 on failure.
int open_nofollow(int dirfd, const char* name, int extra) {
  return ::openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | extra);
}

void remove_children(int dirfd, int depth_left) {
  std::vector<std::string> names = entry_names(dirfd);
  for (auto& n : names) {
    if (::unlinkat(dirfd, n.c_str(), 0) == 0) continue;
    if (errno != EISDIR && errno != EPERM) continue;
    if (depth_left <= 0) continue;
    UniqueFd sub(open_nofollow(dirfd, n.c_str(), O_DIRECTORY));
    if (sub.get() < 0) continue;
    remove_children(sub.get(), depth_left - 1);
    ::unlinkat(dirfd, n.c_str(), AT_REMOVEDIR);
  }
}

void chown_walk(int dirfd, uid_t uid, gid_t gid, int depth_left, ChownStats& stats) {
  std::vector<std::string> names = entry_names(dirfd);
  for (auto& n : names) {
    struct stat pre {};
    if (::fstatat(dirfd, n.c_str(), &pre, AT_SYMLINK_NOFOLLOW) != 0) continue;
    bool dir = S_ISDIR(pre.st_mode);
    if (!dir && !S_ISREG(pre.st_mode)) {
      ++stats.skipped;  // symlinks, sockets, FIFOs: never touched
      continue;
    }
    if (dir && depth_left <= 0) {
      ++stats.skipped;
      continue;
    }
    UniqueFd fd(open_nofollow(dirfd, n.c_str(), dir ? O_DIRECTORY : 0));
    if (fd.get() < 0) continue;
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      if (st.st_uid == 0) {
        if (::fchown(fd.get(), uid, gid) == 0) ++stats.changed;
      } else {
        ++stats.skipped;
      }
      if (depth_left > 0) chown_walk(fd.get(), uid, gid, depth_left - 1, stats);
    } else if (S_ISREG(st.st_mode) && st.st_uid == 0 && st.st_nlink == 1) {
      if (::fchown(fd.get(), uid, gid) == 0) ++stats.changed;
    } else {
      ++stats.skipped;
    }
  }
}

}  // namespace

std::vector<std::string> entry_names(int dirfd) {
  std::vector<std::string> names;
  int dup = ::dup(dirfd);
  if (dup < 0) return names;
  DIR* d = ::fdopendir(dup);
  if (!d) {
    ::close(dup);
    return names;
  }
  // A dup shares the file offset: a second listing through the same fd
  // would start where the last one ended (and find nothing) without this.
  ::rewinddir(d);
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
  }
  ::closedir(d);
  return names;
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;  // the file took nothing: no errno of its own
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

Result<UniqueFd> open_dir(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0)
    return Error::internal("cannot open directory " + path + ": " + std::strerror(errno));
  return fd;
}

Result<UniqueFd> ensure_dir_at(int parent, const std::string& name, mode_t mode, uid_t uid,
                               gid_t gid) {
  if (!one_component(name)) return Error::bad_request("invalid directory name: " + name);
  bool created = ::mkdirat(parent, name.c_str(), mode) == 0;
  if (!created && errno != EEXIST)
    return Error::internal("cannot create " + name + ": " + std::strerror(errno));
  UniqueFd fd(open_nofollow(parent, name.c_str(), O_DIRECTORY));
  if (fd.get() < 0)
    return Error::internal("cannot open directory " + name + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    return Error::internal("cannot stat " + name + ": " + std::strerror(errno));
  if (uid != static_cast<uid_t>(-1) && (created || st.st_uid == 0) &&
      (st.st_uid != uid || st.st_gid != gid)) {
    if (::fchown(fd.get(), uid, gid) != 0)
      return Error::internal("cannot set the owner of " + name + ": " + std::strerror(errno));
  }
  if (created) ::fchmod(fd.get(), mode);  // not narrowed by the umask
  return fd;
}

Result<UniqueFd> ensure_path_at(int parent, const std::string& rel, mode_t mode, uid_t uid,
                                gid_t gid) {
  UniqueFd cur(::dup(parent));
  if (cur.get() < 0) return Error::internal(std::string("dup: ") + std::strerror(errno));
  std::size_t start = 0;
  while (start <= rel.size()) {
    auto slash = rel.find('/', start);
    std::string part =
        rel.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (!part.empty()) {
      auto next = ensure_dir_at(cur.get(), part, mode, uid, gid);
      if (!next.ok()) return next.error();
      cur = std::move(next.value());
    }
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return cur;
}

namespace {
//! write_file_at's body. `exact_mode`: fchmod to `mode` (the umask does not
//! narrow it); else the file is created with `mode` as open(2) does.
Status write_atomic_at(int dirfd, const std::string& name, const std::string& shown,
                       std::string_view text, mode_t mode, bool exact_mode, bool sync, uid_t uid,
                       gid_t gid) {
  if (!one_component(name)) return Error::bad_request("invalid file name: " + shown);
  std::string tmp;
  int fd = -1;
  for (int i = 0; i < 8 && fd < 0; ++i) {
    tmp = "." + name + "." + random_suffix() + ".tmp";
    fd = ::openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  exact_mode ? 0600 : mode);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0)
    return Error::internal("cannot create a file beside " + shown + ": " + std::strerror(errno));
  bool ok = !exact_mode || ::fchmod(fd, mode) == 0;
  if (ok && uid != static_cast<uid_t>(-1)) ok = ::fchown(fd, uid, gid) == 0;
  ok = ok && write_all(fd, text);
  if (ok && sync) ok = ::fsync(fd) == 0;
  int err = errno;
  ok = ::close(fd) == 0 && ok;
  if (ok && ::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) == 0) {
    if (sync) ::fsync(dirfd);
    return ok_status();
  }
  if (ok) err = errno;
  ::unlinkat(dirfd, tmp.c_str(), 0);
  return Error::internal("cannot write " + shown + ": " + std::strerror(err));
}

//! `path`'s directory ("." or "/" where it has none) and last component.
std::pair<std::string, std::string> split_path(const std::string& path) {
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  return {dir, path.substr(slash == std::string::npos ? 0 : slash + 1)};
}
}  // namespace

Status write_file_at(int dirfd, const std::string& name, std::string_view text, mode_t mode,
                     bool sync, uid_t uid, gid_t gid) {
  return write_atomic_at(dirfd, name, name, text, mode, true, sync, uid, gid);
}

Status write_file(const std::string& path, std::string_view text, mode_t mode, bool sync) {
  auto [dir, name] = split_path(path);
  auto fd = open_dir(dir);
  if (!fd.ok()) return fd.error();
  return write_file_at(fd->get(), name, text, mode, sync);
}

Status write_user_file(const std::string& path, std::string_view text) {
  auto [dir, name] = split_path(path);
  UniqueFd fd(
      ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));  // followed: the user's path
  if (fd.get() < 0) return Error::internal("cannot write " + path + ": " + std::strerror(errno));
  return write_atomic_at(fd.get(), name, path, text, 0666, false, true, static_cast<uid_t>(-1),
                         static_cast<gid_t>(-1));
}

Result<std::string> read_regular(int fd, std::uint64_t max_bytes) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
    return Error::bad_request("not a regular file");
  auto too_large = [&] {
    return Error::too_large("larger than " + std::to_string(max_bytes) + " bytes");
  };
  if (static_cast<std::uint64_t>(st.st_size) > max_bytes) return too_large();
  // One byte more than its size: a file that grew since is read on, up to the bound.
  std::string out(static_cast<std::size_t>(st.st_size) + 1, '\0');
  std::size_t got = 0;
  for (;;) {
    if (got == out.size()) {
      if (got > max_bytes) return too_large();
      out.resize(static_cast<std::size_t>(std::min<std::uint64_t>(2 * got, max_bytes + 1)));
    }
    ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::internal(std::strerror(errno));
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  if (got > max_bytes) return too_large();
  out.resize(got);
  return out;
}

bool exists_at(int dirfd, const std::string& name) {
  struct stat st {};
  return ::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

void remove_tree_at(int parent, const std::string& name, int max_depth) {
  if (!one_component(name)) return;
  if (::unlinkat(parent, name.c_str(), 0) == 0 || errno == ENOENT) return;
  UniqueFd fd(open_nofollow(parent, name.c_str(), O_DIRECTORY));
  if (fd.get() < 0) return;
  remove_children(fd.get(), max_depth);
  ::unlinkat(parent, name.c_str(), AT_REMOVEDIR);
}

void remove_tree(const std::string& path, int max_depth) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos || slash + 1 >= path.size()) return;
  auto parent = open_dir(slash == 0 ? "/" : path.substr(0, slash));
  if (!parent.ok()) return;
  remove_tree_at(parent->get(), path.substr(slash + 1), max_depth);
}

ChownStats chown_root_owned_tree(int dirfd, uid_t uid, gid_t gid, int max_depth) {
  ChownStats stats;
  struct stat st {};
  if (::fstat(dirfd, &st) != 0 || !S_ISDIR(st.st_mode)) return stats;
  if (st.st_uid == 0 && ::fchown(dirfd, uid, gid) == 0) ++stats.changed;
  chown_walk(dirfd, uid, gid, max_depth, stats);
  return stats;
}

}  // namespace skylab::safe_fs
