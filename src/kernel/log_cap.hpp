// Caps a kernel's own log (its stdout and stderr, kernel-<id>.log): the
// kernel writes to the file directly (O_APPEND), so it never blocks on us
// and keeps writing across a server restart; the server's I/O thread checks
// the size now and then and rotates by copy-and-truncate.
#pragma once

#include <cstdint>
#include <string>

namespace skylab::kernel {

//! Default cap on one kernel log (the rotated copy holds as much again).
constexpr std::uint64_t kDefaultKernelLogCap = 8ull << 20;

//! If regular file `name` in directory `dirfd` is larger than `cap` bytes:
//! its last `cap` bytes become `name`.1 (atomically replacing an older one)
//! and `name` is truncated to empty. Writers that opened it with O_APPEND
//! continue at its new end; what they write during the copy is lost. Never
//! follows a symlink and never opens anything but a regular file. Returns
//! true when it rotated. Blocking (file I/O, at most `cap` bytes copied).
bool rotate_log_if_over(int dirfd, const std::string& name, std::uint64_t cap);

}  // namespace skylab::kernel
