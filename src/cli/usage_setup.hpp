// Wiring of the usage ledger and the audit log into `skylab serve`.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "kernel/manager.hpp"
#include "runtime/config.hpp"
#include "runtime/lifecycle.hpp"

namespace skylab::api {
struct Context;
}
namespace skylab::runtime {
class UsageLedger;
}

namespace skylab::cli {

//! The lifecycle's deadline cap for GPU runtimes: when their owner's weekly
//! GPU hours run out (nullopt for runtimes without GPUs, or no limit).
std::function<std::optional<runtime::TimePoint>(const kernel::KernelModel&)> usage_deadline_cap(
    std::shared_ptr<runtime::UsageLedger> ledger, const runtime::Config& config);

//! GPUs a kernel holds: granted ones, or those Slurm allocates for its type.
int runtime_gpus(const runtime::Config& c, const kernel::KernelModel& k);

//! The ledger of one `skylab run --runtime` on `<data>/skylab.db`: a writer
//! of its own ("run:<random>"; its rows end with it), whose admission also
//! counts the server's and other runs' use, and whether `user` is an
//! administrator by its account (the "admins" group of [quotas]). Null,
//! with the reason in `why`, when the database cannot be opened.
std::shared_ptr<runtime::UsageLedger> open_run_ledger(const std::string& data,
                                                      const runtime::Config& config,
                                                      const std::string& user, bool* admin,
                                                      std::string* why);

//! Hands `ledger` to the context and its runtime service (admission checks
//! quotas), starts its thread over the service's runtimes, and opens the
//! audit log in `db_path` (a failure is logged: the server runs without it).
void start_usage(api::Context& ctx, std::shared_ptr<runtime::UsageLedger> ledger,
                 const std::string& db_path);

}  // namespace skylab::cli
