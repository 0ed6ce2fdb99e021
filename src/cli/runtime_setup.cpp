#include "cli/runtime_setup.hpp"

#include "common/log.hpp"
#include "runtime/sandbox.hpp"

namespace skylab::cli {

namespace fs = std::filesystem;

std::string find_installed_dir(const std::string& name) {
  std::error_code ec;
  fs::path exe_dir = fs::read_symlink("/proc/self/exe", ec).parent_path();
  for (const auto& candidate : {exe_dir / ".." / name, exe_dir / ".." / "lib" / "skylab" / name,
                                exe_dir / ".." / "share" / "skylab" / name})
    if (fs::is_directory(candidate, ec)) return fs::canonical(candidate, ec).string();
  return "";
}

fs::path datasets_dir(const fs::path& data) {
  return data / "datasets";
}

Result<std::shared_ptr<kernel::Launcher>> make_launcher(const runtime::Config& config,
                                                        const fs::path& data,
                                                        bool die_with_parent) {
  const std::string& mode = config.runtimes.sandbox;
  if (mode == "none") return std::shared_ptr<kernel::Launcher>();
  runtime::SandboxOptions so;
  so.config = config;
  so.data_dir = data.string();
  so.die_with_parent = die_with_parent;
  so.template_on = config.runtimes.template_on && !die_with_parent;  // `skylab run`: today's path
  if (!runtime::SandboxLauncher::available(so.bwrap)) {
    if (mode == "bwrap")
      return Error::unavailable(
          "runtimes.sandbox = \"bwrap\" but bubblewrap cannot create a sandbox here");
    log::warn(
        "bubblewrap is not usable here: kernels run unsandboxed (runtimes.sandbox = \"auto\")");
    return std::shared_ptr<kernel::Launcher>();
  }
  so.skylab_binary = fs::read_symlink("/proc/self/exe").string();
  so.python_dir = find_installed_dir("python");
  so.datasets_dir = datasets_dir(data).string();
  return std::shared_ptr<kernel::Launcher>(std::make_shared<runtime::SandboxLauncher>(so));
}

}  // namespace skylab::cli
