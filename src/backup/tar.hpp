// The backup archive's container: POSIX tar (pax), as GNU tar and Python's
// tarfile read it. Only what a Skylab backup holds: regular files and
// directories, with path, size, mode, uid, gid, mtime and extended
// attributes in pax records (SCHILY.xattr.NAME). No transport or policy here:
// TarWriter writes to an fd, TarReader reads one and refuses anything else
// (links, devices, global headers, bad checksums, oversized headers).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace skylab::backup {

enum class EntryKind { kFile, kDirectory };

//! One archive member (its content follows, for files).
struct TarEntry {
  std::string path;  //!< as stored: relative, '/'-separated; not validated by the reader
  EntryKind kind = EntryKind::kFile;
  std::uint64_t size = 0;  //!< bytes of content (files)
  unsigned mode = 0;       //!< permission bits (07777)
  std::uint32_t uid = 0, gid = 0;
  std::int64_t mtime = 0;                     //!< seconds since the epoch
  std::map<std::string, std::string> xattrs;  //!< name -> value
};

//! Writes a pax archive to `fd` (not owned). Not thread-safe.
class TarWriter {
 public:
  explicit TarWriter(int fd) : fd_(fd) {}
  //! Appends `e`; for files, exactly `e.size` bytes are then copied from
  //! `content_fd` (read from its current offset). IO error on a short read or write.
  Status add(const TarEntry& e, int content_fd = -1);
  //! Appends a file whose content is `bytes` (e.size is ignored).
  Status add_bytes(const TarEntry& e, std::string_view bytes);
  //! Writes the end-of-archive blocks. Nothing may be added afterwards.
  Status finish();
  std::uint64_t bytes_written() const { return written_; }

 private:
  Status header(const TarEntry& e);
  Status write_all(const void* data, std::size_t n);
  int fd_;
  std::uint64_t written_ = 0;
};

//! Reads a pax/ustar archive from `fd` (not owned), one entry at a time.
class TarReader {
 public:
  //! `max_header_bytes` bounds each pax extended header.
  explicit TarReader(int fd, std::size_t max_header_bytes = 1 << 20)
      : fd_(fd), max_header_(max_header_bytes) {}
  //! The next entry into `out`; false at the end of the archive. Error for
  //! a malformed archive or an entry that is neither a regular file nor a
  //! directory. The previous entry's unread content is skipped.
  Result<bool> next(TarEntry& out);
  //! Streams the current entry's content to `sink` in chunks (once).
  Status read_content(const std::function<Status(const char*, std::size_t)>& sink);
  std::uint64_t bytes_read() const { return read_; }

 private:
  Status read_exact(void* buf, std::size_t n);
  Status skip(std::uint64_t n);
  int fd_;
  std::size_t max_header_;
  std::uint64_t remaining_ = 0;  // content of the current entry not yet read
  std::uint64_t padding_ = 0;    // after it
  std::uint64_t read_ = 0;
  bool done_ = false;
};

}  // namespace skylab::backup
