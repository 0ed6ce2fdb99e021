// One set of helpers for cgroup (and /proc) files: the sandbox's cgroups,
// `skylab cgroup-hold` and `skylab enter` read and write them through these.
// cgroup files are pseudo-files: a value is written in one write(2), and a
// read sees a snapshot.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <limits>
#include <string>
#include <vector>

namespace skylab::runtime {

//! The text of `path` (a cgroup or /proc file), at most `max` bytes; "" when
//! it cannot be opened. Never throws.
std::string read_text(const std::string& path,
                      std::size_t max = std::numeric_limits<std::size_t>::max());

//! Writes `value` into the existing file `path` with one write(2), as cgroup
//! files want ("+memory", a limit, a pid); false when it cannot be opened or
//! the kernel refuses the value (errno says why).
bool write_value(const std::string& path, const std::string& value);

//! This process's cgroup as /proc/self/cgroup names it ("/a/b"; "" for the
//! root or when there is none): the v1 hierarchy of `controller` ("memory",
//! "pids", ...), or the v2 one ("0::/a/b") when `controller` is "".
std::string own_cgroup(const std::string& controller);

//! The processes in the cgroup directory `dir` (its cgroup.procs); empty when
//! it cannot be read.
std::vector<pid_t> cgroup_pids(const std::string& dir);

}  // namespace skylab::runtime
