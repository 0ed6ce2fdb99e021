// THE runtime service: the only way a kernel is obtained, claimed, leased or
// released. /api/kernels, /api/sessions, /api/skylab/runtimes and the jobs all
// call it; limits (max_per_user, max_gpu_per_user), the GPU queue, warm-pool
// claims and job leases live here and nowhere else.
//
// Admission (acquire) is decided at once, under one lock, on the caller's
// thread: it never blocks on the disk or a process. The start itself (sandbox
// prepare, mkfs/mount, chown walk, spawn) runs on the service's own worker
// threads, so the Asio thread never waits for it.
//
// Where kernels run is a RuntimeBackend: the local one (KernelManager + the
// sandbox launcher + the warm pool) today; a cluster backend (Slurm: the
// kernel runs on another machine, reached through an agent) implements the
// same interface: a start that may wait long (a pending reason such as
// "waiting for a machine" is reported through `progress`), kernels that are
// listed and stopped by id, a connection that need not be local ZeroMQ ipc
// (the backend owns it; the service never looks at it).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/mutex.hpp"
#include "common/result.hpp"
#include "common/work_queue.hpp"
#include "kernel/manager.hpp"
#include "runtime/config.hpp"

namespace skylab::runtime {

class GpuAllocator;
class UsageLedger;
class WarmPool;

//! What a backend is asked to start. `id` is chosen by the service (a new
//! kernel gets exactly this id); `gpus` are already granted.
struct StartSpec {
  std::string id;
  std::string owner;
  std::string spec;  //!< kernelspec name
  std::string type;  //!< runtime type name (never "")
  std::vector<int> gpus;
};

//! Where kernels run. Implementations are thread-safe.
class RuntimeBackend {
 public:
  virtual ~RuntimeBackend() = default;
  //! Starts a kernel as `s` says and returns once it exists (it may still be
  //! "starting"). Blocking (may take seconds, or for a cluster backend as
  //! long as the scheduler makes it wait); called only on a service worker
  //! thread. `progress(reason)` may be called any number of times before it
  //! returns, to say why it waits ("waiting for a machine"). NotFound for an
  //! unknown kernelspec; other errors as the backend sees them.
  virtual Result<kernel::KernelModel> start(const StartSpec& s,
                                            const std::function<void(std::string)>& progress) = 0;
  //! A spare kernel of `owner` for (`type`, `spec`) that can be handed out
  //! now (warm pool), or nullopt. Called on a worker thread; may block briefly.
  virtual std::optional<kernel::KernelModel> claim_spare(const std::string& owner,
                                                         const std::string& type,
                                                         const std::string& spec) {
    (void)owner, (void)type, (void)spec;
    return std::nullopt;
  }
  //! Stops the kernel `id`; `done` once it is gone (any thread). Must not
  //! block the caller.
  virtual void stop(const std::string& id, std::function<void(Status)> done) = 0;
  //! The runtime `id`, whose start() may still be running, was released:
  //! a backend whose start waits (a queued cluster job) gives up and returns
  //! soon. Must not block. Any thread.
  virtual void cancel(const std::string& id) { (void)id; }
  //! Why the started-but-not-ready kernel `id` still waits, as the backend
  //! last saw it (a cluster job's queue reason), or "". Quick; any thread.
  virtual std::string waiting_reason(const std::string& id) const {
    (void)id;
    return {};
  }
  //! Every kernel users see (no unclaimed spares). Quick; any thread.
  virtual std::vector<kernel::KernelModel> list() const = 0;
  //! NotFound for unknown ids. Quick; any thread.
  virtual Result<kernel::KernelModel> get(const std::string& id) const = 0;
  //! What kernel `id` uses now (memory, CPU time, /content disk); `known`
  //! false when the backend cannot tell. May block (cgroup files, a walk of
  //! /content, a round trip to an agent): never on the Asio thread.
  virtual kernel::Usage usage(const std::string& id) {
    (void)id;
    return {};
  }
};

//! The local backend: kernels of a KernelManager (sandboxed by `launcher`,
//! the one in its ManagerOptions; null: plain processes, usage unknown),
//! spares from a WarmPool (may be null), claimed only for kernelspecs
//! `specs` knows.
std::shared_ptr<RuntimeBackend> make_local_backend(
    std::shared_ptr<kernel::KernelService> kernels,
    std::shared_ptr<const kernel::KernelSpecStore> specs, std::shared_ptr<WarmPool> pool,
    std::shared_ptr<kernel::Launcher> launcher = nullptr);

enum class Purpose { kInteractive, kJob };

struct RuntimeRequest {
  std::string user;
  std::string spec;  //!< kernelspec name (checked by the backend)
  std::string type;  //!< runtime type; "" = the configured default
  Purpose purpose = Purpose::kInteractive;
  //! When the type needs GPUs and none are free: true queues (the ticket has
  //! a position; `on_started` runs once they are granted and the kernel
  //! started), false refuses with Unavailable (callers that must answer with
  //! a kernel, such as /api/kernels).
  bool may_queue = false;
  //! Job leases: the kernel is leased to this holder from its first moment
  //! (no client may attach), until `unlease`. "" = no lease.
  std::string lease_holder;
  //! The user is an administrator (the "admins" group of [quotas]).
  bool admin = false;
};

//! What acquire decided at once.
struct Ticket {
  std::string id;  //!< the runtime's id (a warm spare may end up under another id: see on_started)
  int position = 0;  //!< 1-based GPU queue position; 0 = starting now
};

//! A runtime that is not running yet, as users see it.
struct PendingRuntime {
  std::string id, user, type, spec;
  std::string state;   //!< "queued" (waiting for GPUs) or "starting"
  int position = 0;    //!< GPU queue position when queued
  std::string reason;  //!< the backend's last progress message, if any
  std::chrono::system_clock::time_point created;
  std::vector<int> gpus;  //!< granted GPUs (starting ones)
};

struct ServiceOptions {
  std::size_t threads = 2;  //!< workers that run starts
  std::size_t max_starting =
      64;  //!< admitted, not yet started runtimes (all users) before Unavailable
};

//! Thread-safe. Lock order: the service's lock, then the backend's and the
//! GPU allocator's; nothing is called back with the service lock held.
class RuntimeService {
 public:
  using Started = std::function<void(Result<kernel::KernelModel>)>;

  //! `gpus` may be null (no GPUs). Starts the worker threads.
  RuntimeService(std::shared_ptr<RuntimeBackend> backend, std::shared_ptr<const Config> config,
                 std::shared_ptr<GpuAllocator> gpus, std::shared_ptr<WarmPool> pool = nullptr,
                 ServiceOptions options = {});
  //! stop().
  ~RuntimeService();
  RuntimeService(const RuntimeService&) = delete;
  RuntimeService& operator=(const RuntimeService&) = delete;

  //! Admits a request, or refuses it at once:
  //!  - BadRequest: unknown runtime type; the type needs more GPUs than exist.
  //!  - Conflict: the user has max_per_user runtimes (running, starting and
  //!    queued count; all purposes), or max_gpu_per_user GPU runtimes; or
  //!    the type has GPUs and the user's weekly GPU hours are used up (the
  //!    message says when they refill; see set_ledger).
  //!  - Unavailable: no free GPUs and !may_queue; max_starting runtimes are
  //!    starting; the service is stopping.
  //! The count and the admission happen under one lock: concurrent requests
  //! never exceed a limit. Never blocks (safe on the Asio thread).
  //! When admitted, `on_started` is called exactly once, on a service worker
  //! thread, with the started (or warm-claimed) kernel or why it did not
  //! start (Unavailable when it was released or the service stopped before
  //! it started; the kernel, if it started meanwhile, is stopped).
  Result<Ticket> acquire(RuntimeRequest request, Started on_started);

  //! Releases runtime `id`: a queued one leaves the queue, a starting one is
  //! stopped as soon as its start returns, a running one is stopped through
  //! the backend. `done` once it is gone (any thread; at once for queued and
  //! starting ones). NotFound when there is no such runtime.
  void release(const std::string& id, std::function<void(Status)> done);

  //! Leases kernel `id` to `holder` (a job): clients may not attach while
  //! leased. Replaces an earlier lease.
  void lease(const std::string& id, const std::string& holder);
  void unlease(const std::string& id);
  //! The holder of the lease on `id`, or "".
  std::string lease_of(const std::string& id) const;

  //! Runtimes of `user` not running yet; all users' when `user` is "".
  std::vector<PendingRuntime> pending(const std::string& user) const;
  std::optional<PendingRuntime> pending_one(const std::string& id) const;

  //! The usage ledger whose GPU-hour quotas admission checks (null: none).
  //! Set before serving.
  void set_ledger(std::shared_ptr<UsageLedger> ledger);

  std::shared_ptr<GpuAllocator> gpus() const { return gpus_; }
  std::shared_ptr<WarmPool> pool() const { return pool_; }
  std::shared_ptr<const Config> config() const { return config_; }
  RuntimeBackend& backend() { return *backend_; }

  //! Refuses new requests, cancels queued ones (their on_started gets
  //! Unavailable), finishes starts in progress, joins the workers. Idempotent;
  //! never called from `on_started` (a worker cannot join itself).
  void stop();

 private:
  struct Entry {
    RuntimeRequest request;
    std::string type;
    int gpu_count = 0;
    bool queued = false;     // waiting for GPUs
    bool cancelled = false;  // released while queued or starting
    std::vector<int> gpus;   // granted
    std::string reason;
    std::chrono::system_clock::time_point created;
    Started on_started;
  };
  void post(std::function<void()> task);
  void run_start(const std::string& id, std::vector<int> gpus);

  std::shared_ptr<RuntimeBackend> backend_;
  std::shared_ptr<const Config> config_;
  std::shared_ptr<GpuAllocator> gpus_;
  std::shared_ptr<WarmPool> pool_;
  std::shared_ptr<UsageLedger> ledger_ GUARDED_BY(mu_);
  ServiceOptions options_;

  mutable Mutex mu_;
  std::map<std::string, Entry> entries_ GUARDED_BY(mu_);       // admitted, not started
  std::map<std::string, std::string> leases_ GUARDED_BY(mu_);  // kernel id -> holder
  bool stopping_ GUARDED_BY(mu_) = false;

  // The workers that run starts (unbounded: max_starting bounds admission).
  // Its lock is taken after mu_, never before. Last: its threads stop first.
  std::unique_ptr<WorkQueue> work_;
};

}  // namespace skylab::runtime
