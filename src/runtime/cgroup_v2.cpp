#include "runtime/cgroup_v2.hpp"

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "runtime/cgroup_fs.hpp"

namespace skylab::runtime {

namespace {

std::vector<std::string> words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// sd_notify(3)'s protocol without libsystemd: one datagram to $NOTIFY_SOCKET
// (a path, or an abstract name when it starts with '@').
void notify_systemd(const char* state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (!path || !*path) return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::size_t n = std::strlen(path);
  if (n >= sizeof(addr.sun_path)) return;
  std::memcpy(addr.sun_path, path, n);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  ::sendto(fd, state, std::strlen(state), 0, reinterpret_cast<sockaddr*>(&addr),
           static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n));
  ::close(fd);
}

}  // namespace

std::vector<std::string> offered_controllers(const std::string& dir) {
  return words(read_text(dir + "/cgroup.controllers"));
}

std::vector<std::string> enable_controllers(const std::string& dir) {
  for (const auto& c : offered_controllers(dir))
    write_value(dir + "/cgroup.subtree_control", "+" + c);
  return words(read_text(dir + "/cgroup.subtree_control"));
}

int cgroup_hold_main(const std::vector<std::string>& args) {
  if (!args.empty()) {
    bool help = args[0] == "--help" || args[0] == "-h";
    std::fprintf(help ? stdout : stderr, "%s",
                 "usage: skylab cgroup-hold\n"
                 "  The main process of skylab-runtimes.service: keeps the cgroup that runtimes'\n"
                 "  cgroups live in (cgroup v2) free of processes, with its controllers enabled.\n"
                 "  See docs/operations.md.\n");
    return help ? 0 : 2;
  }
  // Block the signals we wait for before anything else, so none is lost.
  sigset_t wait_for;
  sigemptyset(&wait_for);
  sigaddset(&wait_for, SIGTERM);
  sigaddset(&wait_for, SIGINT);
  sigprocmask(SIG_BLOCK, &wait_for, nullptr);

  struct stat st {};
  if (::stat("/sys/fs/cgroup/cgroup.controllers", &st) == 0) {
    std::string own = own_cgroup("");  // the line "0::/path" of /proc/self/cgroup
    if (own.empty()) {
      std::fprintf(stderr,
                   "skylab cgroup-hold: this process is in the root cgroup; run it as "
                   "skylab-runtimes.service (Delegate=yes)\n");
      return 1;
    }
    std::string dir = "/sys/fs/cgroup" + own;
    std::string leaf = dir + "/hold";
    if (::mkdir(leaf.c_str(), 0755) != 0 && errno != EEXIST) {
      std::fprintf(stderr, "skylab cgroup-hold: cannot create %s: %s\n", leaf.c_str(),
                   std::strerror(errno));
      return 1;
    }
    if (!write_value(leaf + "/cgroup.procs", std::to_string(::getpid()))) {
      std::fprintf(stderr, "skylab cgroup-hold: cannot move into %s: %s\n", leaf.c_str(),
                   std::strerror(errno));
      return 1;
    }
    auto enabled = enable_controllers(dir);
    std::string list;
    for (auto& c : enabled) list += (list.empty() ? "" : " ") + c;
    std::fprintf(stderr, "skylab cgroup-hold: runtimes' cgroups go below %s (controllers: %s)\n",
                 own.c_str(), list.empty() ? "none" : list.c_str());
    bool memory = false;
    for (auto& c : enabled) memory = memory || c == "memory";
    if (!memory)
      std::fprintf(stderr,
                   "skylab cgroup-hold: warning: the memory controller is not delegated here; "
                   "runtimes' memory limits will not apply\n");
  } else {
    std::fprintf(stderr, "skylab cgroup-hold: no cgroup v2 hierarchy; nothing to hold\n");
  }
  notify_systemd("READY=1");
  int sig = 0;
  sigwait(&wait_for, &sig);
  notify_systemd("STOPPING=1");
  return 0;
}

}  // namespace skylab::runtime
