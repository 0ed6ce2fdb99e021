// A RuntimeBackend whose kernels "run" in a FakeKernelService: for tests of
// the runtime service, and of the api/ routes over it (which list kernels
// through the KernelService the backend fills). start() waits at a gate the
// test opens, so a start can be made as slow as a test needs, without any clock.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "kernel/fake_kernel_service.hpp"
#include "runtime/gpu.hpp"
#include "runtime/launch.hpp"
#include "runtime/service.hpp"

namespace skylab::runtime {

class FakeBackend : public RuntimeBackend {
 public:
  //! `gpus`: released when a kernel stops (as the kernel manager's on_removed
  //! does); may be null. `kernels`: where started kernels appear (a new one
  //! when null).
  explicit FakeBackend(std::shared_ptr<GpuAllocator> gpus = nullptr,
                       std::shared_ptr<kernel::FakeKernelService> kernels = nullptr)
      : gpus_(std::move(gpus)),
        kernels_(kernels ? std::move(kernels) : std::make_shared<kernel::FakeKernelService>()) {}

  Result<kernel::KernelModel> start(const StartSpec& s,
                                    const std::function<void(std::string)>& progress) override {
    progress("waiting for a machine");
    std::unique_lock lock(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
    --waiting_;
    if (s.spec == "missing") return Error::not_found("No such kernel spec: missing");
    kernel::KernelModel k;
    k.id = s.id;
    k.owner = s.owner;
    k.name = s.spec;
    k.runtime_type = s.type;
    k.launch = launch_settings(s.type, s.gpus);
    k.execution_state = kernel::KernelState::kStarting;
    kernels_->put(k);
    ++starts_;
    return k;
  }
  std::optional<kernel::KernelModel> claim_spare(const std::string& owner, const std::string& type,
                                                 const std::string& spec) override {
    std::lock_guard lock(mu_);
    if (spares_ == 0) return std::nullopt;
    --spares_;
    kernel::KernelModel k;
    k.id = "spare-" + std::to_string(spares_);
    k.owner = owner;
    k.name = spec;
    k.runtime_type = type;
    k.claimed = true;
    kernels_->put(k);
    return k;
  }
  void stop(const std::string& id, std::function<void(Status)> done) override {
    kernels_->shutdown(id, [](const Status&) {});  // a kernel already gone is stopped too
    {
      std::lock_guard lock(mu_);
      ++stops_;
    }
    if (gpus_) gpus_->release(id);
    if (done) done(ok_status());
  }
  std::vector<kernel::KernelModel> list() const override { return kernels_->list(false); }
  Result<kernel::KernelModel> get(const std::string& id) const override {
    auto k = kernels_->get(id);
    if (!k.ok()) return Error::not_found("no kernel " + id);
    return k;
  }

  //! Lets every start (waiting and later) through.
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  //! Blocks until `n` starts wait at the gate.
  void wait_for_waiting(int n) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return waiting_ >= n; });
  }
  void add_running(const std::string& id, const std::string& owner) {
    kernel::KernelModel k;
    k.id = id;
    k.owner = owner;
    kernels_->put(std::move(k));
  }
  void set_spares(int n) {
    std::lock_guard lock(mu_);
    spares_ = n;
  }
  int starts() const {
    std::lock_guard lock(mu_);
    return starts_;
  }
  int stops() const {
    std::lock_guard lock(mu_);
    return stops_;
  }
  std::size_t running() const { return kernels_->list(true).size(); }
  const std::shared_ptr<kernel::FakeKernelService>& kernels() const { return kernels_; }

 private:
  std::shared_ptr<GpuAllocator> gpus_;
  std::shared_ptr<kernel::FakeKernelService> kernels_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  int waiting_ = 0, starts_ = 0, stops_ = 0, spares_ = 0;
};

}  // namespace skylab::runtime
