// Caps a kernel's own log (its stdout and stderr, kernel-<id>.log): the
// kernel writes to the file directly (O_APPEND), so it never blocks on us
// and keeps writing across a server restart; the server's I/O thread checks
// the size now and then and rotates: copies the head aside, then removes it
// from the log in place (or truncates it where the filesystem cannot).
#pragma once

#include <cstdint>
#include <string>

namespace skylab::kernel {

//! Default cap on one kernel log (the rotated copy holds as much again).
constexpr std::uint64_t kDefaultKernelLogCap = 8ull << 20;

//! If regular file `name` in directory `dirfd` is larger than `cap` bytes,
//! it is cut at its last whole block: the last `cap` bytes before the cut
//! become `name`.1 (atomically replacing an older one) and the part before
//! the cut is removed from `name` with FALLOC_FL_COLLAPSE_RANGE, which is
//! atomic with writers that opened it with O_APPEND: they lose nothing and
//! continue at its new end. Where the filesystem cannot collapse (tmpfs,
//! overlayfs, a log under one block) the rest is copied too and `name` is
//! truncated; what a writer adds between the last copy and the truncation
//! is lost there. Never follows a symlink and never opens anything but a
//! regular file. Returns true when it rotated. Blocking (file I/O, about
//! `cap` bytes copied).
bool rotate_log_if_over(int dirfd, const std::string& name, std::uint64_t cap);

}  // namespace skylab::kernel
