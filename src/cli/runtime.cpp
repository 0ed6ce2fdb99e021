// `skylab runtime exec`: runs a plain process in a fresh runtime sandbox of
// a type (limits, /content, the user's Drive, GPUs), for operators: checks
// of a GPU node, of limits, of what user code sees.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "common/log.hpp"
#include "common/subprocess.hpp"
#include "common/util.hpp"
#include "kernel/process.hpp"
#include "runtime/config.hpp"
#include "runtime/gpu.hpp"
#include "runtime/sandbox.hpp"

extern char** environ;

namespace skylab::cli {

namespace fs = std::filesystem;

namespace {

const char* kExecHelp =
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
    "  --data-dir D    data directory (default ./skylab-data)\n";

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
  ArgParser p("skylab runtime exec", kExecHelp);
  p.option({"--type"}, &type)
      .option({"--user"}, &user)
      .option({"--config"}, &config_path)
      .option({"--data-dir"}, &data_dir)
      .option({"--gpus"},
              [&](const std::string& v) {
                gpu_list = v;
                gpus_given = true;
                return std::string();
              })
      .rest_after_dashdash(&command);
  if (auto o = p.parse(args); o != ArgParser::Outcome::kRun) return ArgParser::exit_code(o);
  if (command.empty()) return p.usage_error("name the command to run after --");
  auto config = config_path.empty() ? runtime::default_config() : runtime::load_config(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "skylab runtime exec: %s\n", config.error().message.c_str());
    return 2;
  }
  type = config->type_name(type);
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
  spec.devices = gpus;
  for (char** e = environ; *e; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string::npos && kv.rfind("SKYLAB_", 0) == 0 &&
        !kernel::server_only_env(kv.substr(0, eq)))
      spec.env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  auto st = launcher.prepare(spec);
  if (!st.ok()) {
    std::fprintf(stderr, "skylab runtime exec: %s\n", st.error().message.c_str());
    launcher.cleanup(spec.kernel_id);
    return 125;
  }
  subprocess::Spec child;
  child.argv = spec.argv;
  child.env.emplace();
  for (auto& [k, v] : spec.env) child.env->push_back(k + "=" + v);
  child.cwd = spec.cwd;
  child.in = child.out = child.err = subprocess::Stdio::kInherit;
  // Ctrl-C goes to the sandboxed process (same process group); we wait and clean up.
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGTERM, SIG_IGN);
  child.default_signals = {SIGINT, SIGTERM};
  auto started = subprocess::spawn(child);
  pid_t pid = started.ok() ? started->pid() : -1;
  int code = 125;
  if (!started.ok()) {
    std::fprintf(stderr, "skylab runtime exec: cannot start the sandbox: %s\n",
                 started.error().message.c_str());
  } else {
    code = subprocess::exit_code(started->wait());
    std::string why = launcher.death_reason(spec.kernel_id);
    if (!why.empty()) std::fprintf(stderr, "skylab runtime exec: %s\n", why.c_str());
  }
  launcher.kill_all(spec.kernel_id, pid);
  launcher.cleanup(spec.kernel_id);
  return code;
}

}  // namespace

int runtime_main(const std::vector<std::string>& args) {
  if (!args.empty() && (args[0] == "-h" || args[0] == "--help")) {
    std::fputs(kExecHelp, stdout);
    return 0;
  }
  if (args.empty()) return usage_error("skylab runtime", "which subcommand? (exec)");
  if (args[0] == "exec") return exec_main(std::vector<std::string>(args.begin() + 1, args.end()));
  return usage_error("skylab runtime", "unknown subcommand '" + args[0] + "'");
}

}  // namespace skylab::cli
