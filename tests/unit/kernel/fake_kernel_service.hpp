// A KernelService that keeps kernels in a map and records what was asked of
// it: for tests of api/ and runtime/ code without processes or sockets.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kernel/manager.hpp"

namespace skylab::kernel {

class FakeKernelService final : public KernelService {
 public:
  //! Adds (or replaces) a kernel as list()/get() show it.
  void put(KernelModel k) {
    std::lock_guard lock(mu_);
    kernels_[k.id] = std::move(k);
  }
  std::vector<std::string> shutdowns() const {
    std::lock_guard lock(mu_);
    return shutdowns_;
  }
  //! (kernel id, msg_type, content) of every notify().
  std::vector<std::tuple<std::string, std::string, nlohmann::json>> notes() const {
    std::lock_guard lock(mu_);
    return notes_;
  }

  Result<KernelModel> start(const std::string& spec, const std::string& owner,
                            const StartOptions& o) override {
    std::lock_guard lock(mu_);
    KernelModel k;
    k.id = o.kernel_id.empty() ? "k" + std::to_string(kernels_.size() + 1) : o.kernel_id;
    k.name = spec;
    k.owner = owner;
    k.runtime_type = o.runtime_type;
    k.launch = o.launch;
    k.reserved = o.reserved;
    kernels_[k.id] = k;
    return k;
  }
  std::vector<KernelModel> list(bool include_reserved) const override {
    std::lock_guard lock(mu_);
    std::vector<KernelModel> out;
    for (auto& [_, k] : kernels_)
      if (include_reserved || !k.reserved) out.push_back(k);
    return out;
  }
  Result<KernelModel> get(const std::string& id) const override {
    std::lock_guard lock(mu_);
    auto it = kernels_.find(id);
    if (it == kernels_.end() || it->second.reserved)
      return Error::not_found("Kernel does not exist: " + id);
    return it->second;
  }
  Result<KernelModel> claim(const std::string& id) override {
    std::lock_guard lock(mu_);
    auto it = kernels_.find(id);
    if (it == kernels_.end() || !it->second.reserved)
      return Error::not_found("no such spare: " + id);
    it->second.reserved = false;
    it->second.claimed = true;
    return it->second;
  }
  Status interrupt(const std::string& id) override { return exists(id); }
  void restart(const std::string& id, std::function<void(Result<KernelModel>)> done) override {
    done(get(id));
  }
  void shutdown(const std::string& id, std::function<void(Status)> done) override {
    {
      std::lock_guard lock(mu_);
      shutdowns_.push_back(id);
      if (!kernels_.erase(id)) return done(Error::not_found("Kernel does not exist: " + id));
    }
    done(ok_status());
  }
  void shutdown_all() override {
    std::lock_guard lock(mu_);
    kernels_.clear();
  }
  void when_ready(const std::string& id, std::function<void(Result<KernelModel>)> done) override {
    done(get(id));
  }
  Status send(const std::string& id, Channel, Message) override { return exists(id); }
  Status add_observer(const std::string& id, std::shared_ptr<KernelObserver>) override {
    return exists(id);
  }
  void remove_observer(const std::string&, const KernelObserver*) override {}
  Status notify(const std::string& id, const std::string& type,
                const nlohmann::json& content) override {
    std::lock_guard lock(mu_);
    if (!kernels_.count(id)) return Error::not_found("Kernel does not exist: " + id);
    notes_.emplace_back(id, type, content);
    return ok_status();
  }
  void add_connections(const std::string&, int) override {}
  void touch(const std::string&) override {}
  std::chrono::system_clock::time_point last_activity() const override { return {}; }

 private:
  Status exists(const std::string& id) const {
    std::lock_guard lock(mu_);
    return kernels_.count(id) ? ok_status()
                              : Status(Error::not_found("Kernel does not exist: " + id));
  }
  mutable std::mutex mu_;
  std::map<std::string, KernelModel> kernels_;
  std::vector<std::string> shutdowns_;
  std::vector<std::tuple<std::string, std::string, nlohmann::json>> notes_;
};

}  // namespace skylab::kernel
