// One way to start a program: posix_spawn (vfork-like, so nothing runs in a
// child of a multithreaded process but the C library's own exec path: no
// allocation, no locks taken after fork). Everything the child needs (argv,
// environment, fd plan) is built in the parent before the call.
//
// Not for children that must do more than posix_spawn can before exec
// (setns, setuid, unshare): those fork themselves and keep to
// async-signal-safe calls (runtime/netns.cpp, runtime/sandbox.cpp).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/result.hpp"

namespace skylab::subprocess {

//! Where one of the child's standard streams goes.
enum class Stdio {
  kNull,     //!< /dev/null
  kInherit,  //!< this process's own stream
  kPipe,     //!< a pipe whose read end the parent gets (Child::out_fd/err_fd); stdout/stderr only
};

//! What to start and how. Plain data; spawn() copies nothing out of it after it returns.
struct Spec {
  std::vector<std::string> argv;  //!< non-empty; argv[0] is the program
  bool search_path = true;        //!< look argv[0] up on PATH (posix_spawnp) unless it has a '/'
  //! "KEY=VALUE" strings; nullopt: this process's environment (environ) as it is.
  std::optional<std::vector<std::string>> env;
  std::string cwd;  //!< the child's working directory; empty: the caller's
  Stdio in = Stdio::kNull;
  Stdio out = Stdio::kNull;
  Stdio err = Stdio::kNull;
  bool err_to_out = false;  //!< stderr is a copy of stdout (after `out` is set up)
  //! {fd in this process, fd in the child}: dup2'd after the standard streams,
  //! so they may replace them (a pty's slave as 0, 1 and 2).
  std::vector<std::pair<int, int>> fds;
  //! >= 0: every child fd from this one up is closed (after `fds`). Fds opened
  //! without O_CLOEXEC elsewhere in the process do not leak into the child.
  int close_from = -1;
  bool new_session = false;  //!< setsid() in the child
  bool reset_signals =
      false;  //!< the child starts with an empty signal mask, all dispositions default
  //! Signals whose disposition goes back to default in the child (e.g. ones this process ignores).
  std::vector<int> default_signals;
};

//! A started child. Move-only. Unless wait() saw it end or release() handed
//! it over, destruction kills (SIGKILL) and reaps it, so no zombie is left.
class Child {
 public:
  Child() = default;
  Child(Child&& o) noexcept;
  Child& operator=(Child&& o) noexcept;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();

  //! The child's pid; -1 once reaped or released.
  pid_t pid() const { return pid_; }
  //! The read ends of the stdout/stderr pipes (Stdio::kPipe), else -1. Owned
  //! by the Child (closed with it), O_CLOEXEC.
  int out_fd() const { return out_; }
  int err_fd() const { return err_; }
  //! Blocks until the child ends (EINTR retried); its raw wait status, or -1
  //! if there is no child to wait for.
  int wait();
  //! Without blocking: the raw wait status if the child has ended, else nullopt.
  std::optional<int> try_wait();
  //! Hands the pid to the caller, who reaps it; the Child forgets it.
  pid_t release();

 private:
  friend Result<Child> spawn(const Spec& spec);
  void close_pipes();
  pid_t pid_ = -1;
  int out_ = -1;
  int err_ = -1;
};

//! Starts spec.argv. Errors: a bad spec (bad_request), the program not
//! found (not_found), anything else posix_spawn refuses (unavailable; the
//! message names the program and the reason).
Result<Child> spawn(const Spec& spec);

//! What a finished run() saw.
struct Output {
  int status = -1;  //!< the raw wait status
  std::string out,
      err;  //!< what the child wrote, each cut at max_bytes (the rest is read and dropped)
  bool timed_out = false;  //!< the child was killed (SIGKILL) at the deadline
};

//! Runs spec to its end, reading its output: spec.out and spec.err are
//! forced to kPipe (unless err_to_out). Blocks up to `timeout` (then kills the
//! child and says timed_out). Errors: as spawn().
Result<Output> run(Spec spec, std::chrono::milliseconds timeout,
                   std::size_t max_bytes = std::size_t{8} << 20);

//! Runs argv (PATH searched, this environment, all output to /dev/null) and
//! waits: its exit code, 127 if it could not be found, -1 if it could not be
//! started or died of a signal. Blocking: never on the Asio thread.
int run_quiet(const std::vector<std::string>& argv);

//! An exit code for a raw wait status: the child's own, or 128 + the signal that ended it.
int exit_code(int status);

}  // namespace skylab::subprocess
