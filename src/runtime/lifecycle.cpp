#include "runtime/lifecycle.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include <nlohmann/json.hpp>

#include "common/log.hpp"
#include "common/safe_fs.hpp"
#include "common/util.hpp"
#include "runtime/launch.hpp"

namespace skylab::runtime {

LifecycleDecision evaluate(const LifecycleInput& in, TimePoint now, bool warned) {
  LifecycleDecision d;
  d.lifetime_deadline = in.started + in.max_lifetime;
  const bool quota = in.quota_deadline < d.lifetime_deadline;
  if (quota) d.lifetime_deadline = in.quota_deadline;
  const char* lifetime = quota ? "quota" : "lifetime";
  d.idle_deadline = in.busy ? TimePoint::max() : in.last_activity + in.idle_timeout;
  if (now >= d.lifetime_deadline) {
    d.action = LifecycleDecision::Action::kExpire;
    d.reason = lifetime;
  } else if (now >= d.idle_deadline) {
    d.action = LifecycleDecision::Action::kExpire;
    d.reason = "idle";
  } else if (!warned && d.deadline() != TimePoint::max() && now >= d.deadline() - in.warning) {
    d.action = LifecycleDecision::Action::kWarn;
    d.reason = d.lifetime_deadline <= d.idle_deadline ? lifetime : "idle";
  }
  return d;
}

LifecycleMonitor::LifecycleMonitor(std::shared_ptr<kernel::KernelService> kernels, Config config,
                                   const Clock& clock)
    : kernels_(std::move(kernels)), config_(std::move(config)), clock_(clock) {}

LifecycleMonitor::~LifecycleMonitor() {
  stop();
}

void LifecycleMonitor::start() {
  worker_ = std::make_unique<Periodic>(
      "runtime lifecycle", std::chrono::seconds(1), [this] { tick(); }, clock_);
}

void LifecycleMonitor::stop() {
  if (worker_) worker_->stop();
}

namespace {
double epoch(TimePoint t) {
  if (t == TimePoint::max()) return 0;
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}
std::string iso_or_null(TimePoint t) {
  return t == TimePoint::max() ? "" : util::iso_time(t);
}
}  // namespace

namespace {
const RuntimeType& type_of(const Config& c, const kernel::KernelModel& k) {
  const RuntimeType* t = c.find_type(k.runtime_type);
  return t ? *t : c.types.begin()->second;
}

void write_state_file(const kernel::KernelModel& k, const LifecycleDecision& d, bool expire,
                      const std::string& reason) {
  const std::string state_file = state_file_of(k);
  if (state_file.empty()) return;
  nlohmann::json s = {{"lifetime_deadline", epoch(d.lifetime_deadline)},
                      {"idle_deadline", d.idle_deadline == TimePoint::max()
                                            ? nlohmann::json(nullptr)
                                            : nlohmann::json(epoch(d.idle_deadline))},
                      {"expire", expire},
                      {"reason", reason}};
  // Fd-relative, random temporary name, never through a symlink (the file
  // sits in a root-owned directory when sandboxed, but make no assumption).
  auto st = safe_fs::write_file(state_file, s.dump(), 0644, false);
  if (!st.ok())
    log::warn("runtime " + k.id + ": cannot write its state file: " + st.error().message);
}
}  // namespace

void write_initial_state(const Config& config, const kernel::KernelModel& k, TimePoint now) {
  const RuntimeType& type = type_of(config, k);
  LifecycleInput in{k.started,
                    std::max(k.last_activity, now),
                    false,
                    config.idle_timeout(type),
                    config.max_lifetime(type),
                    config.runtimes.warning};
  write_state_file(k, evaluate(in, now, true), false, "");
}

void LifecycleMonitor::write_state(const kernel::KernelModel& k, const LifecycleDecision& d,
                                   bool expire, const std::string& reason) {
  write_state_file(k, d, expire, reason);
}

void LifecycleMonitor::send_event(const std::string& kernel_id, const std::string& event,
                                  const LifecycleDecision& d) {
  auto left =
      std::chrono::duration_cast<std::chrono::seconds>(d.deadline() - clock_.wall()).count();
  // A kernel that has just gone has nobody to tell.
  (void)kernels_->notify(kernel_id, "skylab_runtime_event",
                         {{"event", event},
                          {"reason", d.reason},
                          {"deadline", iso_or_null(d.deadline())},
                          {"seconds_left", std::max<long long>(0, left)}});
}

void LifecycleMonitor::tick() {
  auto now = clock_.wall();
  std::map<std::string, Tracked> next;
  for (auto& k : kernels_->list()) {
    Tracked t = tracked_.count(k.id) ? tracked_[k.id] : Tracked{};
    const RuntimeType& type = type_of(config_, k);
    LifecycleInput in{k.started,
                      k.last_activity,
                      k.execution_state == kernel::KernelState::kBusy,
                      config_.idle_timeout(type),
                      config_.max_lifetime(type),
                      config_.runtimes.warning};
    if (cap_)
      if (auto cap = cap_(k)) in.quota_deadline = *cap;

    if (t.expiring) {
      // Hooks asked to run: shut down once they are done or the grace period is over.
      // The marker is the kernel's: looked at (lstat), never opened or followed.
      struct stat ack {};
      const std::string ack_file = ack_file_of(k);
      bool done = !ack_file.empty() && ::lstat(ack_file.c_str(), &ack) == 0;
      if (done || now - t.expire_started >= config_.runtimes.grace) {
        log::info("runtime " + k.id + ": stopping (" +
                  (done ? "expiry hooks done" : "grace period over") + ")");
        kernels_->shutdown(k.id, [](const Status&) {});
      }
      next[k.id] = t;
      continue;
    }
    // A new deadline (activity moved it) re-arms the warning.
    auto d = evaluate(in, now, false);
    if (t.warned && d.deadline() > t.warned_deadline + std::chrono::seconds(1)) t.warned = false;
    d = evaluate(in, now, t.warned);
    if (k.execution_state == kernel::KernelState::kDead &&
        d.action != LifecycleDecision::Action::kExpire) {
      next[k.id] = t;
      continue;
    }
    switch (d.action) {
      case LifecycleDecision::Action::kExpire:
        log::info("runtime " + k.id + ": " +
                  (d.reason == "idle"    ? "idle timeout"
                   : d.reason == "quota" ? "weekly GPU quota"
                                         : "maximum lifetime") +
                  " reached; running expiry hooks");
        log::record(log::Level::kInfo, "runtime",
                    {{"event", "expiring"},
                     {"id", k.id},
                     {"user", k.owner},
                     {"type", k.runtime_type},
                     {"reason", d.reason == "idle" ? "idle timeout" : "maximum lifetime"}});
        write_state(k, d, true, d.reason);
        send_event(k.id, "expiring", d);
        t.expiring = true;
        t.expire_started = now;
        if (k.execution_state == kernel::KernelState::kDead)
          kernels_->shutdown(k.id, [](const Status&) {});
        break;
      case LifecycleDecision::Action::kWarn:
        write_state(k, d, false, d.reason);
        send_event(k.id, "warning", d);
        t.warned = true;
        t.warned_deadline = d.deadline();
        break;
      case LifecycleDecision::Action::kNone:
        write_state(k, d, false, "");
        break;
    }
    next[k.id] = t;
  }
  tracked_.swap(next);
}

}  // namespace skylab::runtime
