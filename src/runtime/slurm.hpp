// The Slurm backend: runtime types with `backend = "slurm"` run as Slurm jobs.
//
// Start: the service's worker creates a root-only job directory
// (<data>/slurm/jobs/<id>: the per-runtime secret, the kernel's launch
// description) and starts the kernel in the KernelManager like any other; for
// a Slurm type the launcher replaces the kernel's command with `skylab
// slurm-link` (slurm_link.hpp), which binds the kernel's ZeroMQ sockets on
// the server and waits for the agent. The backend then submits `skylab agent`
// with `sbatch --parsable` and reports "Waiting for a machine" (squeue's
// reason and queue position) until the agent has connected.
//
// End: deleting the runtime, idle shutdown and lifetime expiry stop the
// kernel in the manager, whose launcher kills the link and scancels the job.
// A job that Slurm ends (scancel, node failure, time limit) ends the agent's
// connection: the link exits, the manager marks the kernel dead with the
// reason the agent or squeue gave.
//
// Restart: links outlive the server like local kernels; the manager
// reattaches them from its records. Jobs named skylab-<id> that no adopted
// runtime owns are cancelled (cancel_orphans).
#pragma once

#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "kernel/launcher.hpp"
#include "kernel/manager.hpp"
#include "runtime/config.hpp"
#include "runtime/service.hpp"

namespace skylab::runtime {

//! Where the Slurm backend keeps its state and how it calls Slurm.
struct SlurmContext {
  std::shared_ptr<const Config> config;
  std::filesystem::path jobs_dir;  //!< <data>/slurm/jobs (root-only, 0700)
  std::string
      config_text;       //!< the server's --config file's text ("" = defaults), sent to the agent
  std::string data_dir;  //!< the server's data directory (same path on the nodes)
  std::string self_exe;  //!< this binary (the link); the agent's is [slurm] bin or this
};

//! Runs a Slurm client (`sbatch`, `squeue`, `scancel`) with SLURM_CONF from
//! [slurm] conf; never through a shell. Stdout, or an error with its stderr.
//! Blocks (bounded by `timeout_s`): never on the Asio thread.
Result<std::string> run_slurm(const SlurmContext& ctx, std::vector<std::string> argv,
                              int timeout_s = 30);

//! The manager's launcher when Slurm types exist: Slurm kernels get the link
//! command (above); everything else goes to `inner` (the sandbox launcher,
//! may be null).
class SlurmLauncher : public kernel::Launcher {
 public:
  SlurmLauncher(std::shared_ptr<kernel::Launcher> inner, std::shared_ptr<const SlurmContext> ctx);
  bool use_ipc() const override;
  Status prepare(kernel::LaunchSpec& spec) override;
  Status assign(kernel::LaunchSpec& spec) override;
  bool interrupt_by_message() const override;
  //! Slurm kernels: scancel of the job (the manager kills the link's group).
  void kill_all(const std::string& kernel_id, pid_t pid) override;
  //! Slurm kernels: what the agent reported, else the job's state in squeue.
  std::string death_reason(const std::string& kernel_id) override;
  void cleanup(const std::string& kernel_id) override;
  std::vector<std::string> prepared_ids() override;
  kernel::Usage usage(const std::string& kernel_id) override;

  //! True when `kernel_id` is a Slurm runtime (its job directory exists).
  bool is_slurm(const std::string& kernel_id) const;
  //! Cancels jobs named skylab-<id> whose id is not in `adopted`. Blocks.
  void cancel_orphans(const std::set<std::string>& adopted);
  std::shared_ptr<kernel::Launcher> inner() const { return inner_; }

 private:
  std::filesystem::path dir(const std::string& id) const;
  std::shared_ptr<kernel::Launcher> inner_;
  std::shared_ptr<const SlurmContext> ctx_;
};

//! The backend: Slurm types as above, all others through `local`.
std::shared_ptr<RuntimeBackend> make_slurm_backend(std::shared_ptr<RuntimeBackend> local,
                                                   std::shared_ptr<kernel::KernelService> kernels,
                                                   std::shared_ptr<const SlurmContext> ctx);

//! True when some runtime type of `config` has backend = "slurm".
bool uses_slurm(const Config& config);

}  // namespace skylab::runtime
