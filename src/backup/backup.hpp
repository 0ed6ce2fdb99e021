// `skylab backup` / `skylab restore`: one archive file (pax tar) holding a
// consistent copy of a data directory, taken while the server runs.
//
// What is in it (under data/ in the archive), and MANIFEST.json last:
//  - every SQLite database at the top of the data directory (skylab.db:
//    accounts, sessions, tokens, shares; drive.db: revisions; any store
//    added later), copied with SQLite's online backup API: a snapshot of one
//    read transaction, never a torn file; taken after the files, so no file
//    in the archive is newer than the metadata that describes it;
//  - every other file and folder (users' Drives with owners, modes and the
//    trusted.skylab.* / user.skylab.* attributes that hold item ids, which
//    shares point at; jobs/, datasets/, live.json, runtime/uids.json);
//  - not: cache/ (downloads, fetched again), volumes/ (per-user images: the
//    Drive files on them are read through drive/<user>), runtimes/ (scratch
//    of running runtimes), runtime/ records and sockets, slurm/, SQLite
//    -wal/-shm/-journal files, symbolic links and special files (counted
//    as skipped: a runtime can put them in a Drive).
// MANIFEST.json lists every entry with type, size, mode, uid, gid and SHA-256.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/result.hpp"

namespace skylab::backup {

//! Progress of a backup or restore, for a progress bar.
struct Progress {
  std::uint64_t done_bytes = 0, total_bytes = 0;  //!< total 0: unknown
  std::uint64_t done_files = 0, total_files = 0;
};
using ProgressFn = std::function<void(const Progress&)>;

struct BackupOptions {
  std::string data_dir;
  std::string output;   //!< the archive; written as OUTPUT.partial-XXXX, then renamed (mode 0600)
  ProgressFn progress;  //!< called from the calling thread, often
};

struct Summary {
  std::uint64_t files = 0, directories = 0, databases = 0, bytes = 0;
  std::uint64_t skipped = 0;  //!< symbolic links, sockets, fifos, devices (backup)
};

//! Writes the archive. Blocking (reads the whole data directory). Root walks
//! the tree fd-relative with O_NOFOLLOW: never follows a link a runtime made.
//! Errors: the data directory is missing or not one, OUTPUT lies inside it,
//! a database cannot be read, disk full. Nothing is left at OUTPUT on error.
Result<Summary> create_backup(const BackupOptions& o);

struct RestoreOptions {
  std::string archive;
  std::string data_dir;  //!< created if missing; must be empty unless `force`
  bool force =
      false;  //!< replace what is in data_dir (refused where something is mounted below it)
  ProgressFn progress;
};

//! Restores an archive made by create_backup into data_dir: extracted into
//! a staging folder inside it, every entry checked against the manifest
//! (and the manifest against the entries), each database through
//! PRAGMA integrity_check, then moved into place. Owners (when root), modes
//! (no setuid/setgid) and skylab extended attributes restored. Refuses
//! (BadRequest, nothing left behind) absolute paths, "..", empty or "."
//! components, links and special files, duplicate entries, entries missing
//! from the manifest or differing from it, and anything after the manifest.
Result<Summary> restore_backup(const RestoreOptions& o);

}  // namespace skylab::backup
