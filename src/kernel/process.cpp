#include "kernel/process.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

namespace skylab::kernel {

std::map<std::string, std::string> kernel_environment(char* const* base, const KernelEnvInput& in) {
  std::map<std::string, std::string> env;
  for (char* const* e = base; e && *e; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  env.erase("SKYLAB_ADMIN_TOKEN");              // never hand server secrets to user code
  env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1";  // quiets debugpy's frozen-modules warning
  env["SKYLAB_RUNTIME_STATE"] = in.state_file;
  env["SKYLAB_RUNTIME_ACK"] = in.ack_file;
  if (!in.gpus.empty() || !in.runtime_type.empty()) {
    std::string visible;
    for (int g : in.gpus) visible += (visible.empty() ? "" : ",") + std::to_string(g);
    env["CUDA_VISIBLE_DEVICES"] = visible;
  }
  if (!in.python_path.empty())
    env["PYTHONPATH"] =
        env.count("PYTHONPATH") ? in.python_path + ":" + env["PYTHONPATH"] : in.python_path;
  for (auto& [key, v] : in.spec_env) env[key] = v;
  return env;
}

std::vector<std::string> kernel_argv(const KernelSpec& spec, const std::string& connection_file) {
  std::vector<std::string> args;
  for (auto a : spec.argv) {
    for (auto [pat, val] :
         {std::pair<std::string, std::string>{"{connection_file}", connection_file},
          {"{resource_dir}", spec.resource_dir}}) {
      std::size_t pos = 0;
      // Advances past each replacement: a value that contains the pattern is not expanded again.
      while ((pos = a.find(pat, pos)) != std::string::npos) {
        a.replace(pos, pat.size(), val);
        pos += val.size();
      }
    }
    args.push_back(std::move(a));
  }
  return args;
}

Result<pid_t> spawn_process(std::vector<std::string> args,
                            const std::map<std::string, std::string>& env, const std::string& cwd,
                            const std::string& log_path) {
  if (args.empty()) return Error::bad_request("empty kernel command");
  std::vector<std::string> env_strings;
  env_strings.reserve(env.size());
  for (auto& [key, v] : env) env_strings.push_back(key + "=" + v);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int s : {SIGINT, SIGTERM, SIGPIPE, SIGCHLD, SIGHUP, SIGQUIT}) sigaddset(&defaults, s);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  // O_APPEND: the manager caps the log by copy-and-truncate (log_cap.hpp).
  posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0)
    return Error::internal("cannot start kernel '" + args[0] + "': " + std::strerror(rc));
  return pid;
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
