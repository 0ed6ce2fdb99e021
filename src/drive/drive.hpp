// The Drive: each user's notebooks and files, with revisions. This is what
// the Contents, Checkpoints and revisions APIs call. Every call names the
// requesting user (auth::Identity); each user has their own root, and paths
// are checked by DrivePath::parse before anything else happens.
//
// Jupyter semantics (as Jupyter Server's FileContentsManager with
// allow_hidden=False): hidden names (".x") are not listed, not readable (404)
// and not writable (400); ".ipynb" files are notebooks unless asked as files.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "auth/auth.hpp"
#include "common/mutex.hpp"
#include "common/periodic.hpp"
#include "common/result.hpp"
#include "drive/file_store.hpp"
#include "drive/metadata_store.hpp"
#include "drive/path.hpp"
#include "drive/revision_policy.hpp"

namespace skylab::drive {

enum class EntryType { kDirectory, kFile, kNotebook };
std::string_view entry_type_name(EntryType t);
//! "directory", "file", "notebook"; nullopt otherwise.
std::optional<EntryType> parse_entry_type(std::string_view s);

//! One file, notebook or directory, without content.
struct Entry {
  std::string path;  //!< "a/b.ipynb"; "" for the root
  std::string name;
  EntryType type = EntryType::kFile;
  bool writable = true;
  TimePoint created;
  TimePoint modified;
  std::optional<std::uint64_t> size;  //!< bytes; none for directories
};

struct DriveOptions {
  std::string files_dir;  //!< one directory per user below it
  std::string database;   //!< SQLite file for revisions
  RevisionPolicy revisions;
  //! Largest file whose content is returned by read_file/read_notebook, and
  //! whose revision is kept (larger ones: TooLarge / no revision).
  std::uint64_t max_read_bytes = 64ull << 20;
  //! Per-user storage quota in bytes over the Drive and the user's caches
  //! (`cache_dir`/<user>); 0: unlimited. Revisions (in `database`) are not
  //! counted: the revision policy bounds them. Writes that would pass it
  //! fail with InsufficientStorage and leave the old file unchanged.
  std::uint64_t quota_bytes = 0;
  //! Parent of users' cache folders counted with their Drive ("" = none).
  std::string cache_dir;
  //! Clock (its wall()) for revision times and pruning (tests inject a
  //! ManualClock); outlives the Drive.
  const Clock* clock = &real_clock();
};

//! Thread-safe. Mutations of one user's Drive are serialized (one lock per
//! user); reads take no lock (each file is always complete on disk).
//! Revisions of saves are stored by a background writer right after the save
//! has replied (a crash in that moment loses the revision, never the file);
//! every call that reads or changes revisions waits for that writer first.
class Drive {
 public:
  Drive(std::unique_ptr<FileStore> files, std::unique_ptr<MetadataStore> meta,
        DriveOptions options);
  ~Drive();

  //! The embedded default: LocalFileStore under files_dir, SQLite database.
  static Result<std::shared_ptr<Drive>> open(DriveOptions options);

  //! Starts a background thread that, now and then every hour, removes
  //! interrupted saves and uploads older than a day and prunes revisions.
  void start_maintenance();

  // ------------------------------------------------------------ reading
  //! The entry at `path`. `as` forces the type as Jupyter's `type=` does:
  //! BadRequest if a directory is asked as a file or the other way round.
  Result<Entry> get(const auth::Identity& user, std::string_view path,
                    std::optional<EntryType> as = {});
  //! The directory's entries (hidden ones, symlinks and special files skipped), sorted by name.
  Result<std::vector<Entry>> list(const auth::Identity& user, std::string_view dir);
  //! A file's bytes; TooLarge beyond max_read_bytes.
  Result<std::string> read_file(const auth::Identity& user, std::string_view path);
  //! A notebook for serving (see parse_stored_notebook); `message` gets a
  //! validation problem, if any.
  Result<nlohmann::json> read_notebook(const auth::Identity& user, std::string_view path,
                                       std::string* message);
  //! An open file for streaming downloads.
  Result<OpenFile> open_file(const auth::Identity& user, std::string_view path);
  //! Hex SHA-256 of a file's bytes (streamed).
  Result<std::string> file_hash(const auth::Identity& user, std::string_view path);

  //! The stable identity of the item at `path` (see FileStore::item_id);
  //! with `assign`, one is given to an item that has none. Shares name an
  //! item by it, so a share ends when its file is deleted or replaced.
  Result<std::string> item_id(const auth::Identity& user, std::string_view path, bool assign);
  //! Where the item with this id is now (see FileStore::find_item): it was
  //! moved behind the server's back (inside a runtime). NotFound: gone.
  Result<std::string> find_item(const auth::Identity& user, const std::string& id);
  static constexpr std::size_t kMaxSearchedEntries = 100000;

  struct Storage {
    std::uint64_t used = 0;   //!< bytes (allocated blocks) of the Drive and caches
    std::uint64_t quota = 0;  //!< 0: unlimited
  };
  //! The user's storage use; recounted at most every few seconds (a walk of
  //! at most kMaxCountedEntries entries), or read from the filesystem in
  //! O(1) when the user's Drive is a volume of its own.
  Result<Storage> storage(const auth::Identity& user);
  static constexpr std::size_t kMaxCountedEntries = 200000;

  // ------------------------------------------------------------ writing
  struct Saved {
    Entry entry;
    bool created = false;  //!< nothing was at the path before
  };
  //! Validates, normalizes (see notebook.hpp) and atomically saves a
  //! notebook; keeps a revision. BadRequest naming the problem if invalid.
  Result<Saved> save_notebook(const auth::Identity& user, std::string_view path, nlohmann::json nb);
  //! Atomically saves a file (a revision is kept for ".ipynb" paths).
  Result<Saved> save_file(const auth::Identity& user, std::string_view path,
                          std::string_view bytes);
  //! Creates a directory (nothing happens if it exists).
  Result<Saved> save_directory(const auth::Identity& user, std::string_view path);

  struct Chunk {
    Entry entry;  //!< the committed file, or the upload in progress
    bool created = false;
    bool committed = false;
  };
  //! One chunk of a chunked upload (1, 2, ..., -1 for the last); see FileStore::write_chunk.
  Result<Chunk> save_chunk(const auth::Identity& user, std::string_view path, int chunk,
                           std::string_view bytes);

  //! A new "Untitled.ipynb" / "untitled<ext>" / "Untitled Folder" (numbered
  //! when taken) in directory `dir`. `type` nullopt: notebook if ext is
  //! ".ipynb", else file.
  Result<Entry> new_untitled(const auth::Identity& user, std::string_view dir,
                             std::optional<EntryType> type, std::string_view ext);
  //! Copies file `from` into directory `to` (named "name-Copy1.ext" etc.
  //! when needed) or, if `to` is not a directory, to the new path `to`.
  //! Directories cannot be copied. Notebooks are validated on the way.
  Result<Entry> copy(const auth::Identity& user, std::string_view from, std::string_view to);
  //! Renames or moves; Conflict if `to` exists. Revisions follow.
  Result<Entry> rename(const auth::Identity& user, std::string_view from, std::string_view to);
  //! Deletes a file or a whole directory, and their revisions.
  Status remove(const auth::Identity& user, std::string_view path);

  // ------------------------------------------------------------ revisions
  //! Revisions of `path`, oldest first (also after the file was changed
  //! outside the Drive).
  Result<std::vector<RevisionInfo>> revisions(const auth::Identity& user, std::string_view path);
  //! Keeps the current content of file `path` as a revision (a checkpoint).
  Result<RevisionInfo> create_checkpoint(const auth::Identity& user, std::string_view path);
  //! Puts revision `id` back in place (atomically). The content it replaces
  //! is kept as a revision first, so a restore can be undone.
  Status restore_revision(const auth::Identity& user, std::string_view path, std::int64_t id);
  Status delete_revision(const auth::Identity& user, std::string_view path, std::int64_t id);
  Result<RevisionInfo> revision(const auth::Identity& user, std::string_view path, std::int64_t id);
  Result<std::string> revision_bytes(const auth::Identity& user, std::string_view path,
                                     std::int64_t id);
  //! Applies the revision policy to every file; returns how many were dropped.
  Result<std::size_t> prune_all();

  //! Runs `work` holding `user`'s Drive lock: no write of the Drive to that
  //! user's files runs meanwhile (moving the Drive onto a volume).
  Status exclusive(const std::string& user, const std::function<Status()>& work);

  const DriveOptions& options() const { return options_; }

 private:
  struct Target {
    std::string user;
    DrivePath path;
    std::string author;  //!< who acts (differs from `user` through a share)
  };
  //! Checks user and path; hidden paths are NotFound (`for_write` false) or
  //! BadRequest (`for_write` true).
  Result<Target> resolve(const auth::Identity& user, std::string_view path, bool for_write);
  Mutex& user_lock(const std::string& user);
  Result<Entry> entry_for(const std::string& user, const DrivePath& path,
                          std::optional<EntryType> as);
  Result<bool> exists(const std::string& user, const DrivePath& path);
  Result<Saved> write_file_locked(const std::string& user, const std::string& author,
                                  const DrivePath& path, std::string_view bytes);
  //! Queues a revision for the revision writer (or stores it at once when
  //! too much is queued). Revisions of one Drive are stored in queue order.
  void keep_revision(const std::string& user, const std::string& author, const DrivePath& path,
                     std::string bytes, RevisionKind kind);
  //! Stores a revision now and applies the policy to its file.
  void store_revision(const std::string& user, const std::string& author, const std::string& path,
                      std::string_view bytes, RevisionKind kind, TimePoint at);
  //! Returns once every queued revision is stored.
  void flush_revisions();
  void revision_writer_loop();
  Result<std::string> unique_name(const std::string& user, const DrivePath& dir,
                                  std::string_view filename, std::string_view insert);
  TimePoint now() const;
  void maintenance_pass();
  //! Bytes in use by `user` (see storage()).
  std::uint64_t used_bytes(const std::string& user);
  //! InsufficientStorage when writing `incoming` bytes to `path` (replacing
  //! what is there) would pass the quota. Call with the user's lock held.
  Status within_quota(const std::string& user, const DrivePath& path, std::uint64_t incoming);
  Error quota_error(std::uint64_t used, std::uint64_t incoming) const;
  //! After a write of `bytes` by the server: the cached count grows.
  void count_written(const std::string& user, std::int64_t bytes);

  std::unique_ptr<FileStore> files_;
  std::unique_ptr<MetadataStore> meta_;
  DriveOptions options_;

  Mutex locks_mu_;
  std::map<std::string, std::unique_ptr<Mutex>> locks_ GUARDED_BY(locks_mu_);

  struct PendingRevision {
    std::string user, author, path, bytes;
    RevisionKind kind;
    TimePoint at;
  };
  Mutex rev_mu_;
  CondVar rev_cv_;
  std::deque<PendingRevision> rev_queue_ GUARDED_BY(rev_mu_);
  std::size_t rev_queued_bytes_ GUARDED_BY(rev_mu_) = 0;
  bool rev_busy_ GUARDED_BY(rev_mu_) = false;
  bool rev_stopping_ GUARDED_BY(rev_mu_) = false;
  std::thread rev_writer_;

  struct UsageCount {
    std::uint64_t bytes = 0;
    std::chrono::steady_clock::time_point at;
  };
  Mutex usage_mu_;
  std::map<std::string, UsageCount> usage_ GUARDED_BY(usage_mu_);

  std::unique_ptr<Periodic> maint_;  // hourly maintenance_pass(); set by start_maintenance()
};

}  // namespace skylab::drive
