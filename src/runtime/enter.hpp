// A process inside a running runtime's sandbox (the terminal): `skylab
// sandbox-enter` joins the namespaces, cgroups, uid, seccomp filter and
// no_new_privs of a runtime that SandboxLauncher started, like nsenter.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "common/safe_fs.hpp"

namespace skylab::runtime {

//! The namespaces setns() joins, in the order it must join them (the mount
//! namespace, which needs the most privilege, last).
inline constexpr const char* kSandboxNamespaces[] = {"ipc", "uts", "net", "cgroup", "pid", "mnt"};

//! A running sandbox opened from outside: its init's namespaces (in
//! kSandboxNamespaces order) and its root directory (O_PATH), O_CLOEXEC.
struct SandboxHandle {
  std::vector<safe_fs::UniqueFd> ns;
  safe_fs::UniqueFd root;
};

//! Finds the sandbox in `cgroups` by the only trustworthy process there,
//! bubblewrap's init (see sandbox_enter_main), waits until it has started
//! its program (the mounts are done), checking every `poll_ms`, for at most
//! `wait_s` seconds, and opens its namespaces and root. Unavailable when
//! there is no such sandbox (in time); Internal when it cannot be opened.
//! Root only. Does not join anything.
Result<SandboxHandle> open_sandbox(const std::vector<std::string>& cgroups,
                                   const std::string& bwrap, double wait_s, int poll_ms);

//! Binds `binds` (host path, absolute path inside) into the running
//! sandbox: a recursive, nosuid, nodev copy of each host tree (open_tree)
//! attached in the sandbox's mount namespace (move_mount) by a child that
//! joined it. Targets must exist inside and are not followed when symlinks.
Status bind_into_sandbox(const SandboxHandle& sandbox,
                         const std::vector<std::pair<std::string, std::string>>& binds);

//! `skylab sandbox-enter --cgroup DIR... --uid U --gid G [--seccomp default]
//! [--setenv K V]... [--bwrap PATH] [--wait S] -- PROGRAM ARGS...` (internal; run as root by
//! the server with a pty slave on fds 0-2).
//!
//! Finds the runtime's sandbox by the only trustworthy process in its cgroups:
//! bubblewrap's init (pid 1 of the sandbox's pid namespace, root, in a pid
//! namespace other than ours, running PATH (/usr/bin/bwrap); runtimes cannot make root processes
//! nor new namespaces: seccomp, no_new_privs), waiting up to S seconds (default 10) for it. Joins
//! the cgroups, then the init's ipc, uts, net, cgroup, pid and mount namespaces and its root; forks
//! (the child is in the pid namespace); the child makes fd 0 its controlling terminal, drops to U:G
//! (no groups), sets PR_SET_PDEATHSIG, no_new_privs and the default seccomp filter, changes to
//! /content and execs PROGRAM with exactly the --setenv environment. PROGRAM is resolved inside the
//! sandbox, by the user's uid: nothing of the runtime's is ever executed as root. The parent waits
//! and exits with the child's status (125: the sandbox could not be entered).
int sandbox_enter_main(const std::vector<std::string>& args);

//! The environment every process of a runtime starts with: its kernel (the
//! sandbox plan adds to it) and what `sandbox-enter` runs (PATH, HOME, LANG,
//! TERM, PYTHONPATH, SKYLAB_*, CUDA_VISIBLE_DEVICES).
std::map<std::string, std::string> sandbox_base_env(const std::string& kernel_id,
                                                    const std::string& owner,
                                                    const std::string& type,
                                                    const std::vector<int>& gpus);

}  // namespace skylab::runtime
