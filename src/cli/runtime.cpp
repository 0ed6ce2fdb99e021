// `skylab runtime exec`: runs a plain process in a fresh runtime sandbox of
// a type (limits, /content, the user's Drive, GPUs), for operators: checks
// of a GPU node, of limits, of what user code sees.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "common/util.hpp"
#include "runtime/config.hpp"
#include "runtime/gpu.hpp"
#include "runtime/sandbox.hpp"

extern char** environ;

namespace skylab::cli {

namespace fs = std::filesystem;

namespace {

void usage(std::FILE* out) {
  std::fputs(
      "usage: skylab runtime exec [--type T] [--user U] [--gpus I,J] [--config FILE] [--data-dir "
      "D] -- CMD [ARGS...]\n"
      "\n"
      "Runs CMD in a fresh sandbox of runtime type T (default: the configured\n"
      "default type), as a runtime of user U (default: admin) would run: the\n"
      "type's memory/CPU/pids/disk limits, /content as working directory, U's\n"
      "Drive at /content/drive, U's uid (as root), GPUs with CUDA_VISIBLE_DEVICES\n"
      "and only their /dev/nvidia* nodes. Output is streamed; the exit status is\n"
      "CMD's (125: the sandbox could not be made). The sandbox and its /content\n"
      "are removed afterwards.\n"
      "\n"
      "  --type T        runtime type from the configuration\n"
      "  --user U        whose Drive, cache and uid (default admin)\n"
      "  --gpus I,J      GPU indices to use (default: the first `gpus` of the type);\n"
      "                  not coordinated with a running server's GPU queue\n"
      "  --config FILE   runtime configuration (TOML), as for `skylab serve`\n"
      "  --data-dir D    data directory (default ./skylab-data)\n",
      out);
}

std::string python_dir() {
  std::error_code ec;
  fs::path exe_dir = fs::read_symlink("/proc/self/exe", ec).parent_path();
  for (const auto& candidate :
       {exe_dir / ".." / "python", exe_dir / ".." / "lib" / "skylab" / "python",
        exe_dir / ".." / "share" / "skylab" / "python"})
    if (fs::is_directory(candidate, ec)) return fs::canonical(candidate, ec).string();
  return "";
}

int exec_main(const std::vector<std::string>& args) {
  log::set_level(log::Level::kWarn);  // only what went wrong, beside CMD's own output
  std::string type, user = "admin", config_path, data_dir = "skylab-data", gpu_list;
  bool gpus_given = false;
  std::vector<std::string> command;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      command.assign(args.begin() + static_cast<long>(i) + 1, args.end());
      break;
    }
    if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    }
    auto value = [&](std::string& dst) {
      if (i + 1 >= args.size()) return false;
      dst = args[++i];
      return true;
    };
    bool ok = false;
    if (a == "--type")
      ok = value(type);
    else if (a == "--user")
      ok = value(user);
    else if (a == "--config")
      ok = value(config_path);
    else if (a == "--data-dir")
      ok = value(data_dir);
    else if (a == "--gpus")
      ok = gpus_given = value(gpu_list);
    if (!ok) {
      std::fprintf(stderr, "skylab runtime exec: bad option '%s'\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }
  if (command.empty()) {
    usage(stderr);
    return 2;
  }
  auto config = config_path.empty() ? runtime::default_config() : runtime::load_config(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "skylab runtime exec: %s\n", config.error().message.c_str());
    return 2;
  }
  if (type.empty()) type = config->runtimes.default_type;
  auto t = config->types.find(type);
  if (t == config->types.end()) {
    std::fprintf(stderr, "skylab runtime exec: unknown runtime type '%s'\n", type.c_str());
    return 2;
  }
  std::vector<int> gpus;
  if (gpus_given) {
    std::string part;
    for (std::size_t p = 0; p <= gpu_list.size(); ++p) {
      if (p == gpu_list.size() || gpu_list[p] == ',') {
        if (part.empty() || part.find_first_not_of("0123456789") != std::string::npos) {
          std::fprintf(stderr, "skylab runtime exec: --gpus takes indices such as 0,1\n");
          return 2;
        }
        gpus.push_back(std::stoi(part));
        part.clear();
      } else {
        part += gpu_list[p];
      }
    }
  } else if (t->second.gpus > 0) {
    auto inventory = runtime::detect_gpus(config->fake_gpus);
    if (static_cast<int>(inventory.size()) < t->second.gpus) {
      std::fprintf(stderr, "skylab runtime exec: type '%s' needs %d GPU(s); this machine has %zu\n",
                   type.c_str(), t->second.gpus, inventory.size());
      return 125;
    }
    for (int i = 0; i < t->second.gpus; ++i)
      gpus.push_back(inventory[static_cast<std::size_t>(i)].index);
  }

  std::error_code ec;
  fs::create_directories(data_dir, ec);
  runtime::SandboxOptions so;
  so.config = config.value();
  so.data_dir = fs::absolute(data_dir, ec).string();
  so.skylab_binary = fs::read_symlink("/proc/self/exe", ec).string();
  so.python_dir = python_dir();
  so.datasets_dir = so.data_dir + "/datasets";
  if (!runtime::SandboxLauncher::available(so.bwrap)) {
    std::fprintf(stderr, "skylab runtime exec: bubblewrap cannot create a sandbox here\n");
    return 125;
  }
  runtime::SandboxLauncher launcher(so);
  kernel::LaunchSpec spec;
  spec.kernel_id = "exec-" + util::uuid4();
  spec.owner = user;
  spec.runtime_type = type;
  spec.argv = command;
  spec.gpus = gpus;
  for (char** e = environ; *e; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string::npos && kv.rfind("SKYLAB_", 0) == 0 &&
        kv.rfind("SKYLAB_ADMIN_TOKEN=", 0) != 0)
      spec.env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  auto st = launcher.prepare(spec);
  if (!st.ok()) {
    std::fprintf(stderr, "skylab runtime exec: %s\n", st.error().message.c_str());
    launcher.cleanup(spec.kernel_id);
    return 125;
  }
  std::vector<std::string> env_strings;
  for (auto& [k, v] : spec.env) env_strings.push_back(k + "=" + v);
  std::vector<char*> argv, envp;
  for (auto& a : spec.argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  // Ctrl-C goes to the sandboxed process (same process group); we wait and clean up.
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGTERM, SIG_IGN);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (!spec.cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, spec.cwd.c_str());
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  int code = 125;
  if (rc != 0) {
    std::fprintf(stderr, "skylab runtime exec: cannot start the sandbox: %s\n", std::strerror(rc));
  } else {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::string why = launcher.death_reason(spec.kernel_id);
    if (!why.empty()) std::fprintf(stderr, "skylab runtime exec: %s\n", why.c_str());
  }
  launcher.kill_all(spec.kernel_id, pid);
  launcher.cleanup(spec.kernel_id);
  return code;
}

}  // namespace

int runtime_main(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "-h" || args[0] == "--help") {
    usage(args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "exec") return exec_main(std::vector<std::string>(args.begin() + 1, args.end()));
  std::fprintf(stderr, "skylab runtime: unknown subcommand '%s'\n", args[0].c_str());
  usage(stderr);
  return 2;
}

}  // namespace skylab::cli
