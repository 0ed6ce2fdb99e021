#include "kernel/log_cap.hpp"

#include <fcntl.h>
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

}  // namespace

bool rotate_log_if_over(int dirfd, const std::string& name, std::uint64_t cap) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
    return false;
  if (static_cast<std::uint64_t>(st.st_size) <= cap) return false;
  Fd log{::openat(dirfd, name.c_str(), O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)};
  if (log.fd < 0 || ::fstat(log.fd, &st) != 0 || !S_ISREG(st.st_mode)) return false;
  std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
  std::string tmp = name + ".1.tmp-" + util::random_hex(6);
  std::string rotated = name + ".1";
  {
    Fd out{
        ::openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)};
    if (out.fd < 0) return false;
    off_t from = static_cast<off_t>(size > cap ? size - cap : 0);
    std::uint64_t left = size - static_cast<std::uint64_t>(from);
    while (left > 0) {
      ssize_t n = ::copy_file_range(log.fd, &from, out.fd, nullptr, left, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // a short copy still keeps what it got
      left -= static_cast<std::uint64_t>(n);
    }
  }
  if (::renameat(dirfd, tmp.c_str(), dirfd, rotated.c_str()) != 0) {
    ::unlinkat(dirfd, tmp.c_str(), 0);
    return false;
  }
  return ::ftruncate(log.fd, 0) == 0;
}

}  // namespace skylab::kernel
