// Launches kernels from kernelspecs and talks to them over ZeroMQ.
// ZeroMQ is confined to manager.cpp: one I/O thread polls every kernel's
// shell, control, stdin, iopub and heartbeat sockets.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "common/result.hpp"
#include "kernel/kernelspec.hpp"
#include "kernel/launcher.hpp"
#include "kernel/state.hpp"
#include "kernel/wire.hpp"

namespace skylab::kernel {

//! The REST view of a kernel (as Jupyter Server's kernel model), and what the
//! layer that started it asked for. What that layer makes of `launch` (GPUs,
//! the runtime state file) is its business: see runtime/launch.hpp.
struct KernelModel {
  std::string id;
  std::string name;                                      //!< kernelspec name
  std::string owner;                                     //!< username of the user who started it
  KernelState execution_state = KernelState::kStarting;  //!< JSON: to_string(execution_state)
  std::chrono::system_clock::time_point last_activity;
  int connections = 0;
  pid_t pid = -1;
  std::string runtime_type;
  std::string reason;                             //!< why the kernel is dead, when known
  std::chrono::system_clock::time_point started;  //!< first start (restarts keep it)
  //! StartOptions::launch, with {state_file} and {ack_file} in `env` replaced
  //! by the kernel's paths.
  LaunchSettings launch;
  bool reserved = false;  //!< started reserved, not claimed yet (hidden from list/get)
  bool claimed = false;   //!< started reserved, then handed out by claim()
};

struct StartOptions {
  std::string runtime_type;  //!< passed to the Launcher
  std::string kernel_id;     //!< preset id (a queued runtime's); "" for a new one
  LaunchSettings launch;     //!< environment and devices (kept across restarts)
  //! Started ahead of its use (a warm-pool spare): hidden from list() and
  //! get() until claim() hands it to its owner. A restarted server does not
  //! adopt reserved kernels.
  bool reserved = false;
  //! With `reserved`: started for no one in particular (the instant pool);
  //! claim() may hand it to any owner, through Launcher::assign.
  bool for_anyone = false;
};

//! Receives one kernel's messages. A kernel has any number of observers (the
//! channels hub of its WebSockets, a job's executor, a recorder). Called on
//! the manager's I/O thread, in the order they were added, with no manager
//! lock held: implementations must be quick and must not block. An exception
//! from one is logged and does not reach the others.
class KernelObserver {
 public:
  virtual ~KernelObserver() = default;
  virtual void on_kernel_message(Channel ch, const std::shared_ptr<const Message>& msg,
                                 const MessageInfo& info) = 0;
  //! The kernel was shut down and removed; no further calls follow.
  virtual void on_kernel_removed() {}
};

struct ManagerOptions {
  std::string runtime_dir;  //!< connection files live here (created 0700)
  //! Cap on each kernel's own log (kernel-<id>.log, its stdout/stderr);
  //! beyond it the log is rotated to kernel-<id>.log.1 (see log_cap.hpp).
  std::uint64_t kernel_log_cap = 8ull << 20;
  std::string working_dir;  //!< kernels' current directory ("" = server's)
  std::string ip = "127.0.0.1";
  std::chrono::milliseconds shutdown_wait{3000};  //!< after shutdown_request, before SIGKILL
  std::chrono::milliseconds ready_timeout{60000};
  std::chrono::milliseconds heartbeat_interval{3000};
  //! Wraps kernel start-up (sandbox, limits); null: plain child processes.
  std::shared_ptr<Launcher> launcher;
  //! Parent of per-kernel ipc socket directories (when the launcher uses ipc).
  std::string socket_dir;
  //! Prepended to the command of kernels without a launcher, e.g.
  //! `skylab sandbox-exec --die-with-parent --` so that they die with this
  //! process (`skylab run`). Empty for `skylab serve` (kernels outlive it).
  std::vector<std::string> command_prefix;
  //! Added to PYTHONPATH of unsandboxed kernels (the python/skylab helpers).
  std::string python_path;
  //! Called (on the I/O thread) after a kernel was shut down and removed.
  std::function<void(const std::string& kernel_id)> on_removed;
  //! Called just before a kernel's process is spawned (start and restart)
  //! and when a reserved kernel is claimed, with the kernel's model (`launch`
  //! and `started` set): writes what the kernel reads at start-up, such as its
  //! state file. Any thread, no manager lock held; must be quick.
  std::function<void(const KernelModel&)> on_started;
  //! Time for deadlines, heartbeats and activity stamps; null: real_clock().
  std::shared_ptr<const Clock> clock;
};

//! What api/, runtime/ and exec/ need of the kernels: the contract of
//! KernelManager (see there), abstract so that their tests can fake it.
class KernelService {
 public:
  virtual ~KernelService() = default;
  virtual Result<KernelModel> start(const std::string& spec_name, const std::string& owner,
                                    const StartOptions& options = {}) = 0;
  virtual std::vector<KernelModel> list(bool include_reserved = false) const = 0;
  virtual Result<KernelModel> get(const std::string& id) const = 0;
  virtual Result<KernelModel> claim(const std::string& id, const std::string& owner) = 0;
  virtual Status interrupt(const std::string& id) = 0;
  virtual void restart(const std::string& id, std::function<void(Result<KernelModel>)> done) = 0;
  virtual void shutdown(const std::string& id, std::function<void(Status)> done) = 0;
  virtual void shutdown_all() = 0;
  virtual void when_ready(const std::string& id, std::function<void(Result<KernelModel>)> done) = 0;
  virtual Status send(const std::string& id, Channel ch, Message msg) = 0;
  virtual Status add_observer(const std::string& id, std::shared_ptr<KernelObserver> observer) = 0;
  virtual void remove_observer(const std::string& id, const KernelObserver* observer) = 0;
  virtual Status notify(const std::string& id, const std::string& msg_type,
                        const nlohmann::json& content) = 0;
  virtual void add_connections(const std::string& id, int delta) = 0;
  virtual void touch(const std::string& id) = 0;
  virtual std::chrono::system_clock::time_point last_activity() const = 0;
};

//! Thread-safe. Callbacks (`done`) run on the I/O thread unless noted.
//! The per-kernel phases, readiness nudges, stop deadline and heartbeat are
//! decided by KernelStateMachine (state_machine.hpp) on the injected clock.
class KernelManager final : public KernelService {
 public:
  KernelManager(ManagerOptions options, std::shared_ptr<const KernelSpecStore> specs);
  //! Shuts every kernel down (as shutdown_all) and stops the I/O thread.
  ~KernelManager() override;

  //! Launches a kernel of spec `spec_name`; returns once the process runs
  //! (state "starting"). NotFound for an unknown spec. The kernel's state
  //! file (written by the server through on_started, readable by the
  //! kernel: in a root-owned directory when sandboxed) and acknowledgement
  //! file (kernel-writable) are the manager's to place and remove; their
  //! paths replace {state_file} and {ack_file} in `options.launch.env`.
  Result<KernelModel> start(const std::string& spec_name, const std::string& owner,
                            const StartOptions& options = {}) override;
  //! Kernels users see; `include_reserved` adds unclaimed reserved kernels.
  std::vector<KernelModel> list(bool include_reserved = false) const override;
  //! Adopts the kernels of a previous server process from their runtime
  //! records (data-dir/runtime/records): live ones are reconnected and
  //! checked with kernel_info, dead ones are cleaned up. Call once, at start.
  std::vector<KernelModel> reattach();
  //! NotFound for unknown ids and for unclaimed reserved kernels.
  Result<KernelModel> get(const std::string& id) const override;
  //! Hands the reserved kernel `id` to `owner`: it becomes an ordinary
  //! kernel whose lifetime starts now (`started` and `last_activity` reset,
  //! `claimed` set). NotFound when it is not reserved (any more) or is
  //! another user's; Unavailable when it is dead or shutting down. A kernel
  //! started `for_anyone` is first given to `owner` by Launcher::assign (it
  //! must be idle); when that fails it is shut down (Unavailable).
  Result<KernelModel> claim(const std::string& id, const std::string& owner) override;

  //! SIGINT to the kernel's process group, or `interrupt_request` on control
  //! when the spec's interrupt_mode is "message".
  Status interrupt(const std::string& id) override;
  //! Restarts in place (same id, same key); `done` when it is ready again.
  void restart(const std::string& id, std::function<void(Result<KernelModel>)> done) override;
  //! `shutdown_request`, then SIGKILL of the process group after
  //! shutdown_wait; `done` once the process is gone and the kernel removed.
  void shutdown(const std::string& id, std::function<void(Status)> done) override;
  //! Shuts all kernels down in parallel and waits (bounded) for them.
  //! Does nothing after detach_all().
  void shutdown_all() override;
  //! For a server that stops while its runtimes run on (a restart): shuts
  //! the unclaimed reserved kernels down, then leaves every other kernel's process and
  //! runtime record alone, for the next server's reattach(); from then on
  //! shutdown_all() and the destructor touch no kernel.
  void detach_all();
  //! `done` once the kernel answered kernel_info (or it died / timed out).
  void when_ready(const std::string& id, std::function<void(Result<KernelModel>)> done) override;

  //! Signs and sends a client message to the kernel on `ch` (not iopub).
  Status send(const std::string& id, Channel ch, Message msg) override;
  //! Adds `observer` to the kernel's observers (once; adding it again does
  //! nothing). It gets every later message and on_kernel_removed. NotFound
  //! for unknown ids. Any thread; may be called from an observer.
  Status add_observer(const std::string& id, std::shared_ptr<KernelObserver> observer) override;
  //! Removes `observer`; no further calls reach it once this returns, except
  //! one already in progress on the I/O thread. Unknown ids and observers
  //! are ignored. Any thread.
  void remove_observer(const std::string& id, const KernelObserver* observer) override;
  //! Sends a server-made iopub message (e.g. a runtime warning) to the
  //! kernel's clients.
  Status notify(const std::string& id, const std::string& msg_type,
                const nlohmann::json& content) override;
  //! Adjusts the `connections` count in the kernel's model.
  void add_connections(const std::string& id, int delta) override;
  //! Marks activity (a client message) on the kernel.
  void touch(const std::string& id) override;

  std::chrono::system_clock::time_point last_activity() const override;

 private:
  //! Shuts `ids` down in parallel; returns once all are gone (bounded wait).
  void shutdown_and_wait(const std::vector<std::string>& ids);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace skylab::kernel
