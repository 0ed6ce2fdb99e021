// The seam between the kernel manager and where kernels run: a Launcher
// rewrites the command that starts a kernel (e.g. into a bubblewrap sandbox
// with cgroup limits) and cleans up after it. Without one, kernels run as
// plain child processes of the server.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace skylab::kernel {

//! What the manager is about to run. prepare() may rewrite argv, env and cwd.
struct LaunchSpec {
  std::string kernel_id;
  std::string owner;         //!< username
  std::string runtime_type;  //!< "" for the default
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  std::string cwd;
  std::string connection_dir;  //!< holds the connection file and ipc sockets
  std::vector<int> gpus;       //!< GPU indices granted to this kernel
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
  virtual void cleanup(const std::string& kernel_id) = 0;
};

}  // namespace skylab::kernel
