// Runtimes on the local machine: each kernel runs inside bubblewrap (own
// PID, mount, IPC, UTS and optionally network namespaces, read-only system,
// /content, the user's Drive at /content/drive, a persistent ~/.cache) under
// the user's own uid, in cgroups that limit memory, CPU and processes.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/mutex.hpp"
#include "kernel/launcher.hpp"
#include "runtime/config.hpp"
#include "runtime/launch.hpp"
#include "runtime/user_volume.hpp"

namespace skylab::runtime {

//! Which cgroup hierarchy the machine offers for our limits.
enum class CgroupMode { kNone, kV1, kV2 };

//! One kernel's cgroup(s): a directory per v1 controller, or one v2 directory.
class Cgroup {
 public:
  //! Detects the mode from /proc/self/cgroup and /sys/fs/cgroup.
  static CgroupMode detect();
  //! Creates (or reuses) the cgroup `name` below the server's own cgroup
  //! (v2 with `v2_parent` "/a/b": below /sys/fs/cgroup/a/b instead, see
  //! RuntimesSection::cgroup_parent) and applies the type's limits. Dirs are
  //! empty when mode is kNone.
  static Result<Cgroup> create(CgroupMode mode, const std::string& name, const RuntimeType& type,
                               const std::string& v2_parent = "");
  //! Re-opens an existing cgroup by name (no limits applied).
  static Cgroup open(CgroupMode mode, const std::string& name, const std::string& v2_parent = "");

  //! Directories a process must write its pid into (cgroup.procs).
  const std::vector<std::string>& dirs() const { return dirs_; }
  std::vector<pid_t> pids() const;
  //! SIGKILLs every process until none is left (bounded wait).
  void kill_all() const;
  //! True when the memory limit killed a process.
  bool oom_killed() const;
  std::uint64_t memory_current() const;
  //! The memory limit in bytes; 0 when none or unknown.
  std::uint64_t memory_limit() const;
  //! CPU time used by the cgroup's processes, seconds; <0 unknown.
  double cpu_seconds() const;
  void destroy() const;

 private:
  CgroupMode mode_ = CgroupMode::kNone;
  std::vector<std::string> dirs_;
  std::string memory_dir_, pids_dir_, cpuacct_dir_;
};

struct SandboxOptions {
  std::string data_dir;       //!< drive/<user>, cache/<user>, runtimes/<kernel>/content
  std::string skylab_binary;  //!< for `skylab sandbox-exec`
  std::string bwrap = "/usr/bin/bwrap";
  std::string python_dir;    //!< python/ helpers, read-only at /opt/skylab/python
  std::string datasets_dir;  //!< read-only at /datasets ("" or missing: none)
  Config config;
  uid_t uid_base = 200000;  //!< first uid handed to Skylab users (server runs as root)
  //! The sandbox dies with the process that launched it (`skylab run`);
  //! false for `skylab serve`, whose runtimes survive a server restart.
  bool die_with_parent = false;
  //! Start kernels of the default python3 kernelspec by forking the runtime
  //! template (runtime/template.hpp) when it is ready; false: always today's
  //! path. ([runtimes] template; `skylab run` keeps today's path.)
  bool template_on = false;
  std::string template_python = "/usr/bin/python3";
};

//! Where a sandbox sees its (read-only) runtime state directory.
inline constexpr const char* kSandboxStateDir = "/opt/skylab/state";

//! The bwrap command line for one kernel (pure; exposed for tests).
struct SandboxPlan {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string content_dir, drive_dir, cache_dir, conn_dir;
  std::string state_dir;                 //!< root-owned; read-only at kSandboxStateDir ("" none)
  std::vector<std::string> gpu_devices;  //!< /dev/nvidiaN nodes to expose
  bool network = true;   //!< false: bwrap --unshare-net (an isolated netns is made before bwrap)
  bool seccomp = false;  //!< bwrap --seccomp kSeccompFd (the outer sandbox-exec opens it)
  std::string
      dns_forward;  //!< non-empty: /etc/resolv.conf from kResolvConfFd ("nameserver <this>")
  std::map<std::string, std::string> env;
  //! The inner sandbox-exec holds (`--hold`, fd kHoldFd) instead of running
  //! the command: the supervisor forks a kernel from the template into the sandbox.
  bool hold = false;
  //! state_dir holds `passwd` and `group` (runtime_account_files), bound over
  //! /etc/passwd and /etc/group so that the runtime's uid has a name.
  bool account_files = false;
};
std::vector<std::string> bwrap_args(const SandboxOptions& o, const SandboxPlan& p,
                                    const std::vector<std::string>& command);
//! The user's folders a sandbox binds (host path, path inside): Drive and
//! caches; none when the plan has no user (started for anyone). Pure.
std::vector<std::pair<std::string, std::string>> user_binds(const SandboxPlan& p);

//! The uid and gid of such a runtime's holder (`nobody`).
inline constexpr uid_t kNobodyId = 65534;
//! The name of kernel `kernel_id`'s cgroup (Cgroup::create, Cgroup::open). Pure.
std::string cgroup_name(const std::string& kernel_id);
//! Whether `owner` can own a runtime's folders (a username; not kAnyone). Pure.
bool valid_owner(const std::string& owner);
//! The environment a runtime's kernel gets (bubblewrap's --setenv, a claim's
//! "env"): sandbox_base_env plus the launch's SKYLAB_ variables. Pure.
std::map<std::string, std::string> runtime_env(const kernel::LaunchSpec& spec,
                                               const std::string& type_name);

//! A runtime started for anyone waits for its claim on two FIFOs in its state
//! folder (root's, 0600; read-only in the sandbox at kSandboxStateDir):
//! `claim` (server → kernel: one JSON line) and `claimed` (kernel → server:
//! "ok" or why not, one line). See python/skylab/template.py.
Status make_claim_fifos(const std::string& state_dir);
//! Writes `claim` (one line) to the kernel waiting in `state_dir` and waits
//! up to `timeout_s` for its answer: ok, or the kernel's reason (Unavailable).
Status send_claim(const std::string& state_dir, const std::string& claim, double timeout_s);

//! /etc/passwd and /etc/group as a runtime sees them: the host's, minus any
//! entry of the runtime's uid/gid, plus one for them named after the Skylab
//! user (`skylab-<user>` when the host already has that name), home /root.
//! Pure (tests). Without it `whoami`, `id -un`, git and ssh fail on the uid.
struct AccountFiles {
  std::string user_name, passwd, group;
};
AccountFiles runtime_account_files(std::string_view host_passwd, std::string_view host_group,
                                   const std::string& owner, uid_t uid, gid_t gid);

class RuntimeTemplates;

//! kernel::Launcher that runs kernels in bubblewrap. Thread-safe.
class SandboxLauncher : public kernel::Launcher {
 public:
  explicit SandboxLauncher(SandboxOptions options);
  ~SandboxLauncher() override;

  //! The runtime templates (null when template_on is false or they cannot run here).
  RuntimeTemplates* templates() { return templates_.get(); }
  //! Stops the templates (RuntimeTemplates::stop); later starts take today's path.
  void stop_templates();
  //! What a runtime of `type` started for anyone now would be forked from:
  //! its template's pid while that template is ready (they are never started
  //! otherwise); "" when none can be started now. (WarmPool::InstantSource.)
  std::string instant_source(const std::string& type) const;

  //! True when bubblewrap can create a sandbox on this machine.
  static bool available(const std::string& bwrap);

  bool use_ipc() const override { return true; }
  Status prepare(kernel::LaunchSpec& spec) override;
  //! Gives a runtime started for anyone (owner kAnyone, waiting in its
  //! sandbox) to spec.owner: their Drive and caches (volume, folders),
  //! /content, the home and the socket folder to their uid, their name in
  //! /etc/passwd, their Drive and caches bound into the sandbox, then the
  //! claim to the kernel, which drops to their uid and checks as them that
  //! it may run (template.py). Unavailable when it may not.
  Status assign(kernel::LaunchSpec& spec) override;
  bool interrupt_by_message() const override { return true; }
  void kill_all(const std::string& kernel_id, pid_t pid) override;
  std::string death_reason(const std::string& kernel_id) override;
  void cleanup(const std::string& kernel_id) override;
  std::vector<std::string> prepared_ids() override;
  kernel::Usage usage(const std::string& kernel_id) override;

  //! The argv (`skylab sandbox-enter ...`, see runtime/enter.hpp) that runs
  //! `command` inside the running sandbox of kernel `kernel_id`, as its
  //! owner's uid, with its limits, filter and environment. Unavailable
  //! without cgroups; NotFound when that kernel has no cgroup here. Quick.
  Result<std::vector<std::string>> enter_command(const std::string& kernel_id,
                                                 const std::string& owner, const std::string& type,
                                                 const std::vector<int>& gpus,
                                                 const std::vector<std::string>& command);

  //! The uid that `username`'s runtimes run as (allocated on first use).
  Result<uid_t> uid_for(const std::string& username);

  //! The users' Drive + cache volumes (quota inside runtimes).
  UserVolumes& volumes() { return *volumes_; }
  //! Runs `work` while the Drive writes nothing for `user`. Set by the
  //! server once its Drive is open; without it no volume is created.
  using DriveLock =
      std::function<Status(const std::string& user, const std::function<Status()>& work)>;
  void set_drive_lock(DriveLock lock);
  //! Whether `user` has a runtime running other than `kernel_id` (set by
  //! the server; without it, assumed so: existing data is not moved).
  using RuntimesRunning =
      std::function<bool(const std::string& user, const std::string& kernel_id)>;
  void set_runtimes_running(RuntimesRunning f);
  //! Puts `owner`'s Drive and caches on their volume (see UserVolumes::ensure).
  Status ensure_volume(const std::string& owner, const std::string& kernel_id, uid_t uid,
                       gid_t gid);

 private:
  //! Creates (fd-relative, with their owner) the directories a runtime
  //! needs and hands it its socket folder; runs migrate_once for the owner.
  Status prepare_dirs(const kernel::LaunchSpec& spec, const SandboxPlan& plan);
  //! Sets the plan's Drive and caches folders for `spec.owner` (plan.uid and
  //! plan.gid set) and puts them on the user's quota volume (logged when it
  //! cannot be).
  void plan_user_folders(const kernel::LaunchSpec& spec, SandboxPlan& plan);
  //! `owner`'s Drive and caches folders (with their owner), and migrate_once.
  Status prepare_user_dirs(int data_fd, const std::string& owner, uid_t uid, gid_t gid);
  //! The socket folder and connection file to the kernel's uid.
  static Status give_socket_folder(const std::string& conn_dir, uid_t uid, gid_t gid);
  //! The one-time ownership migration of `owner`'s Drive and caches.
  void migrate_once(int data_fd, const std::string& owner, int drive_fd, int cache_fd, uid_t uid,
                    gid_t gid);

  SandboxOptions opts_;
  CgroupMode cgroup_mode_;
  Mutex migrate_mutex_;  // serializes migrate_once
  Mutex mutex_;
  std::map<std::string, std::string> types_ GUARDED_BY(mutex_);  // kernel id -> runtime type
  std::map<std::string, bool> disk_warned_
      GUARDED_BY(mutex_);  // runtime type -> limit-not-enforced logged
  std::unique_ptr<UserVolumes> volumes_;
  std::unique_ptr<RuntimeTemplates> templates_;
  DriveLock drive_lock_ GUARDED_BY(mutex_);
  RuntimesRunning runtimes_running_ GUARDED_BY(mutex_);
};

//! The /content size limit: an ext4 image of `bytes` (sparse file `image`,
//! no journal, no reserved blocks) loop-mounted nosuid,nodev on `root`,
//! owned by uid:gid. Needs root, mkfs.ext4 and loop devices. Idempotent:
//! nothing happens when `root` is already a mount point.
Status mount_disk_image(const std::string& root, const std::string& image, std::uint64_t bytes,
                        uid_t uid, gid_t gid);
//! Unmounts `root` when it is a mount point (lazily when busy); removes `image`.
void unmount_disk_image(const std::string& root, const std::string& image);
//! Whether `path` is a mount point (its device differs from its parent's).
bool is_mount_point(const std::string& path);

//! `skylab sandbox-exec [--uid U --gid G] [--cgroup DIR]... [--net isolated]
//! [--dns-forward ADDR] [--seccomp default] [--deadline EPOCH] [--state FILE
//! --grace S] [--die-with-parent] [--args-count N] -- PROGRAM ARGS...`: joins
//! the cgroups; with --net, moves into a new network namespace with pasta NAT
//! (runtime/netns.hpp); with --seccomp / --dns-forward, opens the filter and
//! the resolv.conf on the fds bwrap_args names; drops to U:G and execs
//! PROGRAM. Used by SandboxLauncher.
//! With --deadline or --state it stays as a small root supervisor instead:
//! forks PROGRAM, forwards SIGINT/SIGTERM/SIGHUP to it, exits with its status,
//! and once the deadline (--deadline, or the lifetime_deadline in the
//! root-owned state FILE when readable, plus S seconds of grace) passes it
//! SIGKILLs every other process of its cgroups: a runtime ends at its
//! maximum lifetime even when no server is left to end it.
//! --args-count N: the first N of ARGS (bwrap's options) go to PROGRAM through
//! a memfd (`--args FD`), so the sandbox's /proc/1/cmdline shows no host paths.
//! --die-with-parent: PR_SET_PDEATHSIG(SIGKILL) (for `skylab run`).
//! --template SOCK (supervised only; PROGRAM is bwrap with an inner `--hold`):
//! once the holder in the sandbox has started, opens the sandbox (as
//! sandbox-enter does) and asks the template at SOCK to fork the kernel into
//! it; the holder then lives as long as that kernel. When the template
//! cannot, the holder runs the command itself (today's path).
//! --hold (the inner sandbox-exec, after dropping to U:G): talks to the
//! supervisor on kHoldFd (runtime/template.hpp) instead of exec'ing at once.
int sandbox_exec_main(const std::vector<std::string>& args);

}  // namespace skylab::runtime
