#include "cli/usage_setup.hpp"

#include "api/api.hpp"
#include "auth/audit_log.hpp"
#include "common/log.hpp"
#include "runtime/launch.hpp"
#include "runtime/service.hpp"
#include "runtime/usage_ledger.hpp"

namespace skylab::cli {

namespace {
//! GPUs a kernel holds: granted ones, or those Slurm allocates for its type.
int gpus_of(const runtime::Config& c, const kernel::KernelModel& k) {
  if (!runtime::gpus_of(k).empty()) return static_cast<int>(runtime::gpus_of(k).size());
  const runtime::RuntimeType* t = c.find_type(k.runtime_type);
  return t ? t->gpus + t->slurm.gpus : 0;
}
}  // namespace

std::function<std::optional<runtime::TimePoint>(const kernel::KernelModel&)> usage_deadline_cap(
    std::shared_ptr<runtime::UsageLedger> ledger, const runtime::Config& config) {
  return [ledger, config](const kernel::KernelModel& k) -> std::optional<runtime::TimePoint> {
    if (gpus_of(config, k) <= 0) return std::nullopt;
    return ledger->gpu_deadline(k.owner);
  };
}

void start_usage(api::Context& ctx, std::shared_ptr<runtime::UsageLedger> ledger,
                 const std::string& db_path) {
  ctx.ledger = ledger;
  ctx.runtimes->set_ledger(ledger);
  std::weak_ptr<runtime::RuntimeService> service = ctx.runtimes;
  auto config = ctx.runtime_config;
  ledger->start(
      [service] {
        auto s = service.lock();
        return s ? s->backend().list() : std::vector<kernel::KernelModel>{};
      },
      [config](const kernel::KernelModel& k) { return gpus_of(*config, k); });
  auto audit = auth::AuditLog::open(db_path);
  if (audit.ok())
    ctx.audit = audit.value();
  else
    log::error("the audit log is off: " + audit.error().message);
}

}  // namespace skylab::cli
