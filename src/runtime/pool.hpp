// The warm pool: spare runtimes, started ahead of time, so that "Connect"
// is answered by a kernel that is already running.
//
// A runtime belongs to one user from its first instruction: bubblewrap
// mounts that user's Drive and caches and drops to that user's uid when the
// sandbox starts, and neither can change later. So spares are kept per user
// (and per runtime type and kernelspec), for users who started a runtime of
// that kind recently; a spare is never handed to anyone else. GPU types get
// no spares (a spare would hold GPUs others wait for).
//
// The instant pool ([runtimes] instant = N) is the exception that proves it:
// N runtimes per local CPU type started for anyone (owner kAnyone, a kernel
// forked from the template and initialised in a sandbox without any user's
// data; SandboxLauncher::prepare). A user without a spare of their own gets
// one of them: KernelService::claim hands it over (Launcher::assign puts the
// user's Drive, caches and uid in before anything of theirs runs).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "common/clock.hpp"
#include "common/mutex.hpp"
#include "common/periodic.hpp"
#include "kernel/manager.hpp"
#include "runtime/config.hpp"

namespace skylab::runtime {

class WarmPool {
 public:
  //! `user_enabled(name)`: false for users whose spares must go (disabled).
  //! `clock` (outlives the pool) times the ticks and the keys' last use.
  WarmPool(std::shared_ptr<kernel::KernelService> kernels, Config config,
           std::function<bool(const std::string& user)> user_enabled = {},
           const skylab::Clock& clock = real_clock());
  //! Stops the thread and shuts every spare down.
  ~WarmPool();

  //! Spares kept per (user, type, kernelspec); 0 = no pool.
  int size() const { return size_; }
  //! Runtimes kept started for anyone per local CPU type ([runtimes] instant).
  int instant() const { return instant_; }
  //! What kernels of `type` started for anyone now would be forked from
  //! (the identity of its template); "" when none can be started now.
  //! Waiting runtimes made from another are replaced (a template restarted
  //! for new packages). Set before start(); without it, none are started.
  using InstantSource = std::function<std::string(const std::string& type)>;
  void set_instant_source(InstantSource source);

  //! Claims a spare of `owner` for `type` ("" = default) and `spec`, ready
  //! ones first, else a ready one started for anyone (handed to `owner`);
  //! nullopt when there is none (the caller starts a kernel).
  //! Either way records the use, so the pool (re)fills for this key in the
  //! background: the pool's next tick runs at once. Thread-safe.
  std::optional<kernel::KernelModel> take(const std::string& owner, const std::string& type,
                                          const std::string& spec);
  //! Spares of `owner` ready for `type` now.
  int ready(const std::string& owner, const std::string& type) const;
  //! Shuts down `owner`'s spares and forgets their keys (account disabled).
  void release_user(const std::string& owner);

  //! Starts ticking (every 500 ms, and early after a take()); no-op without spares.
  void start();
  //! Stops refilling and shuts every spare down (bounded wait).
  void stop();
  //! One pass: drops dead spares and those of users who are gone or have
  //! not started a runtime for the type's idle timeout; starts at most one
  //! new spare where a key is short (tests may call it).
  void tick();
  //! Ticks the started worker has finished (tests; call after start()).
  std::uint64_t worker_ticks() const { return worker_ ? worker_->runs() : 0; }

 private:
  using Key = std::tuple<std::string, std::string, std::string>;  // owner, type, spec
  struct Entry {
    std::vector<std::string> spares;  // kernel ids, oldest first
    skylab::Clock::SteadyPoint last_used;
    std::map<std::string, std::string> source;  // kernel id -> InstantSource (anyone's)
  };
  bool poolable(const std::string& type) const;
  bool instant_type(const std::string& type) const;  // type: a full name
  std::optional<kernel::KernelModel> take_own(const std::string& owner, const std::string& type,
                                              const std::string& spec);
  std::optional<kernel::KernelModel> take_instant(const std::string& owner, const Key& key);
  std::map<std::string, std::string> instant_sources() const;  // type -> source, instant types
  void shutdown_ids(const std::vector<std::string>& ids);

  std::shared_ptr<kernel::KernelService> kernels_;
  Config config_;
  std::function<bool(const std::string&)> user_enabled_;
  int size_;
  int instant_;
  InstantSource instant_source_;  // set before start()
  const skylab::Clock& clock_;

  mutable Mutex mutex_;
  std::map<Key, Entry> entries_ GUARDED_BY(mutex_);
  std::map<std::string, skylab::Clock::SteadyPoint> instant_retry_
      GUARDED_BY(mutex_);  // type -> no start for anyone before
  bool stopping_ GUARDED_BY(mutex_) = false;
  bool stopped_ GUARDED_BY(mutex_) = false;  // stop() has run
  std::unique_ptr<Periodic> worker_;         // calls tick(); set by start(), kept until destruction
};

}  // namespace skylab::runtime
