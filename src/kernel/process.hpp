// The process side of a kernel, without sockets or manager state: its
// command line and environment, spawning it, and noticing that it exited.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "kernel/kernelspec.hpp"

namespace skylab::kernel {

//! What a kernel's environment adds to the server's.
struct KernelEnvInput {
  std::map<std::string, std::string> launch_env;  //!< LaunchSettings::env (the starter's)
  std::string python_path;                        //!< prepended to PYTHONPATH when not empty
  std::map<std::string, std::string> spec_env;    //!< the kernelspec's env: applied last, wins
};

//! The one place a kernel's environment is made: `base` (NAME=VALUE
//! strings, null-terminated, e.g. environ; entries without '=' are skipped)
//! without the server's secrets (server_only_env), plus the starter's launch
//! environment (for runtimes: runtime::launch_settings), PYTHONPATH and the
//! spec's env.
std::map<std::string, std::string> kernel_environment(char* const* base, const KernelEnvInput& in);

//! Whether the environment variable `key` is the server's alone (a secret
//! such as SKYLAB_ADMIN_TOKEN): never handed to a kernel, a runtime or any
//! program started for one. The one place that says which.
bool server_only_env(const std::string& key);

//! `s` with every occurrence of each pattern in `values` (such as
//! "{connection_file}") replaced by its value, left to right; a value that
//! contains a pattern is not expanded again.
std::string substitute(std::string s,
                       const std::vector<std::pair<std::string, std::string>>& values);

//! The spec's argv with {connection_file} and {resource_dir} substituted.
std::vector<std::string> kernel_argv(const KernelSpec& spec, const std::string& connection_file);

//! Starts `argv` (argv[0] looked up in PATH) in a new session with default
//! signal handling, stdin from /dev/null, stdout and stderr appended to
//! `log_path` (created 0600, never through a symlink), descriptors above 2
//! closed, in `cwd` unless empty. `argv` must not be empty.
Result<pid_t> spawn_process(std::vector<std::string> argv,
                            const std::map<std::string, std::string>& env, const std::string& cwd,
                            const std::string& log_path);

//! Whether process `pid` has exited, reaping it when it is our child.
//! `adopted`: not our child (a previous server's), checked in /proc. `block`:
//! wait for it (after SIGKILL; at most about 2 s for an adopted one).
bool process_exited(pid_t pid, bool adopted, bool block, int& status);

//! Picks `n` distinct free TCP ports (on loopback when `ip` is 127.0.0.1,
//! else on any address). False when the system has none to give.
bool pick_ports(const std::string& ip, int* out, int n);

}  // namespace skylab::kernel
