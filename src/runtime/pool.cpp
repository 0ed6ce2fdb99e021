#include "runtime/pool.hpp"

#include <algorithm>
#include <set>

#include "common/log.hpp"
#include "common/mutex.hpp"
#include "runtime/launch.hpp"

namespace skylab::runtime {

namespace {
// The kernelspec the template serves (template_can_serve checks its command).
constexpr const char* kInstantSpec = "python3";
// After a runtime for anyone failed to start, the next try waits this long.
constexpr auto kInstantRetry = std::chrono::seconds(30);
}  // namespace

WarmPool::WarmPool(std::shared_ptr<kernel::KernelService> kernels, Config config,
                   std::function<bool(const std::string&)> user_enabled, const skylab::Clock& clock)
    : kernels_(std::move(kernels)),
      config_(std::move(config)),
      user_enabled_(std::move(user_enabled)),
      size_(config_.runtimes.warm_pool),
      instant_(config_.runtimes.instant),
      clock_(clock) {}

void WarmPool::set_instant_source(InstantSource source) {
  instant_source_ = std::move(source);
}

std::map<std::string, std::string> WarmPool::instant_sources() const {
  std::map<std::string, std::string> out;
  if (!instant_source_) return out;
  for (auto& [name, _] : config_.types)
    if (instant_type(name)) out[name] = instant_source_(name);
  return out;
}

WarmPool::~WarmPool() {
  stop();
}

bool WarmPool::poolable(const std::string& type) const {
  const RuntimeType* t = config_.find_type(type);
  // No spares of cluster types: a spare would hold a Slurm job (a node's
  // CPUs, GPUs and the user's fair share) for nobody.
  return size_ > 0 && t && t->gpus == 0 && t->backend == Backend::kLocal;
}

bool WarmPool::instant_type(const std::string& type) const {
  auto it = config_.types.find(type);
  return instant_ > 0 && it != config_.types.end() && it->second.gpus == 0 &&
         it->second.backend == Backend::kLocal;
}

std::optional<kernel::KernelModel> WarmPool::take_instant(const std::string& owner,
                                                          const Key& key) {
  std::string source = instant_source_ ? instant_source_(std::get<1>(key)) : "";
  if (source.empty()) return std::nullopt;  // its template is down: the usual start
  std::vector<std::string> ids;
  {
    MutexLock lock(mutex_);
    if (stopping_) return std::nullopt;
    auto it = entries_.find(key);
    if (it == entries_.end()) return std::nullopt;
    // Only those forked from the template as it is now (the tick replaces the others).
    for (auto& id : it->second.spares)
      if (it->second.source[id] == source) ids.push_back(id);
    if (worker_) worker_->wake();  // refill in the background
  }
  std::set<std::string> idle;
  for (auto& k : kernels_->list(true))
    if (k.reserved && k.execution_state == kernel::KernelState::kIdle) idle.insert(k.id);
  for (auto& id : ids) {
    if (!idle.count(id)) continue;  // still starting (or dead: the tick drops it)
    {
      MutexLock lock(mutex_);
      auto& sp = entries_[key].spares;
      auto pos = std::find(sp.begin(), sp.end(), id);
      if (pos == sp.end()) continue;  // another user's request took it
      sp.erase(pos);
    }
    auto m = kernels_->claim(id, owner);
    if (m.ok()) return m.value();
    // Not for this user (their own packages shadow the preloaded ones, ...):
    // the kernel is gone; they start the usual way rather than spend the pool.
    log::info("instant pool: " + owner + " starts the usual way: " + m.error().message);
    return std::nullopt;
  }
  return std::nullopt;
}

std::optional<kernel::KernelModel> WarmPool::take(const std::string& owner, const std::string& type,
                                                  const std::string& spec) {
  auto got = take_own(owner, type, spec);
  if (got || owner == kAnyone) return got;
  std::string name = config_.type_name(type);
  if (instant_type(name)) got = take_instant(owner, Key{kAnyone, name, spec});
  return got;
}

std::optional<kernel::KernelModel> WarmPool::take_own(const std::string& owner,
                                                      const std::string& type,
                                                      const std::string& spec) {
  if (!poolable(type)) return std::nullopt;
  Key key{owner, config_.type_name(type), spec};
  std::vector<std::string> ids;
  {
    MutexLock lock(mutex_);
    if (stopping_) return std::nullopt;
    auto& e = entries_[key];
    e.last_used = clock_.now();
    ids = e.spares;
    if (worker_) worker_->wake();  // refill (or start filling) in the background
  }
  if (ids.empty()) return std::nullopt;
  std::map<std::string, kernel::KernelState> state;
  for (auto& k : kernels_->list(true))
    if (k.reserved) state[k.id] = k.execution_state;
  // Ready spares first, then ones still starting (further along than a new kernel).
  std::stable_partition(ids.begin(), ids.end(), [&](const std::string& id) {
    auto it = state.find(id);
    return it != state.end() && it->second == kernel::KernelState::kIdle;
  });
  std::vector<std::string> bad;
  std::optional<kernel::KernelModel> got;
  for (auto& id : ids) {
    auto it = state.find(id);
    if (it == state.end() || it->second == kernel::KernelState::kDead) {
      bad.push_back(id);
      continue;
    }
    {
      // Another request of the same user may be claiming it right now.
      MutexLock lock(mutex_);
      auto& sp = entries_[key].spares;
      auto pos = std::find(sp.begin(), sp.end(), id);
      if (pos == sp.end()) continue;
      sp.erase(pos);
    }
    auto m = kernels_->claim(id, owner);
    if (m.ok()) {
      got = m.value();
      break;
    }
    bad.push_back(id);
  }
  if (!bad.empty()) {
    {
      MutexLock lock(mutex_);
      auto& sp = entries_[key].spares;
      for (auto& id : bad) sp.erase(std::remove(sp.begin(), sp.end(), id), sp.end());
    }
    shutdown_ids(bad);
  }
  return got;
}

int WarmPool::ready(const std::string& owner, const std::string& type) const {
  const std::string name = config_.type_name(type);
  std::vector<std::string> ids;
  {
    MutexLock lock(mutex_);
    for (auto& [key, e] : entries_)
      if (std::get<0>(key) == owner && std::get<1>(key) == name)
        ids.insert(ids.end(), e.spares.begin(), e.spares.end());
  }
  if (ids.empty()) return 0;
  std::set<std::string> mine(ids.begin(), ids.end());
  int n = 0;
  for (auto& k : kernels_->list(true))
    n += k.reserved && mine.count(k.id) && k.execution_state == kernel::KernelState::kIdle;
  return n;
}

void WarmPool::release_user(const std::string& owner) {
  std::vector<std::string> ids;
  {
    MutexLock lock(mutex_);
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (std::get<0>(it->first) == owner) {
        ids.insert(ids.end(), it->second.spares.begin(), it->second.spares.end());
        it = entries_.erase(it);
      } else {
        ++it;
      }
    }
  }
  if (!ids.empty())
    log::info("warm pool: releasing " + std::to_string(ids.size()) + " spare(s) of " + owner);
  shutdown_ids(ids);
}

void WarmPool::shutdown_ids(const std::vector<std::string>& ids) {
  for (auto& id : ids) kernels_->shutdown(id, [](const Status&) {});
}

void WarmPool::tick() {
  auto sources = instant_sources();  // (before the lock: it asks the templates)
  std::map<std::string, kernel::KernelModel> all;
  bool user_starting = false, spare_starting = false;
  for (auto& k : kernels_->list(true)) {
    if (k.execution_state == kernel::KernelState::kStarting)
      (k.reserved ? spare_starting : user_starting) = true;
    all[k.id] = std::move(k);
  }
  auto now = clock_.now();
  std::vector<std::string> drop;
  std::set<std::string> owners;
  std::optional<Key> fill;
  {
    MutexLock lock(mutex_);
    if (stopping_) return;
    // The instant pool's keys: always wanted, for the default kernelspec.
    for (auto& [name, _] : config_.types)
      if (instant_type(name)) entries_[Key{kAnyone, name, kInstantSpec}].last_used = now;
    for (auto it = entries_.begin(); it != entries_.end();) {
      auto& [key, e] = *it;
      // Dead spares go; claimed ones are no longer ours.
      std::vector<std::string> keep;
      bool anyone = std::get<0>(key) == kAnyone;
      const std::string& source = sources[std::get<1>(key)];
      for (auto& id : e.spares) {
        auto k = all.find(id);
        if (k == all.end() || !k->second.reserved) continue;
        // Made from a template that has been replaced since (new packages): replaced too.
        bool stale = anyone && !source.empty() && e.source[id] != source;
        if (k->second.execution_state == kernel::KernelState::kDead || stale)
          drop.push_back(id);
        else
          keep.push_back(id);
      }
      e.spares.swap(keep);
      for (auto s = e.source.begin(); s != e.source.end();)
        s = std::find(e.spares.begin(), e.spares.end(), s->first) == e.spares.end()
                ? e.source.erase(s)
                : std::next(s);
      auto t = config_.types.find(std::get<1>(key));
      auto keep_for = t != config_.types.end() ? config_.idle_timeout(t->second)
                                               : config_.runtimes.idle_timeout;
      if (now - e.last_used > keep_for) {
        // Nobody started one of these for a while: give the memory back.
        drop.insert(drop.end(), e.spares.begin(), e.spares.end());
        it = entries_.erase(it);
        continue;
      }
      if (!anyone) owners.insert(std::get<0>(key));
      int want = anyone ? instant_ : size_;
      bool can = !anyone || (!source.empty() && now >= instant_retry_[std::get<1>(key)]);
      if (!fill && can && static_cast<int>(e.spares.size()) < want) fill = key;
      ++it;
    }
  }
  shutdown_ids(drop);
  if (user_enabled_)
    for (auto& o : owners)
      if (!user_enabled_(o)) release_user(o);
  // One spare at a time, and never while a user's own kernel is booting:
  // a spare must not slow down the start it exists to avoid.
  if (!fill || user_starting || spare_starting) return;
  auto& [owner, type, spec] = *fill;
  bool anyone = owner == kAnyone;
  if (!anyone && user_enabled_ && !user_enabled_(owner)) return;
  kernel::StartOptions so;
  so.runtime_type = type;
  so.launch = launch_settings(type, {});
  so.reserved = true;
  so.for_anyone = anyone;
  auto k = kernels_->start(spec, owner, so);
  if (!k.ok()) {
    log::warn("warm pool: cannot start a spare for " + owner + " (" + type +
              "): " + k.error().message);
    MutexLock lock(mutex_);
    if (anyone) instant_retry_[type] = clock_.now() + kInstantRetry;
    entries_.erase(*fill);  // retried at the user's next start
    return;
  }
  bool orphan = false;
  {
    MutexLock lock(mutex_);
    auto it = entries_.find(*fill);
    if (it == entries_.end() || stopping_) {
      orphan = true;
    } else {
      it->second.spares.push_back(k->id);
      if (anyone) it->second.source[k->id] = sources[type];
    }
  }
  if (orphan) shutdown_ids({k->id});
}

void WarmPool::start() {
  if (size_ <= 0 && instant_ <= 0) return;
  MutexLock lock(mutex_);
  if (stopping_ || worker_) return;
  worker_ = std::make_unique<Periodic>(
      "warm pool", std::chrono::milliseconds(500), [this] { tick(); }, clock_);
}

void WarmPool::stop() {
  std::vector<std::string> ids;
  {
    MutexLock lock(mutex_);
    if (stopped_) return;
    stopping_ = stopped_ = true;
    for (auto& [_, e] : entries_) ids.insert(ids.end(), e.spares.begin(), e.spares.end());
    entries_.clear();
  }
  // worker_ is set only under mutex_ and only before stopping_; from here on it does not change.
  if (worker_) worker_->stop();
  // Spares started by a tick that raced with stop are caught by list(true).
  for (auto& k : kernels_->list(true))
    if (k.reserved && std::find(ids.begin(), ids.end(), k.id) == ids.end()) ids.push_back(k.id);
  if (ids.empty()) return;
  auto m = std::make_shared<Mutex>();
  auto cv = std::make_shared<CondVar>();
  auto left = std::make_shared<std::size_t>(ids.size());
  for (auto& id : ids)
    kernels_->shutdown(id, [m, cv, left](const Status&) {
      MutexLock l(*m);
      if (--*left == 0) cv->notify_all();
    });
  MutexLock l(*m);
  cv->wait_for(l, std::chrono::seconds(10), [&] { return *left == 0; });
}

}  // namespace skylab::runtime
