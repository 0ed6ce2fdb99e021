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

//! Hands `ledger` to the context and its runtime service (admission checks
//! quotas), starts its thread over the service's runtimes, and opens the
//! audit log in `db_path` (a failure is logged: the server runs without it).
void start_usage(api::Context& ctx, std::shared_ptr<runtime::UsageLedger> ledger,
                 const std::string& db_path);

}  // namespace skylab::cli
