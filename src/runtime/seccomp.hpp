// The default syscall filter of runtimes (issue 12, row 7), modelled on
// Docker's default seccomp profile: the kernel interfaces that unprivileged
// notebook code has no business with (new namespaces, mounts, BPF, perf,
// io_uring, keyrings, module and kexec loading, ...) answer an error, all
// else is allowed. Foreign architectures (i386 `int 0x80`, x32) are killed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace skylab::runtime {

//! The fd number on which the outer `skylab sandbox-exec` hands the BPF
//! program to bubblewrap (`bwrap --seccomp 252`).
inline constexpr int kSeccompFd = 252;

//! One line of the rule table: `syscall` answers `-err` always (when
//! `arg0_mask` is 0), or when any bit of `arg0_mask` is set in its first
//! argument (clone/unshare namespace flags, personality flags).
struct SeccompRule {
  const char* syscall;
  int err;
  std::uint64_t arg0_mask = 0;
};

//! The default filter's rules. Syscalls unknown to this architecture's
//! libseccomp are skipped when the filter is built.
const std::vector<SeccompRule>& default_seccomp_rules();

//! Builds the default filter for the native architecture and writes its
//! BPF program into a new sealed memfd. Returns the fd (O_CLOEXEC; the
//! caller owns it) or an error naming the failing rule.
Result<int> default_seccomp_bpf_fd();

}  // namespace skylab::runtime
