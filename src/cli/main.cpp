// skylab: one binary, several commands.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace skylab::runtime {
int sandbox_exec_main(const std::vector<std::string>& args);
int sandbox_enter_main(const std::vector<std::string>& args);
int cgroup_hold_main(const std::vector<std::string>& args);
}  // namespace skylab::runtime
namespace skylab::cli {
int serve_main(const std::vector<std::string>& args);
int user_main(const std::vector<std::string>& args);
int run_main(const std::vector<std::string>& args);
int runtime_main(const std::vector<std::string>& args);
int dataset_main(const std::vector<std::string>& args);
int slurm_link_main(const std::vector<std::string>& args);
int agent_main(const std::vector<std::string>& args);
int backup_main(const std::vector<std::string>& args);
int restore_main(const std::vector<std::string>& args);
}  // namespace skylab::cli

namespace {
void usage(std::FILE* out) {
  std::fputs(
      "usage: skylab <command> [options]\n"
      "\n"
      "commands:\n"
      "  serve     run the Skylab server (Jupyter Server-compatible API)\n"
      "  user      manage accounts: add, passwd, disable, enable, token, list\n"
      "  run       execute a notebook headless and write the executed copy\n"
      "  runtime   runtime tools: exec CMD in a fresh sandbox of a runtime type\n"
      "  dataset   provide datasets to every runtime (/datasets): add, list, remove\n"
      "  backup    write a consistent backup of a data directory (also while serving)\n"
      "  restore   restore a backup into an empty data directory\n"
      "\n"
      "Run 'skylab <command> --help' for a command's options.\n",
      out);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (cmd == "serve") return skylab::cli::serve_main(args);
  if (cmd == "sandbox-exec") return skylab::runtime::sandbox_exec_main(args);  // internal
  if (cmd == "sandbox-enter")
    return skylab::runtime::sandbox_enter_main(args);  // internal: terminals
  if (cmd == "cgroup-hold")
    return skylab::runtime::cgroup_hold_main(args);  // skylab-runtimes.service
  if (cmd == "user") return skylab::cli::user_main(args);
  if (cmd == "run") return skylab::cli::run_main(args);
  if (cmd == "runtime") return skylab::cli::runtime_main(args);
  if (cmd == "dataset") return skylab::cli::dataset_main(args);
  if (cmd == "backup") return skylab::cli::backup_main(args);
  if (cmd == "restore") return skylab::cli::restore_main(args);
  if (cmd == "slurm-link") return skylab::cli::slurm_link_main(args);  // internal (Slurm backend)
  if (cmd == "agent") return skylab::cli::agent_main(args);  // internal: runs inside a Slurm job
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    usage(stdout);
    return 0;
  }
  if (cmd == "--version") {
    std::puts("skylab 0.1.0");
    return 0;
  }
  std::fprintf(stderr, "skylab: unknown command '%s'\n", cmd.c_str());
  usage(stderr);
  return 2;
}
