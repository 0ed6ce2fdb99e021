// The write-ahead journal of co-edited documents: every change a co-editing
// client gets confirmed (a text update, a structure op) is appended to a
// per-document file in the data directory BEFORE it is confirmed or
// broadcast, so a server killed between a confirmation and the debounced
// save (1-5 s) loses nothing: the next open (or the next server's start)
// replays the records newer than the saved file onto it.
//
// Durability: records are written with write(2) into the page cache, no
// fsync: a process crash (SIGKILL, OOM kill, abort) never loses page-cache
// writes; a power loss or kernel crash may lose the last seconds, as it may
// the debounced saves themselves.
//
// File format (one file per document, `<sha256(owner NUL path)[:32]>.jsonl`):
// one record per line, "<payload bytes> <fnv1a64 of payload, 16 hex> <JSON>\n".
// The first record is the header {"t":"head","owner","path","mtime_ns","size"}:
// the file (as stat'ed) the records apply on top of. A torn last line (a
// crash mid-write) fails its length or checksum and is ignored; the records
// before it replay. The folder is root's (0700), never in a user's Drive;
// files are still opened fd-relative, O_NOFOLLOW, and read back as
// untrusted input (bounded size, json_limits).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.hpp"
#include "common/safe_fs.hpp"

namespace skylab::live {

struct JournalLimits {
  //! A document's journal beyond this many bytes forces a save (which
  //! empties it).
  std::size_t max_bytes = 16u << 20;
  //! A journal is never written beyond this many bytes (a save that keeps
  //! failing, e.g. over quota, must not fill the data directory): later
  //! changes are still applied and confirmed, but not journaled (logged).
  std::size_t max_hard_bytes = 64u << 20;
  //! A journal read back at all (larger: kept aside, not replayed).
  std::size_t max_read_bytes = 256u << 20;
  //! One record's payload (a frame is at most 1 MiB; a record carries no
  //! more than the frame it came from plus a few fields).
  std::size_t max_record_bytes = 4u << 20;
};

//! FNV-1a, 64 bits: the line checksum, and the identity of a cell's text
//! before an update (not a defence against an adversary: the file is root's).
std::uint64_t fnv1a64(std::string_view bytes);
std::string fnv1a64_hex(std::string_view bytes);

//! One journal line (with its "\n") for `record`.
std::string encode_journal_line(const nlohmann::json& record);

struct DecodedJournal {
  std::vector<nlohmann::json> records;  //!< the intact records, in order
  //! The last line was incomplete or failed its check (a crash mid-write):
  //! it is ignored, the records before it are good.
  bool torn_tail = false;
  //! A line before the last failed its check (or a record was not a JSON
  //! object within the limits): decoding stopped there; what follows is
  //! not replayed.
  bool corrupt = false;
};
//! Decodes a journal's bytes. Never throws.
DecodedJournal decode_journal(std::string_view bytes, const JournalLimits& limits);

//! The journal folder. Thread-safe (every call is fd-relative on a folder
//! fd that never changes).
class JournalDir {
 public:
  //! Opens `rel` (e.g. "live/journal") below the existing, trusted folder
  //! `base`, creating its components 0700 when missing, never following a
  //! symlink.
  static Result<std::shared_ptr<JournalDir>> open(const std::string& base, const std::string& rel,
                                                  JournalLimits limits);

  //! The file name of `owner`'s notebook `path` (normalized, no leading '/').
  static std::string name_for(const std::string& owner, const std::string& path);

  const JournalLimits& limits() const { return limits_; }
  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }

  //! Names of the journals in the folder (`*.jsonl`; not the kept-aside ones).
  std::vector<std::string> list() const;
  bool exists(const std::string& name) const;
  //! Its bytes: a regular file opened O_NOFOLLOW|O_NONBLOCK and fstat'ed,
  //! at most limits().max_read_bytes (larger: kTooLarge). kNotFound when missing.
  Result<std::string> read(const std::string& name) const;
  //! Removes it (missing: fine).
  void remove(const std::string& name) const;
  //! Renames it to `<name>.kept-<unix time>-<random>`: never replayed again,
  //! kept for the administrator. Returns the new name.
  Result<std::string> set_aside(const std::string& name) const;

 private:
  JournalDir(safe_fs::UniqueFd fd, std::string path, JournalLimits limits)
      : fd_(std::move(fd)), path_(std::move(path)), limits_(limits) {}
  safe_fs::UniqueFd fd_;
  std::string path_;
  JournalLimits limits_;
};

//! The journal of one open document. Not thread-safe: the service calls it
//! under its lock. Each record carries the document version it produced; a
//! save of version v makes the records up to v unnecessary.
class JournalWriter {
 public:
  JournalWriter(std::shared_ptr<JournalDir> dir, std::string name);
  JournalWriter(const JournalWriter&) = delete;
  JournalWriter& operator=(const JournalWriter&) = delete;

  //! Appends `record`, which produced document version `version`; a new
  //! file starts with `header`. On error nothing is recorded in memory (a
  //! partial line on disk is a torn line, ignored on replay).
  Status append(const nlohmann::json& header, const nlohmann::json& record, std::uint64_t version);
  //! Record bytes held in the file now (0: no file).
  std::uint64_t bytes() const { return bytes_; }
  bool empty() const { return index_.empty(); }
  //! A save of version `v` is on disk and the file as saved is `header`'s:
  //! the file keeps only the records newer than v, under that header (it
  //! is removed when none is left). Atomic (a new file renamed over it).
  Status covered(std::uint64_t v, const nlohmann::json& header);
  //! The document was renamed: the journal moves to `name` with `header`
  //! (naming the new path), keeping its records. Atomic per file.
  Status moved(std::string name, const nlohmann::json& header);
  //! The journal is no longer needed (the notebook was deleted): removed.
  void drop();
  const std::string& name() const { return name_; }

 private:
  //! Rewrites the file as `header` + the records from index_[first] on.
  Status rewrite(std::size_t first, const std::string& name, const nlohmann::json& header);
  std::shared_ptr<JournalDir> dir_;
  std::string name_;
  safe_fs::UniqueFd fd_;  //!< O_RDWR|O_APPEND; -1 until the first append
  std::uint64_t header_end_ = 0;
  std::uint64_t bytes_ = 0;  //!< file size
  //! (version, end offset) of each record after the header.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> index_;
};

}  // namespace skylab::live
