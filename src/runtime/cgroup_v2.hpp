// cgroup v2 delegation under systemd: the runtimes' cgroups live below a
// cgroup that holds no process of its own (the kernel's "no internal
// processes" rule), kept by `skylab cgroup-hold` in skylab-runtimes.service.
#pragma once

#include <string>
#include <vector>

namespace skylab::runtime {

//! The controllers the v2 cgroup directory `dir` offers (cgroup.controllers).
std::vector<std::string> offered_controllers(const std::string& dir);

//! Enables, for the children of the v2 cgroup directory `dir`, every
//! controller `dir` offers (cgroup.controllers), one at a time so that one
//! refusal does not block the others. Returns the controllers now enabled
//! in dir/cgroup.subtree_control (empty when none, or when `dir` is no cgroup).
std::vector<std::string> enable_controllers(const std::string& dir);

//! `skylab cgroup-hold`: the main process of skylab-runtimes.service (cgroup
//! v2, Delegate=yes). Moves itself into the leaf `hold` of its own cgroup C,
//! enables every controller C offers for C's children (refused while C itself
//! holds a process), tells systemd READY=1 ($NOTIFY_SOCKET) and waits for
//! SIGTERM or SIGINT. The server, with `[runtimes] cgroup_parent` = C, makes
//! each runtime's cgroup below C with its memory, cpu and pids limits;
//! restarting the server leaves C and the runtimes alone. On cgroup v1 (or
//! with no cgroups) it only tells systemd it is ready and waits.
int cgroup_hold_main(const std::vector<std::string>& args);

}  // namespace skylab::runtime
