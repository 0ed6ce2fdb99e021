// Sharing grants: who may read or edit which of another user's Drive items
// (a notebook, a file or a folder), by name or by link. Stored in
// <data-dir>/skylab.db, table `auth_shares`; the Drive itself is unaware:
// the API checks a grant, then acts on the owner's Drive on their behalf.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.hpp"
#include "common/mutex.hpp"
#include "common/result.hpp"

struct sqlite3;

namespace skylab::auth {

enum class ShareRole { kViewer, kEditor };
std::string_view share_role_name(ShareRole r);
//! "viewer" or "editor"; nullopt otherwise.
std::optional<ShareRole> parse_share_role(std::string_view s);

struct Share {
  std::string id;     //!< random; for a link share the link's secret part
  std::string owner;  //!< user whose Drive holds the item
  std::string path;   //!< the item's Drive path ("proj/a.ipynb"), never ""
  //! The item's stable id (drive::Drive::item_id): the share is usable only
  //! while the item at `path` carries it. "" only for shares from before
  //! ids, until migrate_items binds or drops them.
  std::string item;
  std::optional<std::string> grantee;  //!< a user name; none: anyone signed in with the link
  ShareRole role = ShareRole::kViewer;
  std::int64_t created = 0;  //!< unix seconds

  bool is_link() const { return !grantee.has_value(); }
};

//! Thread-safe (one connection behind a mutex).
class ShareStore {
 public:
  //! `path`: the SQLite file (shared with AccountStore); `now`: unix seconds.
  static Result<std::shared_ptr<ShareStore>> open(const std::string& path,
                                                  const Clock& clock = real_clock());
  ~ShareStore();
  ShareStore(const ShareStore&) = delete;
  ShareStore& operator=(const ShareStore&) = delete;

  //! Shares `path` of `owner` with `grantee` (or by link when none; links
  //! are viewer-only). Sharing the same item with the same user again
  //! changes the role and keeps the id; a second link returns the first.
  //! `item` is the id of the item now at `path`; an earlier share of a
  //! different item at the same path (to the same grantee) is replaced.
  Result<Share> grant(std::string_view owner, std::string_view path, std::string_view item,
                      std::optional<std::string> grantee, ShareRole role);
  //! The share with this id, or NotFound.
  Result<Share> find(std::string_view id);
  //! Shares made by `owner` (of `path` only, when given), newest first.
  Result<std::vector<Share>> by_owner(std::string_view owner,
                                      std::optional<std::string_view> path = {});
  //! Shares made to `grantee` by name ("Shared with me"), newest first.
  Result<std::vector<Share>> with_user(std::string_view grantee);
  //! Revokes; NotFound unless `owner` made it.
  Status revoke(std::string_view owner, std::string_view id);
  //! After `owner` moved `from` to `to` through the server: shares of it
  //! and of anything below it follow.
  Status moved(std::string_view owner, std::string_view from, std::string_view to);
  //! After `owner` deleted `path` through the server: shares of it and of
  //! anything below it end.
  Status removed(std::string_view owner, std::string_view path);
  //! Migration from shares keyed by path: for every share without an item
  //! id, `resolve(owner, path)` gives the id of the item there now (the
  //! share is bound to it) or nullopt (nothing there: the share is
  //! dropped). Returns how many were dropped.
  Result<std::size_t> migrate_items(
      const std::function<std::optional<std::string>(const std::string&, const std::string&)>&
          resolve);
  //! At most this many shares per owner (grant fails with Conflict beyond).
  static constexpr std::size_t kMaxPerOwner = 1000;

 private:
  ShareStore() = default;
  std::int64_t now() const;

  const Clock* clock_ = &real_clock();
  Mutex mutex_;
  sqlite3* db_ GUARDED_BY(mutex_) = nullptr;
};

//! The access `who` has to a share: nullopt when none (the share is then
//! "not found" for them). The owner has editor access to their own shares.
std::optional<ShareRole> share_access(const Share& share, std::string_view who);

}  // namespace skylab::auth
