// The seam between the kernel manager and where kernels run: a Launcher
// rewrites the command that starts a kernel (e.g. into a bubblewrap sandbox
// with cgroup limits) and cleans up after it. Without one, kernels run as
// plain child processes of the server.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace skylab::kernel {

//! What the layer that starts a kernel (runtime/) adds to its launch. The
//! kernel layer keeps it with the kernel (restarts, and the runtime record
//! across server restarts), adds `env` to the kernel's environment and hands
//! `devices` to the Launcher; it interprets neither.
struct LaunchSettings {
  //! Added to the kernel's environment (the kernelspec's env still wins).
  //! In values, {state_file} and {ack_file} name the kernel's state and
  //! acknowledgement files (see KernelManager::start).
  std::map<std::string, std::string> env;
  //! Device indices granted to the kernel (GPUs); the Launcher exposes them.
  std::vector<int> devices;
};

//! What the manager is about to run. prepare() may rewrite argv, env and cwd.
struct LaunchSpec {
  std::string kernel_id;
  std::string owner;         //!< username
  std::string runtime_type;  //!< "" for the default
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  std::string cwd;
  std::string connection_dir;  //!< holds the connection file and ipc sockets
  std::vector<int> devices;    //!< LaunchSettings::devices: device indices granted to it
  //! Root-owned directory holding the kernel's state file ({state_file}); a
  //! sandbox shows it read-only. "" when the kernel is not sandboxed.
  std::string state_dir;
  std::int64_t started = 0;  //!< first start of the runtime, Unix seconds (restarts keep it)
};

//! What one kernel uses now, as its launcher measures it. Zero limits: none.
struct Usage {
  bool known = false;              //!< false: the launcher cannot tell
  std::uint64_t memory_used = 0;   //!< bytes (cgroup memory, page cache included)
  std::uint64_t memory_limit = 0;  //!< bytes
  double cpu_seconds = -1;         //!< CPU time used since start; <0 unknown
  double cpu_limit = 0;            //!< CPUs
  std::uint64_t disk_used = 0;     //!< bytes under /content (and the runtime's home)
  std::uint64_t disk_limit = 0;    //!< bytes, when a size limit is enforced
};

//! Implementations must be thread-safe; calls for one kernel are serialized.
class Launcher {
 public:
  virtual ~Launcher() = default;
  //! True: kernels talk over ipc sockets in `connection_dir`, not TCP.
  virtual bool use_ipc() const = 0;
  //! Prepares resources and rewrites `spec` to start the kernel. Called on
  //! every (re)start of a kernel; must be idempotent for the same id.
  virtual Status prepare(LaunchSpec& spec) = 0;
  //! True: interrupt with `interrupt_request`, since SIGINT to the launched
  //! process group does not reach the kernel.
  virtual bool interrupt_by_message() const = 0;
  //! Kills every process that belongs to the kernel (`pid` is the launched
  //! process). Must not return before they are gone or unkillable.
  virtual void kill_all(const std::string& kernel_id, pid_t pid) = 0;
  //! Why the kernel's processes died, when known (e.g. a memory limit).
  virtual std::string death_reason(const std::string& kernel_id) { return {}; }
  //! Releases everything prepare() created. The kernel's processes are gone.
  //! Also called for leftovers of a previous server process (any id).
  virtual void cleanup(const std::string& kernel_id) = 0;
  //! Ids of kernels whose resources (directories, mounts, cgroups) exist,
  //! live or not; a restarted server cleans up those it did not adopt.
  virtual std::vector<std::string> prepared_ids() { return {}; }
  //! The kernel's current resource use. May block briefly (reads cgroup
  //! files, may walk /content); call off the I/O thread.
  virtual Usage usage(const std::string& kernel_id) { return {}; }
  //! Hands a running kernel that was started for anyone (StartOptions::
  //! for_anyone) to `spec.owner`: whatever of that user's it must have (data,
  //! uid, environment) before it runs anything of theirs. `spec` is as for
  //! prepare() with the new owner. An error leaves it to be shut down.
  virtual Status assign(LaunchSpec& spec) {
    return Error::unavailable("kernels of this launcher cannot change owner");
  }
};

}  // namespace skylab::kernel
