// Drive metadata: revisions today, shares later. MetadataStore is the
// interface; the SQLite implementation (WAL) is the embedded default, and a
// PostgreSQL one can be added behind the same interface for several servers.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace skylab::drive {

enum class RevisionKind {
  kSave,        //!< kept automatically when a notebook is saved
  kCheckpoint,  //!< asked for through the checkpoints API
};

//! One stored revision of a file: its bytes are kept content-addressed.
struct RevisionInfo {
  std::int64_t id = 0;  //!< unique, never reused
  std::string path;     //!< Drive path at the time of listing
  std::chrono::system_clock::time_point created;
  std::uint64_t size = 0;
  std::string sha256;  //!< hex digest of the bytes
  RevisionKind kind = RevisionKind::kSave;
  std::string author;  //!< user who saved it ("" for revisions from before authors were kept)
};

std::string_view revision_kind_name(RevisionKind k);

//! Thread-safe. Paths are DrivePath strings ("a/b.ipynb"), owners user names.
class MetadataStore {
 public:
  virtual ~MetadataStore() = default;

  //! Stores a revision of `path`. When the newest revision of that path has
  //! the same bytes, no row is added and that revision is returned.
  virtual Result<RevisionInfo> add_revision(const std::string& owner, const std::string& author,
                                            const std::string& path,
                                            std::chrono::system_clock::time_point at,
                                            RevisionKind kind, std::string_view bytes) = 0;
  //! Revisions of `path`, oldest first.
  virtual Result<std::vector<RevisionInfo>> list_revisions(const std::string& owner,
                                                           const std::string& path) = 0;
  //! One revision of `path`; NotFound if `id` is not a revision of it.
  virtual Result<RevisionInfo> get_revision(const std::string& owner, const std::string& path,
                                            std::int64_t id) = 0;
  //! The bytes of a revision of `path`.
  virtual Result<std::string> revision_bytes(const std::string& owner, const std::string& path,
                                             std::int64_t id) = 0;
  //! Deletes revisions (and blobs no revision uses any more).
  virtual Status delete_revisions(const std::string& owner,
                                  const std::vector<std::int64_t>& ids) = 0;
  //! Moves the revisions of `from` and of everything below it to `to`.
  virtual Status rename_path(const std::string& owner, const std::string& from,
                             const std::string& to) = 0;
  //! Deletes the revisions of `path` and of everything below it.
  virtual Status delete_path(const std::string& owner, const std::string& path) = 0;
  //! Every (owner, path) that has revisions.
  virtual Result<std::vector<std::pair<std::string, std::string>>> revised_paths() = 0;
};

//! Opens (creating it if needed) the SQLite database at `file` in WAL mode.
Result<std::unique_ptr<MetadataStore>> open_sqlite_metadata_store(const std::string& file);

}  // namespace skylab::drive
