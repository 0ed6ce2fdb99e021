#include "cli/usage_setup.hpp"

#include <filesystem>

#include "api/api.hpp"
#include "auth/account_store.hpp"
#include "auth/audit_log.hpp"
#include "common/log.hpp"
#include "common/util.hpp"
#include "runtime/launch.hpp"
#include "runtime/service.hpp"
#include "runtime/usage_ledger.hpp"

namespace skylab::cli {

int runtime_gpus(const runtime::Config& c, const kernel::KernelModel& k) {
  if (!runtime::gpus_of(k).empty()) return static_cast<int>(runtime::gpus_of(k).size());
  const runtime::RuntimeType* t = c.find_type(k.runtime_type);
  return t ? t->gpus + t->slurm.gpus : 0;
}

std::shared_ptr<runtime::UsageLedger> open_run_ledger(const std::string& data,
                                                      const runtime::Config& config,
                                                      const std::string& user, bool* admin,
                                                      std::string* why) {
  std::string db = (std::filesystem::path(data) / "skylab.db").string();
  auto ledger =
      runtime::UsageLedger::open(db, config.quotas, real_clock(), "run:" + util::random_hex(8));
  if (!ledger.ok()) {
    *why = ledger.error().message;
    return nullptr;
  }
  *admin = false;
  auth::AccountStoreOptions o;
  o.path = db;
  if (auto accounts = auth::AccountStore::open(o); accounts.ok())
    if (auto u = accounts.value()->find_user(user); u.ok()) *admin = u->admin;
  (*ledger)->note_admin(user, *admin);
  return ledger.value();
}

std::function<std::optional<runtime::TimePoint>(const kernel::KernelModel&)> usage_deadline_cap(
    std::shared_ptr<runtime::UsageLedger> ledger, const runtime::Config& config) {
  return [ledger, config](const kernel::KernelModel& k) -> std::optional<runtime::TimePoint> {
    if (runtime_gpus(config, k) <= 0) return std::nullopt;
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
      [config](const kernel::KernelModel& k) { return runtime_gpus(*config, k); });
  auto audit = auth::AuditLog::open(db_path);
  if (audit.ok())
    ctx.audit = audit.value();
  else
    log::error("the audit log is off: " + audit.error().message);
}

}  // namespace skylab::cli
