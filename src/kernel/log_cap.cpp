#include "kernel/log_cap.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "common/util.hpp"

namespace skylab::kernel {

namespace {

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

//! Appends bytes [from, to) of `in` to `out`; a short copy keeps what it got.
void copy_range(int in, off_t from, off_t to, int out) {
  while (from < to) {
    ssize_t n = ::copy_file_range(in, &from, out, nullptr, static_cast<std::size_t>(to - from), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
  }
}

}  // namespace

bool rotate_log_if_over(int dirfd, const std::string& name, std::uint64_t cap) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
    return false;
  if (static_cast<std::uint64_t>(st.st_size) <= cap) return false;
  Fd log{::openat(dirfd, name.c_str(), O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)};
  if (log.fd < 0 || ::fstat(log.fd, &st) != 0 || !S_ISREG(st.st_mode)) return false;
  off_t size = st.st_size;
  // Where the log is cut: the last whole block below its end, as collapsing
  // a range needs block-aligned offsets and must leave something behind.
  off_t block = st.st_blksize > 0 ? st.st_blksize : 4096;
  off_t cut = (size - 1) / block * block;
  bool collapse = cut > 0;
  if (!collapse) cut = size;
  std::string tmp = name + ".1.tmp-" + util::random_hex(6);
  Fd out{::openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)};
  if (out.fd < 0) return false;
  off_t keep = static_cast<off_t>(cap);
  copy_range(log.fd, cut > keep ? cut - keep : 0, cut, out.fd);
  if (::renameat(dirfd, tmp.c_str(), dirfd, (name + ".1").c_str()) != 0) {
    ::unlinkat(dirfd, tmp.c_str(), 0);
    return false;
  }
  // Removing the head in place is atomic with the writer's appends: nothing
  // it writes meanwhile is lost (ext4, XFS).
  if (collapse && ::fallocate(log.fd, FALLOC_FL_COLLAPSE_RANGE, 0, cut) == 0) return true;
  // Elsewhere (tmpfs, overlayfs): copy what arrived since, then truncate;
  // only what the writer adds between the last size check and the
  // truncation is lost.
  for (int i = 0; i < 8 && ::fstat(log.fd, &st) == 0 && st.st_size > cut; ++i) {
    copy_range(log.fd, cut, st.st_size, out.fd);
    cut = st.st_size;
  }
  return ::ftruncate(log.fd, 0) == 0;
}

}  // namespace skylab::kernel
