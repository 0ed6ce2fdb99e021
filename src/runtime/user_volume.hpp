// Per-user volumes: the quota on a user's Drive and caches, enforced for
// writes from inside runtimes too. Each user's Drive (<data>/drive/<user>)
// and caches (<data>/cache/<user>) live on one ext4 image of the quota's
// size (<data>/volumes/<user>.img, sparse, loop-mounted nosuid,nodev at
// <data>/volumes/<user>, whose drive/ and cache/ folders are bind-mounted
// at those two paths), so a runtime's writes meet ENOSPC at the quota and
// the server reads the use with statvfs in O(1).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <set>
#include <string>

#include "common/mutex.hpp"
#include "common/result.hpp"

namespace skylab::runtime {

//! Thread-safe; every call blocks (mkfs, mount, copies): never on the Asio thread.
class UserVolumes {
 public:
  //! `quota_bytes` 0: no volumes (ensure() does nothing).
  UserVolumes(std::string data_dir, std::uint64_t quota_bytes);

  //! Makes sure `user`'s Drive and caches are on their volume (owned by
  //! uid:gid), creating and mounting it on first use; idempotent (a mounted
  //! volume, also one left by an earlier server, is reused). Data already
  //! there is copied in once (fd-relative, symbolic links copied as links,
  //! never followed), but only when `runtimes_running` is false: a running
  //! runtime keeps the old folders, and what it writes must not be lost
  //! (Unavailable; a later start moves it). Unavailable also when not root,
  //! mkfs.ext4 or loop devices are missing, or the data exceeds the quota
  //! (logged once per user; the quota is then the server's only).
  Status ensure(const std::string& user, uid_t uid, gid_t gid, bool runtimes_running);

  //! Unmounts the volumes (under <data>/volumes) of users `busy` says have
  //! no runtime left (a clean stop); a busy mount is left mounted (and
  //! reused by the next server), never detached: the image must never be
  //! mounted twice.
  void release(const std::function<bool(const std::string& user)>& busy);

 private:
  Status mount_volume(const std::string& user, uid_t uid, gid_t gid, bool runtimes_running)
      REQUIRES(mutex_);

  std::string data_dir_;
  std::uint64_t quota_;
  Mutex mutex_;
  std::set<std::string> ready_ GUARDED_BY(mutex_);
  std::set<std::string> mounted_ GUARDED_BY(mutex_);  // mounted by this process
  std::set<std::string> warned_ GUARDED_BY(mutex_);
};

}  // namespace skylab::runtime
