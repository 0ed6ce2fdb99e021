// Where the bytes of users' Drives live. FileStore is the interface the
// Drive uses; LocalFileStore keeps each user's tree in a directory
// `<root>/<username>/` on the local filesystem.
//
// Confinement: LocalFileStore walks every path from the user's root with
// openat(O_NOFOLLOW) one component at a time and works only with *at()
// calls on directory descriptors, so no symbolic link (inside the Drive or
// planted by a runtime) is ever followed, and nothing outside the user's
// root can be read, written, renamed, created or removed. Symbolic links
// and special files are invisible: listings skip them, opening them fails.
//
// Durability: every write goes to a temporary file `.~skylab-*` in the target
// directory, is fsync'ed, renamed over the target, and the directory is
// fsync'ed; a crash at any moment leaves the target old or new.
//
// Ownership: a replaced file keeps its mode and owner; a new file or
// directory gets the owner of the directory it is created in (when the
// server runs as root), so that a user's runtime, which owns that user's
// Drive, can change what the API wrote.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "drive/path.hpp"

namespace skylab::drive {

using TimePoint = std::chrono::system_clock::time_point;

//! One entry of a Drive, as stat sees it.
struct NodeInfo {
  std::string name;
  bool directory = false;  //!< else a regular file
  std::uint64_t size = 0;  //!< bytes (files)
  TimePoint modified;
  TimePoint created;  //!< ctime, as Jupyter reports it
  bool writable = true;
};

//! An open regular file for streaming. Owns the descriptor.
class OpenFile {
 public:
  OpenFile() = default;
  OpenFile(int fd, std::uint64_t size) : fd_(fd), size_(size) {}
  OpenFile(OpenFile&& o) noexcept : fd_(o.fd_), size_(o.size_) { o.fd_ = -1; }
  OpenFile& operator=(OpenFile&& o) noexcept;
  OpenFile(const OpenFile&) = delete;
  OpenFile& operator=(const OpenFile&) = delete;
  ~OpenFile();
  int fd() const { return fd_; }
  std::uint64_t size() const { return size_; }
  //! Gives up ownership of the descriptor.
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

//! The system calls through which LocalFileStore writes data; tests replace
//! them to inject ENOSPC, EIO and the like. Same contracts as POSIX.
class FileIo {
 public:
  virtual ~FileIo() = default;
  virtual ssize_t write(int fd, const void* buf, std::size_t n);
  virtual int fsync(int fd);
};

//! Result of one chunk of a chunked upload.
struct ChunkResult {
  std::uint64_t bytes_so_far = 0;  //!< size of the staged upload after this chunk
  bool committed = false;          //!< true after the last chunk (-1): the file is in place
};

//! Storage of users' file trees. Implementations are thread-safe; callers
//! serialize mutations of one user (the Drive holds a per-user lock).
//! Errors: NotFound (missing, or a symlink/special file on the way),
//! BadRequest (wrong kind: file where a directory is needed and the like),
//! Conflict (target exists), InsufficientStorage (ENOSPC, EDQUOT),
//! Forbidden (EACCES, EPERM), TooLarge, Internal.
class FileStore {
 public:
  virtual ~FileStore() = default;

  //! Metadata of `path`; the root is a directory.
  virtual Result<NodeInfo> stat(const std::string& user, const DrivePath& path) = 0;
  //! Whether anything at all (symlinks and special files included) is at
  //! `path`; false also when a directory on the way is missing.
  virtual Result<bool> exists(const std::string& user, const DrivePath& path) = 0;
  //! Regular files and directories in `dir`, sorted by name. Skips symlinks,
  //! special files, names starting with '.' and names that are not valid
  //! DrivePath names.
  virtual Result<std::vector<NodeInfo>> list(const std::string& user, const DrivePath& dir) = 0;
  //! The whole content of a regular file; TooLarge beyond `max_bytes`.
  virtual Result<std::string> read(const std::string& user, const DrivePath& path,
                                   std::uint64_t max_bytes) = 0;
  //! An open descriptor on a regular file, for streaming.
  virtual Result<OpenFile> open_read(const std::string& user, const DrivePath& path) = 0;
  //! Atomically replaces (or creates) the regular file `path` with `bytes`.
  //! The parent directory must exist. An existing directory, symlink or
  //! special file at `path` is an error and is left alone.
  virtual Status write_atomic(const std::string& user, const DrivePath& path,
                              std::string_view bytes) = 0;
  //! Chunked upload to `path`: chunk 1 starts (or restarts) a hidden staging
  //! file next to the target, chunks 2..n append, chunk -1 appends, fsyncs
  //! and renames it over the target. Until then `path` keeps its old
  //! content (or does not exist). A chunk other than 1 or -1 with no staged
  //! upload is BadRequest; -1 alone is a one-chunk upload.
  virtual Result<ChunkResult> write_chunk(const std::string& user, const DrivePath& path, int chunk,
                                          std::string_view bytes) = 0;
  //! Creates directory `path`; Conflict if something exists there.
  virtual Status make_directory(const std::string& user, const DrivePath& path) = 0;
  //! Renames without replacing: Conflict if `to` exists.
  virtual Status rename(const std::string& user, const DrivePath& from, const DrivePath& to) = 0;
  //! Removes a file, or a directory with everything below it (symlinks
  //! inside are removed, never followed).
  virtual Status remove(const std::string& user, const DrivePath& path) = 0;
  //! Copies regular file `from` to a new file `to` (Conflict if it exists),
  //! streaming, atomically.
  virtual Status copy_file(const std::string& user, const DrivePath& from, const DrivePath& to) = 0;
  //! The item's stable identity, kept with the file itself so that it
  //! follows renames and moves (by the server or inside a runtime) and ends
  //! with the file: a random hex id in the extended attribute
  //! `trusted.skylab.id`, which only a root server can read or set (a
  //! runtime's user can neither read nor forge it). When the server is not
  //! root, `user.skylab.id` is used instead (weaker: a same-uid process can
  //! copy it). With `assign`, an item that has no id gets a new one;
  //! without, such an item answers "". Files replaced by write_atomic and
  //! write_chunk keep their id. NotFound when nothing (or a symlink or
  //! special file) is at `path`; Unavailable when the filesystem has no
  //! extended attributes.
  virtual Result<std::string> item_id(const std::string& user, const DrivePath& path,
                                      bool assign) = 0;
  //! The path of the item (file or directory) whose id (see item_id) is
  //! `id`, found by walking the user's tree (fd-relative, never following
  //! symlinks, skipping hidden names) over at most `max_entries` entries.
  //! NotFound when no item has it; Unavailable when the walk stopped at
  //! `max_entries` first.
  virtual Result<std::string> find_item(const std::string& user, const std::string& id,
                                        std::size_t max_entries) = 0;
  //! Deletes leftover temporary files (interrupted saves and uploads) older
  //! than `age` in every user's tree. Returns how many were removed.
  virtual std::size_t sweep_temporaries(std::chrono::seconds age) = 0;
};

//! Opens (creating it 0700 if needed) `root`, the directory that holds one
//! directory per user. `io` defaults to the real system calls.
Result<std::unique_ptr<FileStore>> open_local_file_store(const std::string& root,
                                                         std::shared_ptr<FileIo> io = nullptr);

//! Whether `name` is a valid user name for a Drive root: 1-64 of
//! [A-Za-z0-9._-], not starting with '.' or '-'.
bool valid_username(std::string_view name);

}  // namespace skylab::drive
