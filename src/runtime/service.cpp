#include "runtime/service.hpp"

#include <limits>
#include <memory>
#include <utility>

#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/util.hpp"
#include "runtime/gpu.hpp"
#include "runtime/launch.hpp"
#include "runtime/pool.hpp"
#include "runtime/usage_ledger.hpp"

namespace skylab::runtime {

namespace {

class LocalBackend final : public RuntimeBackend {
 public:
  LocalBackend(std::shared_ptr<kernel::KernelService> kernels,
               std::shared_ptr<const kernel::KernelSpecStore> specs, std::shared_ptr<WarmPool> pool,
               std::shared_ptr<kernel::Launcher> launcher)
      : kernels_(std::move(kernels)),
        specs_(std::move(specs)),
        pool_(std::move(pool)),
        launcher_(std::move(launcher)) {}

  Result<kernel::KernelModel> start(const StartSpec& s,
                                    const std::function<void(std::string)>&) override {
    kernel::StartOptions so;
    so.runtime_type = s.type;
    so.kernel_id = s.id;
    so.launch = launch_settings(s.type, s.gpus);
    return kernels_->start(s.spec, s.owner, so);
  }
  std::optional<kernel::KernelModel> claim_spare(const std::string& owner, const std::string& type,
                                                 const std::string& spec) override {
    if (!pool_ || !specs_ || !specs_->find(spec).ok()) return std::nullopt;
    return pool_->take(owner, type, spec);
  }
  void stop(const std::string& id, std::function<void(Status)> done) override {
    kernels_->shutdown(id, std::move(done));
  }
  std::vector<kernel::KernelModel> list() const override { return kernels_->list(); }
  Result<kernel::KernelModel> get(const std::string& id) const override {
    return kernels_->get(id);
  }
  kernel::Usage usage(const std::string& id) override {
    return launcher_ ? launcher_->usage(id) : kernel::Usage{};
  }

 private:
  std::shared_ptr<kernel::KernelService> kernels_;
  std::shared_ptr<const kernel::KernelSpecStore> specs_;
  std::shared_ptr<WarmPool> pool_;
  std::shared_ptr<kernel::Launcher> launcher_;
};

}  // namespace

std::shared_ptr<RuntimeBackend> make_local_backend(
    std::shared_ptr<kernel::KernelService> kernels,
    std::shared_ptr<const kernel::KernelSpecStore> specs, std::shared_ptr<WarmPool> pool,
    std::shared_ptr<kernel::Launcher> launcher) {
  return std::make_shared<LocalBackend>(std::move(kernels), std::move(specs), std::move(pool),
                                        std::move(launcher));
}

RuntimeService::RuntimeService(std::shared_ptr<RuntimeBackend> backend,
                               std::shared_ptr<const Config> config,
                               std::shared_ptr<GpuAllocator> gpus, std::shared_ptr<WarmPool> pool,
                               ServiceOptions options)
    : backend_(std::move(backend)),
      config_(std::move(config)),
      gpus_(std::move(gpus)),
      pool_(std::move(pool)),
      options_(options) {
  if (!gpus_) gpus_ = std::make_shared<GpuAllocator>(std::vector<Gpu>{});
  if (options_.threads == 0) options_.threads = 1;
  work_ = std::make_unique<WorkQueue>(options_.threads, std::numeric_limits<std::size_t>::max());
}

RuntimeService::~RuntimeService() {
  stop();
}

void RuntimeService::post(std::function<void()> task) {
  // Refused only once stop() has begun: the task (a start nobody will wait
  // for any more) is dropped, as stop() drops what it cancels.
  if (!work_->post(std::move(task))) log::warn("runtime service: stopping; a start was dropped");
}

Result<Ticket> RuntimeService::acquire(RuntimeRequest request, Started on_started) {
  MutexLock lock(mu_);
  if (stopping_) return Error::unavailable("The server is stopping");
  const Config& c = *config_;
  std::string type = c.type_name(request.type);  // a copy: request is moved below
  auto t = c.types.find(type);
  if (t == c.types.end()) return Error::bad_request("Unknown runtime type '" + type + "'");
  const int gpu_count = t->second.gpus;
  const int total_gpus = static_cast<int>(gpus_->gpus().size());
  if (gpu_count > total_gpus)
    return Error::bad_request("Runtime type '" + type + "' needs " + std::to_string(gpu_count) +
                              " GPUs; this server has " + std::to_string(total_gpus));

  // Running, starting and queued runtimes of the user, each counted once
  // (a started kernel keeps its entry's id until the entry goes).
  std::set<std::string> mine, mine_gpu;
  for (auto& k : backend_->list())
    if (k.owner == request.user) {
      mine.insert(k.id);
      if (!gpus_of(k).empty()) mine_gpu.insert(k.id);
    }
  std::size_t starting = 0;
  for (auto& [id, e] : entries_) {
    starting += !e.queued;
    if (e.request.user != request.user) continue;
    mine.insert(id);
    if (e.gpu_count > 0) mine_gpu.insert(id);
  }
  const auto n = static_cast<int>(mine.size()), n_gpu = static_cast<int>(mine_gpu.size());
  if (c.runtimes.max_per_user && n >= c.runtimes.max_per_user)
    return Error::conflict("You have " + std::to_string(n) +
                           " runtimes, the most allowed; delete one first");
  if (gpu_count > 0 && n_gpu >= c.runtimes.max_gpu_per_user)
    return Error::conflict("You already have " + std::to_string(n_gpu) +
                           " GPU runtime(s), the most allowed");
  if (ledger_) {
    const int quota_gpus = gpu_count > 0 ? gpu_count : t->second.slurm.gpus;
    // Interactive requests know whether their user is an administrator; jobs
    // run on behalf of an owner whose last interactive request told.
    if (request.purpose == Purpose::kInteractive) ledger_->note_admin(request.user, request.admin);
    if (auto q = ledger_->admit(request.user, request.admin, quota_gpus); !q.ok()) return q.error();
  }
  if (starting >= options_.max_starting)
    return Error::unavailable("Too many runtimes are starting; try again in a moment");

  const std::string id = util::uuid4();
  Entry e;
  e.request = std::move(request);
  e.type = type;
  e.gpu_count = gpu_count;
  e.created = std::chrono::system_clock::now();
  e.on_started = std::move(on_started);
  const bool may_queue = e.request.may_queue;
  if (!e.request.lease_holder.empty()) leases_[id] = e.request.lease_holder;
  entries_.emplace(id, std::move(e));

  if (gpu_count == 0) {
    post([this, id] { run_start(id, {}); });
    return Ticket{id, 0};
  }
  // The grant may run at once (here) or later on the thread that frees GPUs;
  // either way it only queues the start (the work queue's lock after mu_).
  int pos = gpus_->request(id, gpu_count, [this, id](std::vector<int> g) {
    post([this, id, g = std::move(g)]() mutable { run_start(id, std::move(g)); });
  });
  if (pos > 0 && !may_queue) {
    if (gpus_->cancel(id)) {
      entries_.erase(id);
      leases_.erase(id);
      return Error::unavailable("All GPUs are in use (position " + std::to_string(pos) +
                                " in the queue); use /api/skylab/runtimes to queue for one");
    }
    pos = 0;  // granted meanwhile
  }
  if (pos < 0) {  // cannot happen (checked above), but never leave an entry behind
    entries_.erase(id);
    leases_.erase(id);
    return Error::bad_request("Runtime type '" + type + "' needs more GPUs than this server has");
  }
  if (pos > 0) entries_.at(id).queued = true;
  return Ticket{id, pos};
}

void RuntimeService::run_start(const std::string& id, std::vector<int> gpus) {
  auto give_back_gpus = [&] {
    if (!gpus.empty()) gpus_->release(id);
  };
  StartSpec spec;
  Started cb;
  {
    MutexLock lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) {  // released while the grant was on its way
      give_back_gpus();
      return;
    }
    Entry& e = it->second;
    if (e.cancelled || stopping_) {
      cb = std::move(e.on_started);
      entries_.erase(it);
      leases_.erase(id);
    } else {
      e.queued = false;
      e.gpus = gpus;
      spec = StartSpec{id, e.request.user, e.request.spec, e.type, gpus};
    }
  }
  if (cb) {
    give_back_gpus();
    cb(Error::unavailable("The runtime was released before it started"));
    return;
  }

  // The blocking part: a warm spare, else a new kernel (sandbox, mounts, spawn).
  std::optional<kernel::KernelModel> spare;
  if (gpus.empty()) spare = backend_->claim_spare(spec.owner, spec.type, spec.spec);
  Result<kernel::KernelModel> k = spare ? Result<kernel::KernelModel>(*spare)
                                        : backend_->start(spec, [this, id](std::string reason) {
                                            MutexLock lock(mu_);
                                            if (auto it = entries_.find(id); it != entries_.end())
                                              it->second.reason = std::move(reason);
                                          });
  bool cancelled = false;
  {
    MutexLock lock(mu_);
    auto it = entries_.find(id);
    if (it != entries_.end()) {
      cancelled = it->second.cancelled || stopping_;
      cb = std::move(it->second.on_started);
      entries_.erase(it);
    }
    auto lease = leases_.find(id);
    if (lease != leases_.end()) {
      std::string holder = lease->second;
      leases_.erase(lease);
      // A warm spare keeps its own id: the lease moves with it.
      if (k.ok() && !cancelled) leases_[k->id] = holder;
    }
  }
  if (!k.ok()) {
    give_back_gpus();
    log::warn("runtime " + id + ": could not start: " + k.error().message);
    if (cb) cb(k.error());
    return;
  }
  if (cancelled) {
    backend_->stop(k->id, [](const Status&) {});
    if (cb) cb(Error::unavailable("The runtime was released before it started"));
    return;
  }
  if (cb) cb(std::move(k));
}

void RuntimeService::release(const std::string& id, std::function<void(Status)> done) {
  Started cb;
  bool running = false, starting = false;
  {
    MutexLock lock(mu_);
    leases_.erase(id);
    auto it = entries_.find(id);
    if (it == entries_.end()) {
      running = true;
    } else {
      it->second.cancelled = true;
      // Still queued: it leaves the queue now. Granted meanwhile, or starting:
      // run_start sees `cancelled` and stops what it started.
      if (it->second.queued && gpus_->cancel(id)) {
        cb = std::move(it->second.on_started);
        entries_.erase(it);
      } else if (!it->second.queued) {
        starting = true;
      }
    }
  }
  if (starting) backend_->cancel(id);
  if (!running) {
    if (cb) cb(Error::unavailable("The runtime was released before it started"));
    if (done) done(ok_status());
    return;
  }
  if (!backend_->get(id).ok()) {
    if (done) done(Error::not_found("No such runtime: " + id));
    return;
  }
  backend_->stop(id, [done = std::move(done)](Status st) {
    if (done) done(std::move(st));
  });
}

void RuntimeService::set_ledger(std::shared_ptr<UsageLedger> ledger) {
  MutexLock lock(mu_);
  ledger_ = std::move(ledger);
}

void RuntimeService::lease(const std::string& id, const std::string& holder) {
  MutexLock lock(mu_);
  leases_[id] = holder;
}

void RuntimeService::unlease(const std::string& id) {
  MutexLock lock(mu_);
  leases_.erase(id);
}

std::string RuntimeService::lease_of(const std::string& id) const {
  MutexLock lock(mu_);
  auto it = leases_.find(id);
  return it == leases_.end() ? std::string() : it->second;
}

std::vector<PendingRuntime> RuntimeService::pending(const std::string& user) const {
  MutexLock lock(mu_);
  std::vector<PendingRuntime> out;
  for (auto& [id, e] : entries_) {
    if (e.cancelled || (!user.empty() && e.request.user != user)) continue;
    out.push_back(PendingRuntime{id, e.request.user, e.type, e.request.spec,
                                 e.queued ? "queued" : "starting",
                                 e.queued ? gpus_->position(id) : 0, e.reason, e.created, e.gpus});
  }
  return out;
}

std::optional<PendingRuntime> RuntimeService::pending_one(const std::string& id) const {
  MutexLock lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.cancelled) return std::nullopt;
  const Entry& e = it->second;
  return PendingRuntime{id,
                        e.request.user,
                        e.type,
                        e.request.spec,
                        e.queued ? "queued" : "starting",
                        e.queued ? gpus_->position(id) : 0,
                        e.reason,
                        e.created,
                        e.gpus};
}

void RuntimeService::stop() {
  std::vector<Started> cancelled;
  {
    MutexLock lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      for (auto it = entries_.begin(); it != entries_.end();) {
        if (it->second.queued && gpus_->cancel(it->first)) {
          cancelled.push_back(std::move(it->second.on_started));
          leases_.erase(it->first);
          it = entries_.erase(it);
        } else {
          ++it;
        }
      }
    }
  }
  for (auto& cb : cancelled)
    if (cb) cb(Error::unavailable("The server is stopping"));
  work_->stop(WorkQueue::Pending::kRun);  // starts already queued finish
}

}  // namespace skylab::runtime
