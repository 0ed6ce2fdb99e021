#include "kernel/process.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

#include "common/subprocess.hpp"

namespace skylab::kernel {

bool server_only_env(const std::string& key) {
  return key == "SKYLAB_ADMIN_TOKEN";
}

std::map<std::string, std::string> kernel_environment(char* const* base, const KernelEnvInput& in) {
  std::map<std::string, std::string> env;
  for (char* const* e = base; e && *e; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  std::erase_if(env, [](const auto& kv) { return server_only_env(kv.first); });
  env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1";  // quiets debugpy's frozen-modules warning
  for (auto& [key, v] : in.launch_env) env[key] = v;
  if (!in.python_path.empty())
    env["PYTHONPATH"] =
        env.count("PYTHONPATH") ? in.python_path + ":" + env["PYTHONPATH"] : in.python_path;
  for (auto& [key, v] : in.spec_env) env[key] = v;
  return env;
}

std::string substitute(std::string s,
                       const std::vector<std::pair<std::string, std::string>>& values) {
  for (const auto& [pat, val] : values) {
    std::size_t pos = 0;
    // Advances past each replacement: a value that contains the pattern is not expanded again.
    while ((pos = s.find(pat, pos)) != std::string::npos) {
      s.replace(pos, pat.size(), val);
      pos += val.size();
    }
  }
  return s;
}

std::vector<std::string> kernel_argv(const KernelSpec& spec, const std::string& connection_file) {
  std::vector<std::string> args;
  for (const auto& a : spec.argv)
    args.push_back(substitute(
        a, {{"{connection_file}", connection_file}, {"{resource_dir}", spec.resource_dir}}));
  return args;
}

namespace {

//! Opens the kernel's log for appending (O_APPEND: the manager caps the log in
//! place while the kernel writes, log_cap.hpp). As root, through a detached
//! clone of the log's folder (open_tree): the kernel's /proc/self/fd then
//! names the file as "/<name>", not by the server's data folder on the host.
//! Same file, same inode; without the privilege, the plain path.
int open_kernel_log(const std::string& path) {
  constexpr int kFlags = O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC;
  auto slash = path.rfind('/');
  if (::geteuid() == 0 && slash != std::string::npos && slash + 1 < path.size()) {
    std::string dir = slash == 0 ? "/" : path.substr(0, slash);
    int tree = ::open_tree(AT_FDCWD, dir.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree >= 0) {
      int fd = ::openat(tree, path.c_str() + slash + 1, kFlags, 0600);
      ::close(tree);
      if (fd >= 0) return fd;
    }
  }
  return ::open(path.c_str(), kFlags, 0600);
}

}  // namespace

Result<pid_t> spawn_process(std::vector<std::string> args,
                            const std::map<std::string, std::string>& env, const std::string& cwd,
                            const std::string& log_path) {
  if (args.empty()) return Error::bad_request("empty kernel command");
  int log_fd = open_kernel_log(log_path);
  if (log_fd < 0)
    return Error::internal("cannot open the kernel log " + log_path + ": " + std::strerror(errno));
  subprocess::Spec spec;
  spec.argv = std::move(args);
  spec.env.emplace();
  for (auto& [key, v] : env) spec.env->push_back(key + "=" + v);
  spec.cwd = cwd;
  spec.fds = {{log_fd, 1}, {log_fd, 2}};
  spec.close_from = 3;
  spec.new_session = true;
  spec.reset_signals = true;
  auto child = subprocess::spawn(spec);
  ::close(log_fd);
  if (!child.ok())
    return Error::internal("cannot start kernel '" + spec.argv[0] + "': " + child.error().message);
  return child->release();  // the manager reaps it (process_exited)
}

bool process_exited(pid_t pid, bool adopted, bool block, int& status) {
  status = 0;
  if (!adopted) return ::waitpid(pid, &status, block ? 0 : WNOHANG) == pid;
  for (int i = 0; i < (block ? 200 : 1); ++i) {
    std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
    std::string p, comm, state;
    if (!(st >> p >> comm >> state) || state == "Z" || state == "X") return true;
    if (block) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

bool pick_ports(const std::string& ip, int* out, int n) {
  std::vector<int> fds;
  bool ok = true;
  for (int i = 0; i < n && ok; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      ok = false;
      break;
    }
    fds.push_back(fd);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = 0;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (ip != "127.0.0.1") a.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t len = sizeof a;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ok = false;
      break;
    }
    out[i] = ntohs(a.sin_port);
  }
  for (int fd : fds) ::close(fd);
  return ok;
}

}  // namespace skylab::kernel
