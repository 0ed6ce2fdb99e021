// Jupyter sessions: which kernel belongs to which notebook (or console,
// file) path, per user. Runtimes outlive a server restart, so their
// sessions do too: with a file, the store writes itself there (atomically)
// after every change and reads it back at start; a browser that reopens a
// notebook after a restart finds its runtime again.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/mutex.hpp"

namespace skylab::api {

struct SessionRecord {
  std::string id;  //!< UUID
  std::string owner;
  std::string path;  //!< as the client sent it (a Drive path for notebooks)
  std::string name;
  std::string type;  //!< "notebook", "console", "file", ...
  std::string kernel_id;
};

//! Thread-safe.
class SessionStore {
 public:
  //! In memory only.
  SessionStore() = default;
  //! Loads `file` when it exists (unreadable entries are skipped, with a
  //! warning) and keeps it up to date.
  explicit SessionStore(std::string file);

  //! Adds a session with a new id and returns it.
  SessionRecord create(SessionRecord r);
  std::optional<SessionRecord> get(const std::string& id) const;
  //! The owner's session for `path` (paths compared without leading/trailing '/').
  std::optional<SessionRecord> find_by_path(const std::string& owner,
                                            const std::string& path) const;
  std::vector<SessionRecord> list() const;
  //! Replaces the record with r.id; false if it is gone.
  bool update(const SessionRecord& r);
  bool remove(const std::string& id);
  //! A file or directory of `owner` moved: sessions on `from` or below it
  //! follow to `to`. Returns how many changed.
  std::size_t rename_path(const std::string& owner, const std::string& from, const std::string& to);

 private:
  void save_locked() const REQUIRES(mu_);

  std::string file_;
  mutable Mutex mu_;
  std::map<std::string, SessionRecord> sessions_ GUARDED_BY(mu_);
};

}  // namespace skylab::api
