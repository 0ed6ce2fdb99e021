// Jupyter sessions: which kernel belongs to which notebook (or console,
// file) path, per user. Kept in memory: kernels do not survive a server
// restart yet, and neither do their sessions.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

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
  //! Adds a session with a new id and returns it.
  SessionRecord create(SessionRecord r);
  std::optional<SessionRecord> get(const std::string& id) const;
  //! The owner's session for `path` (paths compared without leading/trailing '/').
  std::optional<SessionRecord> find_by_path(const std::string& owner, const std::string& path) const;
  std::vector<SessionRecord> list() const;
  //! Replaces the record with r.id; false if it is gone.
  bool update(const SessionRecord& r);
  bool remove(const std::string& id);
  //! A file or directory of `owner` moved: sessions on `from` or below it
  //! follow to `to`. Returns how many changed.
  std::size_t rename_path(const std::string& owner, const std::string& from, const std::string& to);

 private:
  mutable std::mutex mu_;
  std::map<std::string, SessionRecord> sessions_;  // GUARDED_BY(mu_)
};

}  // namespace skylab::api
