// Instant runtimes (issue 17): a pre-imported kernel interpreter, the
// template (python/skylab/template.py), forked into each runtime's sandbox.
//
// bubblewrap still builds every sandbox (namespaces, mounts); only the
// expensive part, exec'ing Python and importing ipykernel, NumPy, pandas,
// Matplotlib and PyTorch, is replaced: inside the sandbox bubblewrap runs a
// holder (`skylab sandbox-exec --hold`), and the runtime's root supervisor
// (the outer `skylab sandbox-exec --template SOCK`, outside the sandbox)
// opens the sandbox like `skylab sandbox-enter` does and asks the template
// to fork a kernel into it. Whatever fails, the holder starts Python in the
// sandbox as before (the fallback). See docs/architecture.md, "Start path".
#pragma once

#include <sys/types.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/mutex.hpp"
#include "common/result.hpp"
#include "runtime/enter.hpp"

namespace skylab::runtime {

//! The fd on which the holder inside the sandbox and its supervisor talk
//! (a stream socket pair): holder → 'r' (started, privileges dropped);
//! supervisor → 'k' (a forked kernel runs: wait for EOF, then exit) or 'f'
//! (fall back: exec the Python command). EOF before either: exit.
inline constexpr int kHoldFd = 250;

//! What the template needs to start one kernel, read from the supervisor's
//! own bubblewrap command (so that both paths start the same kernel).
struct TemplateRequest {
  std::vector<std::string> cgroups;
  long uid = -1, gid = -1;
  bool seccomp = false;
  std::map<std::string, std::string> env;  //!< bwrap's --setenv pairs
  std::vector<std::string> argv;           //!< the kernel command after the inner `--`
  //! A runtime started for anyone (the instant pool): the kernel initialises
  //! as root in the sandbox and waits for its user's claim (template.py,
  //! "pre-started kernels"; SandboxLauncher::assign).
  bool for_anyone = false;
};

//! Parses a bwrap command made by bwrap_args() (options, then `--`,
//! /opt/skylab/bin/skylab sandbox-exec --uid U --gid G [--hold] -- ARGV).
//! Error when it has no such inner command. Pure.
Result<TemplateRequest> parse_bwrap_command(const std::vector<std::string>& command);

//! Whether `argv` is the default python3 kernelspec's command, which the
//! template `python` can serve: [python3|/usr/bin/python3|python, -m,
//! ipykernel_launcher, -f, FILE]. Pure.
bool template_can_serve(const std::vector<std::string>& argv, const std::string& python);

//! Connects to the template at `socket_path` (root's, checked by the
//! template with SO_PEERCRED), sends `req` with fds 0-2, the sandbox's
//! namespaces and root, and `seccomp_fd` (>=0 when req.seccomp), and waits
//! (at most `timeout_s`) for its answer. Returns a pidfd of the forked
//! kernel (the caller owns it), or the reason it did not start (then nothing
//! of the user's ran: fall back).
Result<int> fork_from_template(const std::string& socket_path, const TemplateRequest& req,
                               const SandboxHandle& sandbox, int seccomp_fd, double timeout_s);

//! The templates of one server: one per distinct preload list, each started
//! in the background, restarted (with backoff) when it dies and when the
//! Python packages change (mtime of /var/lib/dpkg/status and of the
//! dist-packages folders). Thread-safe.
class RuntimeTemplates {
 public:
  struct Options {
    std::string python = "/usr/bin/python3";
    std::string script;   //!< python/skylab/template.py
    std::string run_dir;  //!< root's 0700 folder for the sockets and logs
    //! Preload lists by runtime type name.
    std::map<std::string, std::vector<std::string>> preload;
    std::chrono::seconds check_every{10};  //!< package-change check period
  };
  explicit RuntimeTemplates(Options o);
  //! stop().
  ~RuntimeTemplates();
  //! Stops the templates and their threads (idempotent): SIGTERM, on which
  //! a template reaps the kernels that already ended and exits (those still
  //! running go on), SIGKILL after a second. No template is ready afterwards.
  void stop();
  //! Starts the background threads. Logs "runtime template: ready|failed".
  void start();
  //! The socket of the template for `type` when it is ready; "" when none
  //! is (starting, restarting, failed, unknown type).
  std::string socket_for(const std::string& type) const;
  //! The template's pid for `type` (0 when none runs). For tests and metrics.
  pid_t pid_for(const std::string& type) const;
  const std::string& python() const { return opts_.python; }

 private:
  struct Slot;
  void run(Slot* slot);
  Options opts_;
  std::map<std::string, std::string> type_key_;         // type -> preload key
  std::map<std::string, std::unique_ptr<Slot>> slots_;  // preload key -> slot
  std::atomic<bool> stop_{false};
  Mutex mutex_;  // for cv_ only: stop_ is atomic
  CondVar cv_;
};

}  // namespace skylab::runtime
