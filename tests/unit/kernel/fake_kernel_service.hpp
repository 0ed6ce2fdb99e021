// A KernelService that keeps kernels in a map and records what was asked of
// it: for tests of api/, runtime/ and exec/ code without processes or
// sockets. Observers are kept as the manager keeps them; a test plays the
// kernel with emit() (its messages reach every observer) and answers what is
// sent or interrupted through on_send()/on_interrupt().
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kernel/manager.hpp"

namespace skylab::kernel {

class FakeKernelService final : public KernelService {
 public:
  //! Adds (or replaces) a kernel as list()/get() show it.
  //! start() fails from now on (or works again); start_calls() counts every call.
  void fail_starts(bool fail) {
    std::lock_guard lock(mu_);
    fail_starts_ = fail;
  }
  int start_calls() const {
    std::lock_guard lock(mu_);
    return start_calls_;
  }
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
  //! (kernel id, channel, message) of every successful send(), in order.
  std::vector<std::tuple<std::string, Channel, Message>> sent() const {
    std::lock_guard lock(mu_);
    return sent_;
  }
  int interrupts() const {
    std::lock_guard lock(mu_);
    return interrupts_;
  }
  std::size_t observer_count(const std::string& id) const {
    std::lock_guard lock(mu_);
    auto it = observers_.find(id);
    return it == observers_.end() ? 0 : it->second.size();
  }
  //! Called after each successful send(), outside the lock, on the sender's
  //! thread: the test's kernel may emit() its answer from here.
  void on_send(std::function<void(const std::string& id, Channel, const Message&)> f) {
    std::lock_guard lock(mu_);
    on_send_ = std::move(f);
  }
  //! Called after each successful interrupt(), outside the lock.
  void on_interrupt(std::function<void(const std::string& id)> f) {
    std::lock_guard lock(mu_);
    on_interrupt_ = std::move(f);
  }
  void set_state(const std::string& id, KernelState state) {
    std::lock_guard lock(mu_);
    if (auto it = kernels_.find(id); it != kernels_.end()) it->second.execution_state = state;
  }
  //! The kernel sends `msg` on `ch`: every observer of `id` gets it, on
  //! this thread, as the manager's I/O thread would call them.
  void emit(const std::string& id, Channel ch, Message msg) {
    auto info = inspect(msg);
    if (!info.ok()) throw std::invalid_argument("emit: " + info.error().message);
    auto shared = std::make_shared<const Message>(std::move(msg));
    for (auto& o : observers_of(id)) o->on_kernel_message(ch, shared, info.value());
  }
  //! The kernel is gone (as after a shutdown): removed, observers told.
  void remove(const std::string& id) {
    std::vector<std::shared_ptr<KernelObserver>> told;
    {
      std::lock_guard lock(mu_);
      kernels_.erase(id);
      if (auto it = observers_.find(id); it != observers_.end()) {
        told = std::move(it->second);
        observers_.erase(it);
      }
    }
    for (auto& o : told) o->on_kernel_removed();
  }

  Result<KernelModel> start(const std::string& spec, const std::string& owner,
                            const StartOptions& o) override {
    std::lock_guard lock(mu_);
    ++start_calls_;
    if (fail_starts_) return Error::unavailable("starts fail (test)");
    KernelModel k;
    k.id = o.kernel_id.empty() ? "k" + std::to_string(kernels_.size() + 1) : o.kernel_id;
    k.name = spec;
    k.owner = owner;
    k.runtime_type = o.runtime_type;
    k.launch = o.launch;
    k.reserved = o.reserved;
    if (o.reserved && o.for_anyone) for_anyone_.insert(k.id);
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
  Result<KernelModel> claim(const std::string& id, const std::string& owner) override {
    std::lock_guard lock(mu_);
    auto it = kernels_.find(id);
    if (it == kernels_.end() || !it->second.reserved)
      return Error::not_found("no such spare: " + id);
    if (it->second.owner != owner && !for_anyone_.count(id))
      return Error::not_found("no such spare: " + id);
    for_anyone_.erase(id);
    it->second.owner = owner;
    it->second.reserved = false;
    it->second.claimed = true;
    return it->second;
  }
  Status interrupt(const std::string& id) override {
    std::function<void(const std::string&)> hook;
    {
      std::lock_guard lock(mu_);
      if (!kernels_.count(id)) return Error::not_found("Kernel does not exist: " + id);
      ++interrupts_;
      hook = on_interrupt_;
    }
    if (hook) hook(id);
    return ok_status();
  }
  void restart(const std::string& id, std::function<void(Result<KernelModel>)> done) override {
    done(get(id));
  }
  void shutdown(const std::string& id, std::function<void(Status)> done) override {
    {
      std::lock_guard lock(mu_);
      shutdowns_.push_back(id);
      if (!kernels_.count(id)) return done(Error::not_found("Kernel does not exist: " + id));
    }
    remove(id);
    done(ok_status());
  }
  void shutdown_all() override {
    std::lock_guard lock(mu_);
    kernels_.clear();
  }
  void when_ready(const std::string& id, std::function<void(Result<KernelModel>)> done) override {
    done(get(id));
  }
  Status send(const std::string& id, Channel ch, Message msg) override {
    std::function<void(const std::string&, Channel, const Message&)> hook;
    {
      std::lock_guard lock(mu_);
      if (!kernels_.count(id)) return Error::not_found("Kernel does not exist: " + id);
      sent_.emplace_back(id, ch, msg);
      hook = on_send_;
    }
    if (hook) hook(id, ch, msg);
    return ok_status();
  }
  Status add_observer(const std::string& id, std::shared_ptr<KernelObserver> observer) override {
    std::lock_guard lock(mu_);
    if (!kernels_.count(id)) return Error::not_found("Kernel does not exist: " + id);
    auto& list = observers_[id];
    if (std::find(list.begin(), list.end(), observer) == list.end())
      list.push_back(std::move(observer));
    return ok_status();
  }
  void remove_observer(const std::string& id, const KernelObserver* observer) override {
    std::lock_guard lock(mu_);
    auto it = observers_.find(id);
    if (it == observers_.end()) return;
    std::erase_if(it->second, [&](const auto& o) { return o.get() == observer; });
  }
  Status notify(const std::string& id, const std::string& type,
                const nlohmann::json& content) override {
    std::lock_guard lock(mu_);
    if (!kernels_.count(id)) return Error::not_found("Kernel does not exist: " + id);
    notes_.emplace_back(id, type, content);
    return ok_status();
  }
  void add_connections(const std::string& id, int delta) override {
    std::lock_guard lock(mu_);
    if (auto it = kernels_.find(id); it != kernels_.end()) it->second.connections += delta;
  }
  void touch(const std::string&) override {}
  std::chrono::system_clock::time_point last_activity() const override { return {}; }

 private:
  Status exists(const std::string& id) const {
    std::lock_guard lock(mu_);
    return kernels_.count(id) ? ok_status()
                              : Status(Error::not_found("Kernel does not exist: " + id));
  }
  std::vector<std::shared_ptr<KernelObserver>> observers_of(const std::string& id) const {
    std::lock_guard lock(mu_);
    auto it = observers_.find(id);
    return it == observers_.end() ? std::vector<std::shared_ptr<KernelObserver>>{} : it->second;
  }
  mutable std::mutex mu_;
  std::map<std::string, KernelModel> kernels_;
  std::set<std::string> for_anyone_;
  bool fail_starts_ = false;
  int start_calls_ = 0;  // started for anyone: claim() gives them an owner
  std::vector<std::string> shutdowns_;
  std::vector<std::tuple<std::string, std::string, nlohmann::json>> notes_;
  std::map<std::string, std::vector<std::shared_ptr<KernelObserver>>> observers_;
  std::vector<std::tuple<std::string, Channel, Message>> sent_;
  int interrupts_ = 0;
  std::function<void(const std::string&, Channel, const Message&)> on_send_;
  std::function<void(const std::string&)> on_interrupt_;
};

}  // namespace skylab::kernel
