// Filesystem work done as root in directories a runtime can write (its
// Drive, caches, /content, socket folder). Every call here is relative to a
// directory fd, never follows a symlink, and never opens something that is
// not what it expects (O_NONBLOCK + fstat before any I/O). Path-based calls
// (std::filesystem, open(path)) must not be used in such trees.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace skylab::safe_fs {

//! An owned file descriptor (closed on destruction). -1: none.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_ = -1;
};

//! Writes all of `data` to `fd`, retrying short writes and EINTR. False
//! (errno set; EIO when the file took nothing) when it could not.
bool write_all(int fd, std::string_view data);

//! Opens the directory `path`; the last component must not be a symlink
//! (its parents are trusted, server-owned paths). Error when it is not a
//! directory or cannot be opened.
Result<UniqueFd> open_dir(const std::string& path);

//! Opens (creating with `mode` when missing) the directory `name` directly
//! in `parent`, never following a symlink. When `uid` is not -1 and the
//! directory was just created or is owned by root, it is fchown'ed on its
//! fd to uid:gid. `name` must be one component (no '/', not "." or "..").
Result<UniqueFd> ensure_dir_at(int parent, const std::string& name, mode_t mode,
                               uid_t uid = static_cast<uid_t>(-1),
                               gid_t gid = static_cast<gid_t>(-1));

//! Like ensure_dir_at for each component of the relative path `rel`,
//! starting at `parent`.
Result<UniqueFd> ensure_path_at(int parent, const std::string& rel, mode_t mode,
                                uid_t uid = static_cast<uid_t>(-1),
                                gid_t gid = static_cast<gid_t>(-1));

//! Writes `text` as `name` in the directory `dirfd` atomically: a new file
//! under a random name (O_CREAT|O_EXCL|O_NOFOLLOW), fchmod `mode`, optional
//! fchown, write, optional fsync, renameat over `name`. Readers see the old
//! or the new content. Nothing is left behind on failure.
Status write_file_at(int dirfd, const std::string& name, std::string_view text, mode_t mode,
                     bool sync, uid_t uid = static_cast<uid_t>(-1),
                     gid_t gid = static_cast<gid_t>(-1));

//! write_file_at for `path`, whose directory is opened with open_dir.
//! The one atomic writer for the server's own files and for root writes
//! into user-writable trees (docs/architecture.md, "Writing files").
Status write_file(const std::string& path, std::string_view text, mode_t mode, bool sync);

//! The other mode, for a process writing its own user's file as that user
//! (`skylab run -o`), never for root writing into someone else's tree: the
//! path is followed as the user gave it (symlinks included), the new file
//! gets 0666 less the umask as any editor's would, and it is fsync'ed with
//! its directory. Atomic as write_file_at (a temporary beside it, renamed over
//! it; nothing left behind on failure). Errors name `path`.
Status write_user_file(const std::string& path, std::string_view text);

//! All the bytes of the file open as `fd`, which must be a regular file of at
//! most `max_bytes` (open it O_NONBLOCK: a FIFO or device then fails here at
//! once, never blocks). Errors, to prefix with the file's name: BadRequest
//! "not a regular file", TooLarge "larger than N bytes" (also when it grew
//! past that while read), Internal with the read's errno text.
Result<std::string> read_regular(int fd, std::uint64_t max_bytes);

//! Whether `name` exists in `dirfd` (fstatat AT_SYMLINK_NOFOLLOW; never opened).
bool exists_at(int dirfd, const std::string& name);

//! The names in the directory `dirfd` (not "." and ".."), read through a
//! duplicate of the fd (its offset is untouched); empty when unreadable.
std::vector<std::string> entry_names(int dirfd);

//! Removes `name` in `parent` and, when it is a directory, everything below
//! it, fd-relative and without following symlinks. At most `max_depth`
//! levels are descended; deeper trees are left partly in place. Best effort.
void remove_tree_at(int parent, const std::string& name, int max_depth = 256);
//! remove_tree_at for an absolute path whose parent is trusted.
void remove_tree(const std::string& path, int max_depth = 256);

//! What chown_root_owned_tree did.
struct ChownStats {
  std::size_t changed = 0;  //!< entries given to uid:gid
  std::size_t skipped = 0;  //!< not root's, hard-linked files, special files, too deep
};
//! One-time migration of trees written by older versions: below the
//! directory `dirfd` (and it), every directory and regular file owned by
//! root is fchown'ed (on an fd opened O_NOFOLLOW|O_NONBLOCK and fstat'ed) to
//! uid:gid. Never follows a symlink; skips regular files with st_nlink > 1,
//! special files, anything not owned by root and anything deeper than
//! `max_depth`.
ChownStats chown_root_owned_tree(int dirfd, uid_t uid, gid_t gid, int max_depth = 256);

}  // namespace skylab::safe_fs
