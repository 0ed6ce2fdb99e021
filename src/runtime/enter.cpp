#include "runtime/enter.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <thread>

#include "common/safe_fs.hpp"
#include "runtime/cgroup_fs.hpp"
#include "runtime/launch.hpp"
#include "runtime/sandbox.hpp"
#include "runtime/seccomp.hpp"

namespace skylab::runtime {

namespace {

std::string ns_link(const std::string& pid, const char* ns) {
  char buf[128];
  ssize_t n = ::readlink(("/proc/" + pid + "/ns/" + ns).c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
}

// The status line `key:` of /proc/<pid>/status, its fields.
std::vector<std::string> status_fields(const std::string& status, const std::string& key) {
  std::istringstream in(status);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) != 0) continue;
    std::istringstream f(line.substr(key.size() + 1));
    std::vector<std::string> out;
    std::string w;
    while (f >> w) out.push_back(w);
    return out;
  }
  return {};
}

// bubblewrap's init in `cgroups`: root (all four uids), pid 1 of a pid
// namespace that is not ours, running `init_exe` (pasta, also root and pid 1
// of a namespace of its own, is not it). "" when there is none (yet).
std::string find_init(const std::vector<std::string>& cgroups, const struct stat& init_exe) {
  std::string own_pidns = ns_link("self", "pid");
  for (auto& d : cgroups) {
    std::istringstream procs(read_text(d + "/cgroup.procs", 1 << 20));
    std::string pid;
    while (procs >> pid) {
      std::string st = read_text("/proc/" + pid + "/status", 65536);
      auto uids = status_fields(st, "Uid");
      auto nspid = status_fields(st, "NSpid");
      if (uids.size() != 4 || nspid.size() < 2 || nspid.back() != "1") continue;
      bool root = true;
      for (auto& u : uids) root = root && u == "0";
      if (!root) continue;
      std::string pidns = ns_link(pid, "pid");
      if (pidns.empty() || pidns == own_pidns) continue;
      struct stat exe {};
      if (::stat(("/proc/" + pid + "/exe").c_str(), &exe) != 0 || exe.st_dev != init_exe.st_dev ||
          exe.st_ino != init_exe.st_ino)
        continue;
      return pid;
    }
  }
  return "";
}

// Whether bubblewrap's init `pid` has finished building the sandbox: its
// mounts and root are set up before it starts the runtime's program, so a
// process of its pid namespace that runs something other than bubblewrap
// means the root seen through /proc/PID/root is the runtime's, not a
// half-built one.
bool sandbox_ready(const std::vector<std::string>& cgroups, const std::string& pid,
                   const struct stat& init_exe) {
  std::string pidns = ns_link(pid, "pid");
  for (auto& d : cgroups) {
    std::istringstream procs(read_text(d + "/cgroup.procs", 1 << 20));
    std::string p;
    while (procs >> p) {
      if (p == pid || ns_link(p, "pid") != pidns) continue;
      struct stat exe {};
      if (::stat(("/proc/" + p + "/exe").c_str(), &exe) == 0 &&
          (exe.st_dev != init_exe.st_dev || exe.st_ino != init_exe.st_ino))
        return true;
    }
  }
  return false;
}

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "skylab sandbox-enter: %s: %s\r\n", what, std::strerror(errno));
  ::_exit(125);
}

}  // namespace

std::map<std::string, std::string> sandbox_base_env(const std::string& kernel_id,
                                                    const std::string& owner,
                                                    const std::string& type,
                                                    const std::vector<int>& gpus) {
  return {{"PATH", "/root/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
          {"HOME", "/root"},
          {"LANG", "C.UTF-8"},
          {"TERM", "xterm-256color"},
          {"PYTHONPATH", "/opt/skylab/python"},
          {"PYTHONUSERBASE", "/root/.local"},
          {"PIP_BREAK_SYSTEM_PACKAGES", "1"},
          {"MPLCONFIGDIR", "/root/.cache/matplotlib"},
          {"SKYLAB_KERNEL_ID", kernel_id},
          {"SKYLAB_RUNTIME_TYPE", type},
          {"SKYLAB_USER", owner},
          {"CUDA_VISIBLE_DEVICES", visible_devices(gpus)}};
}

Result<std::vector<std::string>> SandboxLauncher::enter_command(
    const std::string& kernel_id, const std::string& owner, const std::string& type,
    const std::vector<int>& gpus, const std::vector<std::string>& command) {
  if (cgroup_mode_ == CgroupMode::kNone)
    return Error::unavailable("terminals need cgroups on this machine");
  auto cg = Cgroup::open(cgroup_mode_, cgroup_name(kernel_id), opts_.config.runtimes.cgroup_parent);
  if (cg.dirs().empty()) return Error::not_found("this runtime has no sandbox on this machine");
  auto uid = uid_for(owner);
  if (!uid.ok()) return uid.error();
  std::string type_name = opts_.config.type_name(type);
  auto t = opts_.config.types.find(type_name);
  std::vector<std::string> argv = {opts_.skylab_binary, "sandbox-enter"};
  for (auto& d : cg.dirs()) argv.insert(argv.end(), {"--cgroup", d});
  argv.insert(argv.end(), {"--bwrap", opts_.bwrap});
  argv.insert(argv.end(),
              {"--uid", std::to_string(uid.value()), "--gid", std::to_string(uid.value())});
  if (t != opts_.config.types.end() && t->second.seccomp == SeccompMode::kDefault)
    argv.insert(argv.end(), {"--seccomp", "default"});
  for (auto& [k, v] : sandbox_base_env(kernel_id, owner, type_name, gpus))
    argv.insert(argv.end(), {"--setenv", k, v});
  argv.emplace_back("--");
  argv.insert(argv.end(), command.begin(), command.end());
  return argv;
}

Result<SandboxHandle> open_sandbox(const std::vector<std::string>& cgroups,
                                   const std::string& bwrap, double wait_s, int poll_ms) {
  struct stat init_exe {};
  if (::stat(bwrap.c_str(), &init_exe) != 0)
    return Error::internal("cannot find bubblewrap: " + std::string(std::strerror(errno)));
  std::string pid;
  auto until = std::chrono::steady_clock::now() +
               std::chrono::milliseconds(static_cast<long>(wait_s * 1000));
  for (;;) {
    pid = find_init(cgroups, init_exe);
    if (!pid.empty() && sandbox_ready(cgroups, pid, init_exe)) break;
    if (std::chrono::steady_clock::now() >= until) {
      pid.clear();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
  }
  if (pid.empty()) return Error::unavailable("the runtime's sandbox is not running");
  SandboxHandle h;
  for (const char* k : kSandboxNamespaces) {
    safe_fs::UniqueFd fd(::open(("/proc/" + pid + "/ns/" + k).c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return Error::internal("cannot open the runtime's namespaces");
    h.ns.push_back(std::move(fd));
  }
  h.root = safe_fs::UniqueFd(
      ::open(("/proc/" + pid + "/root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (h.root.get() < 0) return Error::internal("cannot open the runtime's root");
  // The pid could have been reused between finding and opening: it must still be that init.
  if (find_init(cgroups, init_exe) != pid)
    return Error::unavailable("the runtime's sandbox went away");
  return h;
}

int sandbox_enter_main(const std::vector<std::string>& args) {
  // Only the terminal (fds 0-2) goes into the sandbox, whatever the caller left open.
  ::syscall(SYS_close_range, 3U, ~0U, 0U);
  std::vector<std::string> cgroups, command, env;
  std::string bwrap = "/usr/bin/bwrap";
  long uid = -1, gid = -1;
  double wait_s = 10;
  bool seccomp = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      command.assign(args.begin() + static_cast<long>(i) + 1, args.end());
      break;
    }
    if (a == "--setenv" && i + 2 < args.size()) {
      env.push_back(args[i + 1] + "=" + args[i + 2]);
      i += 2;
      continue;
    }
    if (i + 1 >= args.size()) break;
    if (a == "--cgroup")
      cgroups.push_back(args[++i]);
    else if (a == "--uid")
      uid = std::strtol(args[++i].c_str(), nullptr, 10);
    else if (a == "--gid")
      gid = std::strtol(args[++i].c_str(), nullptr, 10);
    else if (a == "--bwrap")
      bwrap = args[++i];
    else if (a == "--wait")
      wait_s = std::strtod(args[++i].c_str(), nullptr);
    else if (a == "--seccomp" && args[i + 1] == "default")
      seccomp = (++i, true);
    else {
      std::fprintf(stderr, "skylab sandbox-enter: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  // Never root inside: a uid and a gid are required, and not 0.
  if (command.empty() || cgroups.empty() || uid <= 0 || gid <= 0) {
    std::fputs(
        "usage: skylab sandbox-enter --cgroup DIR... --uid U --gid G [--seccomp default] [--setenv "
        "K V]...\n"
        "       [--wait S] -- PROGRAM ARGS...\n",
        stderr);
    return 2;
  }
  // The filter is built before entering (libseccomp needs nothing of the sandbox).
  std::vector<sock_filter> filter;
  if (seccomp) {
    auto fd = default_seccomp_bpf_fd();
    if (!fd.ok()) {
      std::fprintf(stderr, "skylab sandbox-enter: %s\r\n", fd.error().message.c_str());
      return 125;
    }
    safe_fs::UniqueFd bpf(fd.value());
    std::string prog;
    char buf[4096];
    ssize_t n;
    ::lseek(bpf.get(), 0, SEEK_SET);
    while ((n = ::read(bpf.get(), buf, sizeof buf)) > 0 && prog.size() < (1u << 20))
      prog.append(buf, n);
    filter.resize(prog.size() / sizeof(sock_filter));
    std::memcpy(filter.data(), prog.data(), filter.size() * sizeof(sock_filter));
    if (filter.empty()) {
      std::fputs("skylab sandbox-enter: empty seccomp filter\r\n", stderr);
      return 125;
    }
  }

  auto sandbox = open_sandbox(cgroups, bwrap, wait_s, 50);
  if (!sandbox.ok()) {
    std::fprintf(stderr, "skylab sandbox-enter: %s\r\n", sandbox.error().message.c_str());
    return 125;
  }
  auto& ns = sandbox->ns;
  auto& root = sandbox->root;
  for (auto& d : cgroups) {
    safe_fs::UniqueFd f(::open((d + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
    std::string self = std::to_string(::getpid());
    if (f.get() < 0 ||
        ::write(f.get(), self.data(), self.size()) != static_cast<ssize_t>(self.size()))
      fail("cannot join the runtime's cgroup");
  }
  for (auto& fd : ns)
    if (::setns(fd.get(), 0) != 0) fail("cannot enter the runtime's namespaces");
  if (::fchdir(root.get()) != 0 || ::chroot(".") != 0 || ::chdir("/") != 0)
    fail("cannot enter the runtime's root");

  // The child learns of the parent's death by the pipe's other end closing
  // (the parent is outside its pid namespace: getppid() says 0).
  int alive[2];
  if (::pipe2(alive, O_CLOEXEC) != 0) fail("pipe");
  pid_t child = ::fork();
  if (child < 0) fail("fork");
  if (child == 0) {
    if (::setsid() < 0) fail("setsid");
    if (::isatty(0)) {
      // Not fatal: without job control the shell still works through fds 0-2.
      if (::ioctl(0, TIOCSCTTY, 0) != 0)
        std::fputs("skylab sandbox-enter: no job control in this shell\r\n", stderr);
      (void)!::fchown(0, static_cast<uid_t>(uid), static_cast<gid_t>(gid));
    }
    if (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0) fail("setgid");
    if (::setresuid(uid, uid, uid) != 0) fail("setuid");
    if (::getuid() == 0 || ::geteuid() == 0) ::_exit(125);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    ::close(alive[1]);
    pollfd pf{alive[0], POLLIN, 0};
    if (::poll(&pf, 1, 0) != 0) ::_exit(125);  // the parent is gone already
    ::close(alive[0]);
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("no_new_privs");
    if (!filter.empty()) {
      sock_fprog prog{static_cast<unsigned short>(filter.size()), filter.data()};
      if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) fail("seccomp");
    }
    if (::chdir("/content") != 0) (void)::chdir("/");
    std::vector<char*> envp, argv;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    for (auto& c : command) argv.push_back(c.data());
    argv.push_back(nullptr);
    ::execve(argv[0], argv.data(), envp.data());
    fail(("cannot run " + command[0]).c_str());
  }
  ::close(alive[0]);
  // The parent keeps nothing of the terminal: it only waits.
  int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  for (int fd = 0; fd <= 2; ++fd) {
    if (devnull >= 0)
      ::dup2(devnull, fd);
    else
      ::close(fd);
  }
  for (int s : {SIGHUP, SIGINT, SIGQUIT}) ::signal(s, SIG_IGN);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace skylab::runtime
