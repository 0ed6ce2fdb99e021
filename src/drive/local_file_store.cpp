// LocalFileStore: users' trees on the local filesystem, confined with
// openat(O_NOFOLLOW) walks. See file_store.hpp for the contracts.
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>

#include "common/log.hpp"
#include "common/util.hpp"
#include "drive/codec.hpp"
#include "drive/file_store.hpp"

namespace skylab::drive {

OpenFile& OpenFile::operator=(OpenFile&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    size_ = o.size_;
    o.fd_ = -1;
  }
  return *this;
}

OpenFile::~OpenFile() {
  if (fd_ >= 0) ::close(fd_);
}

ssize_t FileIo::write(int fd, const void* buf, std::size_t n) {
  return ::write(fd, buf, n);
}
int FileIo::fsync(int fd) {
  return ::fsync(fd);
}

bool valid_username(std::string_view name) {
  if (name.empty() || name.size() > 64 || name[0] == '.' || name[0] == '-') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

namespace {

constexpr const char* kTempPrefix = ".~skylab-";
constexpr int kMaxDepth = 256;

//! Owns one file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

TimePoint to_time(const struct timespec& ts) {
  using namespace std::chrono;
  return TimePoint(
      duration_cast<system_clock::duration>(seconds(ts.tv_sec) + nanoseconds(ts.tv_nsec)));
}

bool writable_by_us(const struct stat& st) {
  uid_t uid = ::geteuid();
  if (uid == 0) return true;
  if (st.st_uid == uid) return st.st_mode & S_IWUSR;
  if (st.st_gid == ::getegid()) return st.st_mode & S_IWGRP;
  return st.st_mode & S_IWOTH;
}

NodeInfo info_from(std::string name, const struct stat& st) {
  NodeInfo n;
  n.name = std::move(name);
  n.directory = S_ISDIR(st.st_mode);
  n.size = n.directory ? 0 : static_cast<std::uint64_t>(st.st_size);
  n.modified = to_time(st.st_mtim);
  n.created = to_time(st.st_ctim);
  n.writable = writable_by_us(st);
  return n;
}

std::string shown(const DrivePath& p) {
  return "'" + p.str() + "'";
}

//! Maps an errno from an operation on `p` onto an Error.
Error errno_error(int err, const std::string& what, const DrivePath& p) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
    case ELOOP:
      return Error::not_found("No such file or directory: " + shown(p));
    case EACCES:
    case EPERM:
    case EROFS:
      return Error::forbidden("Permission denied: " + shown(p));
    case ENOSPC:
    case EDQUOT:
      return Error::insufficient_storage("Not enough disk space to " + what + " " + shown(p) +
                                         "; nothing was changed");
    case EFBIG:
      return Error::too_large("File too large: " + shown(p));
    case ENAMETOOLONG:
      return Error::bad_request("Name too long: " + shown(p));
    default:
      return Error::internal("Cannot " + what + " " + shown(p) + ": " + std::strerror(err));
  }
}

class LocalFileStore final : public FileStore {
 public:
  LocalFileStore(Fd root, std::shared_ptr<FileIo> io)
      : root_(std::move(root)), io_(std::move(io)) {}

  Result<NodeInfo> stat(const std::string& user, const DrivePath& path) override {
    if (path.is_root()) {
      auto r = open_root(user);
      if (!r.ok()) return r.error();
      struct stat st;
      if (::fstat(r->get(), &st) != 0) return errno_error(errno, "stat", path);
      return info_from("", st);
    }
    auto dir = open_dir(user, path.parent());
    if (!dir.ok()) return dir.error();
    struct stat st;
    if (::fstatat(dir->get(), std::string(path.name()).c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
      return errno_error(errno, "stat", path);
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
      return Error::not_found("No such file or directory: " + shown(path));
    return info_from(std::string(path.name()), st);
  }

  Result<bool> exists(const std::string& user, const DrivePath& path) override {
    if (path.is_root()) return true;
    auto dir = open_dir(user, path.parent());
    if (!dir.ok()) {
      if (dir.error().code == Error::Code::kNotFound) return false;
      return dir.error();
    }
    struct stat st;
    if (::fstatat(dir->get(), std::string(path.name()).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
      return true;
    if (errno == ENOENT || errno == ENOTDIR) return false;
    return errno_error(errno, "stat", path);
  }

  Result<std::vector<NodeInfo>> list(const std::string& user, const DrivePath& path) override {
    auto dir = open_dir(user, path);
    if (!dir.ok()) return dir.error();
    int dfd = ::dup(dir->get());
    if (dfd < 0) return errno_error(errno, "list", path);
    DIR* d = ::fdopendir(dfd);
    if (!d) {
      int e = errno;
      ::close(dfd);
      return errno_error(e, "list", path);
    }
    std::vector<NodeInfo> out;
    while (struct dirent* e = ::readdir(d)) {
      std::string_view name(e->d_name);
      if (name.empty() || name[0] == '.') continue;  // ".", "..", hidden, our temporaries
      if (e->d_type == DT_LNK || e->d_type == DT_FIFO || e->d_type == DT_SOCK ||
          e->d_type == DT_CHR || e->d_type == DT_BLK)
        continue;
      if (!DrivePath::check_name(name).ok()) continue;  // not addressable through the API
      struct stat st;
      if (::fstatat(dir->get(), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) continue;
      out.push_back(info_from(std::string(name), st));
    }
    ::closedir(d);
    std::sort(out.begin(), out.end(),
              [](const NodeInfo& a, const NodeInfo& b) { return a.name < b.name; });
    return out;
  }

  Result<std::string> read(const std::string& user, const DrivePath& path,
                           std::uint64_t max_bytes) override {
    auto f = open_read(user, path);
    if (!f.ok()) return f.error();
    if (f->size() > max_bytes)
      return Error::too_large("File " + shown(path) + " is larger than " +
                              std::to_string(max_bytes >> 20) +
                              " MiB; download it from /files/ instead");
    std::string out;
    out.resize(f->size());
    std::size_t got = 0;
    while (got < out.size()) {
      ssize_t n = ::read(f->fd(), out.data() + got, out.size() - got);
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno_error(errno, "read", path);
      }
      if (n == 0) break;  // shrank meanwhile
      got += static_cast<std::size_t>(n);
    }
    out.resize(got);
    return out;
  }

  Result<OpenFile> open_read(const std::string& user, const DrivePath& path) override {
    if (path.is_root()) return Error::bad_request("The root is a directory");
    auto dir = open_dir(user, path.parent());
    if (!dir.ok()) return dir.error();
    // O_NONBLOCK: opening a FIFO must not hang the server.
    Fd fd(::openat(dir->get(), std::string(path.name()).c_str(),
                   O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    if (fd.get() < 0) return errno_error(errno, "open", path);
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return errno_error(errno, "stat", path);
    if (S_ISDIR(st.st_mode)) return Error::bad_request(shown(path) + " is a directory");
    if (!S_ISREG(st.st_mode)) return Error::not_found("No such file or directory: " + shown(path));
    int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags >= 0) ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
    return OpenFile(fd.release(), static_cast<std::uint64_t>(st.st_size));
  }

  Status write_atomic(const std::string& user, const DrivePath& path,
                      std::string_view bytes) override {
    if (path.is_root()) return Error::bad_request("Cannot write to the root directory");
    auto dir = open_dir(user, path.parent());
    if (!dir.ok()) return dir.error();
    std::string name(path.name());
    auto existing = existing_file(dir->get(), name, path);
    if (!existing.ok()) return existing.error();
    std::string tmp = std::string(kTempPrefix) + "save-" + util::random_hex(8);
    Fd fd(::openat(dir->get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                   0666));
    if (fd.get() < 0) return errno_error(errno, "save", path);
    auto fail = [&](int err) {
      fd.reset();
      ::unlinkat(dir->get(), tmp.c_str(), 0);
      return errno_error(err, "save", path);
    };
    if (int err = write_all(fd.get(), bytes)) return fail(err);
    adopt(fd.get(), dir->get(), existing.value());
    if (existing.value()) keep_id(fd.get(), dir->get(), name);
    if (io_->fsync(fd.get()) != 0) return fail(errno);
    if (::close(fd.release()) != 0) {
      int err = errno;
      ::unlinkat(dir->get(), tmp.c_str(), 0);
      return errno_error(err, "save", path);
    }
    if (::renameat(dir->get(), tmp.c_str(), dir->get(), name.c_str()) != 0) {
      int err = errno;
      ::unlinkat(dir->get(), tmp.c_str(), 0);
      if (err == EISDIR || err == ENOTEMPTY)
        return Error::bad_request(shown(path) + " is a directory");
      return errno_error(err, "save", path);
    }
    sync_dir(dir->get());
    return ok_status();
  }

  Result<ChunkResult> write_chunk(const std::string& user, const DrivePath& path, int chunk,
                                  std::string_view bytes) override {
    if (path.is_root()) return Error::bad_request("Cannot write to the root directory");
    if (chunk != -1 && chunk < 1)
      return Error::bad_request("'chunk' must be 1, 2, ... or -1 for the last");
    auto dir = open_dir(user, path.parent());
    if (!dir.ok()) return dir.error();
    std::string name(path.name());
    // The staging name depends only on the target name, so every chunk finds it.
    std::string staging = std::string(kTempPrefix) + "upload-" + sha256_hex(name).substr(0, 32);
    auto existing = existing_file(dir->get(), name, path);
    if (!existing.ok()) return existing.error();

    // The staging file sits in a tree the user (or their runtime) can write:
    // O_NONBLOCK so that a FIFO planted under its name fails at once (ENXIO
    // without a reader) instead of blocking a worker thread, and fstat before
    // any I/O.
    constexpr int kFlags = O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    Fd fd;
    if (chunk == 1) {
      fd = Fd(::openat(dir->get(), staging.c_str(), kFlags | O_CREAT | O_TRUNC, 0666));
    } else {
      fd = Fd(::openat(dir->get(), staging.c_str(), kFlags | O_APPEND));
      if (fd.get() < 0 && errno == ENOENT) {
        if (chunk != -1)
          return Error::bad_request("Chunk " + std::to_string(chunk) + " of " + shown(path) +
                                    " arrived before chunk 1 (no upload in progress)");
        fd = Fd(::openat(dir->get(), staging.c_str(), kFlags | O_CREAT | O_EXCL, 0666));
      }
    }
    if (fd.get() < 0 &&
        (errno == ENXIO || errno == EWOULDBLOCK || errno == ENODEV || errno == ELOOP))
      return Error::bad_request("Upload staging file for " + shown(path) +
                                " is not a regular file");
    if (fd.get() < 0) return errno_error(errno, "upload", path);
    struct stat st;
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink > 1)
      return Error::bad_request("Upload staging file for " + shown(path) +
                                " is not a regular file");
    if (int flags = ::fcntl(fd.get(), F_GETFL); flags >= 0)
      ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
    auto discard = [&](int err) {
      fd.reset();
      ::unlinkat(dir->get(), staging.c_str(), 0);
      Error e = errno_error(err, "upload", path);
      if (e.code == Error::Code::kInsufficientStorage)
        e.message = "Not enough disk space to upload " + shown(path) +
                    "; the partial upload was discarded and any existing file was kept";
      return e;
    };
    if (int err = write_all(fd.get(), bytes)) return discard(err);
    ChunkResult res;
    if (::fstat(fd.get(), &st) == 0) res.bytes_so_far = static_cast<std::uint64_t>(st.st_size);
    if (chunk != -1) return res;

    adopt(fd.get(), dir->get(), existing.value());
    if (existing.value()) keep_id(fd.get(), dir->get(), name);
    if (io_->fsync(fd.get()) != 0) return discard(errno);
    if (::close(fd.release()) != 0) {
      int err = errno;
      ::unlinkat(dir->get(), staging.c_str(), 0);
      return errno_error(err, "upload", path);
    }
    if (::renameat(dir->get(), staging.c_str(), dir->get(), name.c_str()) != 0) {
      int err = errno;
      ::unlinkat(dir->get(), staging.c_str(), 0);
      if (err == EISDIR || err == ENOTEMPTY)
        return Error::bad_request(shown(path) + " is a directory");
      return errno_error(err, "upload", path);
    }
    sync_dir(dir->get());
    res.committed = true;
    return res;
  }

  Status make_directory(const std::string& user, const DrivePath& path) override {
    if (path.is_root()) return Error::conflict("The root directory exists");
    auto dir = open_dir(user, path.parent());
    if (!dir.ok()) return dir.error();
    std::string name(path.name());
    if (::mkdirat(dir->get(), name.c_str(), 0777) != 0) {
      if (errno == EEXIST) return Error::conflict("File or directory exists: " + shown(path));
      return errno_error(errno, "create directory", path);
    }
    Fd created(::openat(dir->get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (created.get() >= 0) adopt(created.get(), dir->get(), std::nullopt);
    sync_dir(dir->get());
    return ok_status();
  }

  Status rename(const std::string& user, const DrivePath& from, const DrivePath& to) override {
    if (from.is_root() || to.is_root())
      return Error::bad_request("Cannot rename the root directory");
    if (to.is_within(from) && !(to == from))
      return Error::bad_request("Cannot move " + shown(from) + " into itself");
    auto src = stat(user, from);  // refuses symlinks and special files
    if (!src.ok()) return src.error();
    auto sdir = open_dir(user, from.parent());
    if (!sdir.ok()) return sdir.error();
    auto ddir = open_dir(user, to.parent());
    if (!ddir.ok()) return ddir.error();
    std::string sname(from.name()), dname(to.name());
    int rc = ::renameat2(sdir->get(), sname.c_str(), ddir->get(), dname.c_str(), RENAME_NOREPLACE);
    if (rc != 0 && errno == EINVAL) {
      // Filesystem without RENAME_NOREPLACE: check, then rename.
      struct stat st;
      if (::fstatat(ddir->get(), dname.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
        return Error::conflict("File already exists: " + shown(to));
      rc = ::renameat(sdir->get(), sname.c_str(), ddir->get(), dname.c_str());
    }
    if (rc != 0) {
      if (errno == EEXIST || errno == ENOTEMPTY)
        return Error::conflict("File already exists: " + shown(to));
      return errno_error(errno, "rename", from);
    }
    sync_dir(ddir->get());
    if (!(from.parent() == to.parent())) sync_dir(sdir->get());
    return ok_status();
  }

  Status remove(const std::string& user, const DrivePath& path) override {
    if (path.is_root()) return Error::bad_request("Can't delete root");
    auto dir = open_dir(user, path.parent());
    if (!dir.ok()) return dir.error();
    std::string name(path.name());
    struct stat st;
    if (::fstatat(dir->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
      return errno_error(errno, "delete", path);
    if (S_ISDIR(st.st_mode)) {
      if (int err = remove_tree(dir->get(), name, 0)) return errno_error(err, "delete", path);
    } else if (S_ISREG(st.st_mode)) {
      if (::unlinkat(dir->get(), name.c_str(), 0) != 0) return errno_error(errno, "delete", path);
    } else {
      return Error::not_found("No such file or directory: " + shown(path));
    }
    sync_dir(dir->get());
    return ok_status();
  }

  Status copy_file(const std::string& user, const DrivePath& from, const DrivePath& to) override {
    if (to.is_root()) return Error::bad_request("Cannot copy onto the root directory");
    auto src = open_read(user, from);
    if (!src.ok()) return src.error();
    auto dir = open_dir(user, to.parent());
    if (!dir.ok()) return dir.error();
    std::string name(to.name());
    struct stat st;
    if (::fstatat(dir->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
      return Error::conflict("File already exists: " + shown(to));
    std::string tmp = std::string(kTempPrefix) + "copy-" + util::random_hex(8);
    Fd fd(::openat(dir->get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                   0666));
    if (fd.get() < 0) return errno_error(errno, "copy to", to);
    auto fail = [&](int err) {
      fd.reset();
      ::unlinkat(dir->get(), tmp.c_str(), 0);
      return errno_error(err, "copy to", to);
    };
    std::string buf(1 << 20, '\0');
    while (true) {
      ssize_t n = ::read(src->fd(), buf.data(), buf.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return fail(errno);
      }
      if (n == 0) break;
      if (int err = write_all(fd.get(), std::string_view(buf.data(), static_cast<std::size_t>(n))))
        return fail(err);
    }
    adopt(fd.get(), dir->get(), std::nullopt);
    if (io_->fsync(fd.get()) != 0) return fail(errno);
    if (::close(fd.release()) != 0) {
      int err = errno;
      ::unlinkat(dir->get(), tmp.c_str(), 0);
      return errno_error(err, "copy to", to);
    }
    int rc = ::renameat2(dir->get(), tmp.c_str(), dir->get(), name.c_str(), RENAME_NOREPLACE);
    if (rc != 0 && errno == EINVAL)
      rc = ::renameat(dir->get(), tmp.c_str(), dir->get(), name.c_str());
    if (rc != 0) {
      int err = errno;
      ::unlinkat(dir->get(), tmp.c_str(), 0);
      if (err == EEXIST) return Error::conflict("File already exists: " + shown(to));
      return errno_error(err, "copy to", to);
    }
    sync_dir(dir->get());
    return ok_status();
  }

  Result<std::string> item_id(const std::string& user, const DrivePath& path,
                              bool assign) override {
    Fd fd;
    if (path.is_root()) {
      auto r = open_root(user);
      if (!r.ok()) return r.error();
      fd = std::move(r.value());
    } else {
      auto dir = open_dir(user, path.parent());
      if (!dir.ok()) return dir.error();
      std::string name(path.name());
      struct stat st;
      if (::fstatat(dir->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno_error(errno, "open", path);
      if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
        return Error::not_found("No such file or directory: " + shown(path));
      // O_NONBLOCK | O_NOCTTY: whatever was swapped in after the stat cannot
      // hang or adopt us; fstat then checks it is still a file or directory.
      fd = Fd(::openat(dir->get(), name.c_str(),
                       O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
      if (fd.get() < 0) return errno_error(errno, "open", path);
      if (::fstat(fd.get(), &st) != 0) return errno_error(errno, "stat", path);
      if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
        return Error::not_found("No such file or directory: " + shown(path));
    }
    auto id = read_id(fd.get());
    if (!id.empty() || !assign) return id;
    std::string fresh = util::random_hex(16);
    if (::fsetxattr(fd.get(), id_attr(), fresh.data(), fresh.size(), XATTR_CREATE) != 0) {
      if (errno == EEXIST) return read_id(fd.get());  // assigned concurrently
      return Error::unavailable(std::string("cannot give ") + shown(path) +
                                " an identity: " + std::strerror(errno));
    }
    return fresh;
  }

  Result<std::string> find_item(const std::string& user, const std::string& id,
                                std::size_t max_entries) override {
    if (id.empty()) return Error::not_found("no item id");
    auto root = open_root(user);
    if (!root.ok()) return root.error();
    std::size_t seen = 0;
    bool truncated = false;
    std::string found;
    find_in(root->get(), "", id, 0, seen, max_entries, truncated, found);
    if (!found.empty()) return found;
    if (truncated) return Error::unavailable("too many files to look for a shared item");
    return Error::not_found("the shared item no longer exists");
  }

  std::size_t sweep_temporaries(std::chrono::seconds age) override {
    std::size_t removed = 0;
    int dfd = ::dup(root_.get());
    if (dfd < 0) return 0;
    DIR* d = ::fdopendir(dfd);
    if (!d) {
      ::close(dfd);
      return 0;
    }
    ::rewinddir(d);  // a dup'ed descriptor shares the offset of earlier walks
    auto cutoff = std::chrono::system_clock::now() - age;
    while (struct dirent* e = ::readdir(d)) {
      if (!valid_username(e->d_name)) continue;
      Fd u(::openat(root_.get(), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (u.get() >= 0) removed += sweep_dir(u.get(), cutoff, 0);
    }
    ::closedir(d);
    return removed;
  }

 private:
  //! The attribute that holds an item's id (see FileStore::item_id).
  static const char* id_attr() { return ::geteuid() == 0 ? "trusted.skylab.id" : "user.skylab.id"; }

  //! The id of the open item, "" when it has none (or it is not a valid id).
  static std::string read_id(int fd) {
    char buf[64];
    ssize_t n = ::fgetxattr(fd, id_attr(), buf, sizeof buf);
    if (n <= 0) return {};
    std::string id(buf, static_cast<std::size_t>(n));
    for (char c : id)
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return {};
    return id;
  }

  //! A file about to replace `replaced_name` in `dirfd` takes over its id,
  //! so that shares of it survive saves and uploads.
  static void keep_id(int fd, int dirfd, const std::string& replaced_name) {
    Fd old(::openat(dirfd, replaced_name.c_str(),
                    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    if (old.get() < 0) return;
    struct stat st;
    if (::fstat(old.get(), &st) != 0 || !S_ISREG(st.st_mode)) return;
    std::string id = read_id(old.get());
    if (!id.empty() && ::fsetxattr(fd, id_attr(), id.data(), id.size(), 0) != 0)
      log::warn(std::string("drive: a saved file lost its identity (its shares end): ") +
                std::strerror(errno));
  }

  Result<Fd> open_root(const std::string& user) {
    if (!valid_username(user)) return Error::forbidden("No Drive for this user");
    Fd fd(::openat(root_.get(), user.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd.get() < 0 && errno == ENOENT) {
      if (::mkdirat(root_.get(), user.c_str(), 0700) != 0 && errno != EEXIST)
        return Error::internal(std::string("Cannot create the user's Drive: ") +
                               std::strerror(errno));
      sync_dir(root_.get());
      fd = Fd(::openat(root_.get(), user.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    }
    if (fd.get() < 0)
      return Error::internal(std::string("Cannot open the user's Drive: ") + std::strerror(errno));
    return fd;
  }

  //! Walks `dir` from the user's root, one component at a time, never
  //! following a symlink.
  Result<Fd> open_dir(const std::string& user, const DrivePath& dir) {
    auto cur = open_root(user);
    if (!cur.ok()) return cur.error();
    Fd fd = std::move(cur.value());
    for (const auto& part : dir.parts()) {
      Fd next(::openat(fd.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (next.get() < 0) {
        int err = errno;
        if (err == ENOENT || err == ENOTDIR || err == ELOOP)
          return Error::not_found("No such directory: " + shown(dir));
        return errno_error(err, "open", dir);
      }
      fd = std::move(next);
    }
    return fd;
  }

  //! The stat of the regular file `name` in `dirfd`, nullopt if nothing is
  //! there, an error if something other than a regular file is.
  Result<std::optional<struct stat>> existing_file(int dirfd, const std::string& name,
                                                   const DrivePath& path) {
    struct stat st;
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return std::optional<struct stat>();
      return errno_error(errno, "save", path);
    }
    if (S_ISDIR(st.st_mode)) return Error::bad_request(shown(path) + " is a directory");
    if (!S_ISREG(st.st_mode))
      return Error::bad_request(shown(path) +
                                " is not a regular file (a symbolic link or special file)");
    return std::optional<struct stat>(st);
  }

  //! Gives a file the server creates the right owner and mode: those of the
  //! file it replaces, else the owner of its directory (a user's runtime owns
  //! the user's Drive, and must be able to change what the API wrote).
  //! Ownership changes only when the server runs as root.
  void adopt(int fd, int dirfd, const std::optional<struct stat>& replaced) {
    if (replaced) ::fchmod(fd, replaced->st_mode & 07777);
    if (::geteuid() != 0) return;
    struct stat owner;
    if (replaced) {
      owner = *replaced;
    } else if (::fstat(dirfd, &owner) != 0) {
      return;
    }
    if (::fchown(fd, owner.st_uid, owner.st_gid) != 0)
      log::warn(std::string("drive: cannot set the owner of a new file: ") + std::strerror(errno));
  }

  //! Returns 0 or an errno.
  int write_all(int fd, std::string_view bytes) {
    const char* p = bytes.data();
    std::size_t left = bytes.size();
    while (left > 0) {
      ssize_t n = io_->write(fd, p, std::min<std::size_t>(left, 1 << 24));
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno;
      }
      if (n == 0) return EIO;
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    return 0;
  }

  void sync_dir(int dirfd) {
    if (io_->fsync(dirfd) != 0)
      log::warn(std::string("fsync of a Drive directory failed: ") + std::strerror(errno));
  }

  //! Depth-first search of `dirfd` (Drive path `prefix`) for the item `id`.
  void find_in(int dirfd, const std::string& prefix, const std::string& id, int depth,
               std::size_t& seen, std::size_t max, bool& truncated, std::string& found) {
    if (depth > kMaxDepth) return;
    int dfd = ::dup(dirfd);
    if (dfd < 0) return;
    DIR* d = ::fdopendir(dfd);
    if (!d) {
      ::close(dfd);
      return;
    }
    ::rewinddir(d);
    std::vector<std::string> names;
    while (struct dirent* e = ::readdir(d)) {
      std::string n(e->d_name);
      if (n.empty() || n[0] == '.') continue;  // ".", "..", hidden and temporaries
      if (++seen > max) {
        truncated = true;
        break;
      }
      names.push_back(std::move(n));
    }
    ::closedir(d);
    for (auto& n : names) {
      if (!found.empty()) return;
      struct stat st;
      if (::fstatat(dirfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) continue;
      Fd fd(::openat(dirfd, n.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
      if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0) continue;
      std::string path = prefix.empty() ? n : prefix + "/" + n;
      if (read_id(fd.get()) == id) {
        if (DrivePath::parse(path).ok()) found = path;
        return;
      }
      if (S_ISDIR(st.st_mode)) find_in(fd.get(), path, id, depth + 1, seen, max, truncated, found);
    }
  }

  //! Removes directory `name` in `parent` and everything below; 0 or errno.
  int remove_tree(int parent, const std::string& name, int depth) {
    if (depth > kMaxDepth) return ELOOP;
    Fd fd(::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd.get() < 0) return errno;
    int dfd = ::dup(fd.get());
    if (dfd < 0) return errno;
    DIR* d = ::fdopendir(dfd);
    if (!d) {
      int err = errno;
      ::close(dfd);
      return err;
    }
    std::vector<std::pair<std::string, bool>> entries;
    while (struct dirent* e = ::readdir(d)) {
      std::string n(e->d_name);
      if (n == "." || n == "..") continue;
      struct stat st;
      if (::fstatat(fd.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      entries.emplace_back(std::move(n), S_ISDIR(st.st_mode));
    }
    ::closedir(d);
    for (auto& [n, is_dir] : entries) {
      if (is_dir) {
        if (int err = remove_tree(fd.get(), n, depth + 1)) return err;
      } else if (::unlinkat(fd.get(), n.c_str(), 0) != 0 && errno != ENOENT) {
        return errno;
      }
    }
    if (::unlinkat(parent, name.c_str(), AT_REMOVEDIR) != 0) return errno;
    return 0;
  }

  std::size_t sweep_dir(int dirfd, TimePoint cutoff, int depth) {
    if (depth > kMaxDepth) return 0;
    int dfd = ::dup(dirfd);
    if (dfd < 0) return 0;
    DIR* d = ::fdopendir(dfd);
    if (!d) {
      ::close(dfd);
      return 0;
    }
    ::rewinddir(d);  // a dup'ed descriptor shares the offset of earlier walks
    std::vector<std::string> subdirs;
    std::size_t removed = 0;
    while (struct dirent* e = ::readdir(d)) {
      std::string n(e->d_name);
      if (n == "." || n == "..") continue;
      struct stat st;
      if (::fstatat(dirfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      if (S_ISDIR(st.st_mode)) {
        subdirs.push_back(std::move(n));
      } else if (S_ISREG(st.st_mode) && n.rfind(kTempPrefix, 0) == 0 &&
                 to_time(st.st_mtim) < cutoff) {
        if (::unlinkat(dirfd, n.c_str(), 0) == 0) ++removed;
      }
    }
    ::closedir(d);
    for (auto& n : subdirs) {
      Fd sub(::openat(dirfd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (sub.get() >= 0) removed += sweep_dir(sub.get(), cutoff, depth + 1);
    }
    return removed;
  }

  Fd root_;
  std::shared_ptr<FileIo> io_;
};

}  // namespace

Result<std::unique_ptr<FileStore>> open_local_file_store(const std::string& root,
                                                         std::shared_ptr<FileIo> io) {
  std::error_code ec;
  std::filesystem::create_directories(root, ec);
  if (ec) return Error::internal("Cannot create Drive directory " + root + ": " + ec.message());
  ::chmod(root.c_str(), 0700);
  Fd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0)
    return Error::internal("Cannot open Drive directory " + root + ": " + std::strerror(errno));
  if (!io) io = std::make_shared<FileIo>();
  return std::unique_ptr<FileStore>(std::make_unique<LocalFileStore>(std::move(fd), std::move(io)));
}

}  // namespace skylab::drive
