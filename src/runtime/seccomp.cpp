#include "runtime/seccomp.hpp"

#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace skylab::runtime {

namespace {

// Namespace flags refused for unshare(2) and clone(2). CLONE_NEWTIME
// (0x80) lies inside clone(2)'s exit-signal byte, so only unshare checks it.
constexpr std::uint64_t kNsFlags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
                                   CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP;
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
// personality(2) flags Docker refuses: they weaken ASLR or executable-memory checks.
constexpr std::uint64_t kUnsafePersonality =
    ADDR_NO_RANDOMIZE | READ_IMPLIES_EXEC | ADDR_COMPAT_LAYOUT | MMAP_PAGE_ZERO | ADDR_LIMIT_3GB |
    SHORT_INODE | WHOLE_SECONDS | STICKY_TIMEOUTS | ADDR_LIMIT_32BIT;

}  // namespace

const std::vector<SeccompRule>& default_seccomp_rules() {
  static const std::vector<SeccompRule> rules = [] {
    std::vector<SeccompRule> r;
    // clone3 passes its flags in memory a filter cannot read: ENOSYS makes
    // glibc fall back to clone(2), whose flags are checked below.
    r.push_back({"clone3", ENOSYS});
    r.push_back({"clone", EPERM, kNsFlags});
    r.push_back({"unshare", EPERM, kNsFlags | CLONE_NEWTIME});
    r.push_back({"personality", EPERM, kUnsafePersonality});
    for (const char* s :
         {// namespaces and mounts
          "setns", "mount", "umount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
          "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
          // kernel attack surface that notebooks do not need
          "bpf", "perf_event_open", "io_uring_setup", "io_uring_enter", "io_uring_register",
          "userfaultfd", "keyctl", "add_key", "request_key", "open_by_handle_at",
          "name_to_handle_at", "lookup_dcookie", "fanotify_init", "kcmp",
          // the machine's administration
          "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
          "create_module", "get_kernel_syms", "query_module", "swapon", "swapoff", "reboot", "acct",
          "quotactl", "quotactl_fd", "nfsservctl", "syslog", "vhangup", "iopl", "ioperm", "uselib",
          "ustat", "sysfs", "_sysctl", "settimeofday", "clock_settime", "clock_adjtime", "stime",
          "vm86", "vm86old"}) {
      r.push_back({s, EPERM});
    }
    return r;
  }();
  return rules;
}

Result<int> default_seccomp_bpf_fd() {
  scmp_filter_ctx ctx = ::seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) return Error::internal("seccomp: cannot create a filter");
  struct Guard {
    scmp_filter_ctx c;
    ~Guard() { ::seccomp_release(c); }
  } guard{ctx};
  // Other architectures' syscall numbers (int 0x80, x32) would slip past a
  // deny list: libseccomp kills them (bad-arch action) as only the native
  // architecture is in the filter.
  ::seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  for (const auto& rule : default_seccomp_rules()) {
    int nr = ::seccomp_syscall_resolve_name(rule.syscall);
    if (nr == __NR_SCMP_ERROR || nr < 0) continue;  // not on this architecture
    int rc = 0;
    if (rule.arg0_mask == 0) {
      rc = ::seccomp_rule_add(ctx, SCMP_ACT_ERRNO(rule.err), nr, 0);
    } else {
      // One rule per bit: "any of these bits set" is an OR of masked compares.
      for (int bit = 0; bit < 64 && rc == 0; ++bit) {
        std::uint64_t b = std::uint64_t{1} << bit;
        if (!(rule.arg0_mask & b)) continue;
        rc = ::seccomp_rule_add(ctx, SCMP_ACT_ERRNO(rule.err), nr, 1,
                                SCMP_A0(SCMP_CMP_MASKED_EQ, b, b));
      }
    }
    if (rc != 0)
      return Error::internal(std::string("seccomp: rule for ") + rule.syscall + ": " +
                             std::strerror(-rc));
  }
  int fd = ::memfd_create("skylab-seccomp", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return Error::internal(std::string("seccomp: memfd_create: ") + std::strerror(errno));
  int rc = ::seccomp_export_bpf(ctx, fd);
  if (rc != 0) {
    ::close(fd);
    return Error::internal(std::string("seccomp: export: ") + std::strerror(-rc));
  }
  ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
  ::lseek(fd, 0, SEEK_SET);
  return fd;
}

}  // namespace skylab::runtime
