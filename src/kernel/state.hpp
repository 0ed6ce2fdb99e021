// A kernel's execution state: one enum inside the server, the Jupyter
// strings ("starting", "idle", ...) only on the wire and in JSON.
#pragma once

#include <optional>
#include <string_view>

namespace skylab::kernel {

//! The execution state of a kernel as clients see it (Jupyter's
//! `execution_state`, plus the server-side "restarting" and "dead").
enum class KernelState { kStarting, kIdle, kBusy, kRestarting, kDead };

//! The wire/JSON spelling: "starting", "idle", "busy", "restarting", "dead".
constexpr std::string_view to_string(KernelState s) {
  switch (s) {
    case KernelState::kStarting:
      return "starting";
    case KernelState::kIdle:
      return "idle";
    case KernelState::kBusy:
      return "busy";
    case KernelState::kRestarting:
      return "restarting";
    case KernelState::kDead:
      return "dead";
  }
  return "dead";
}

//! The state spelled `s` (exactly as to_string writes it); nullopt for any
//! other string (a kernel may report states the server does not track).
constexpr std::optional<KernelState> kernel_state_from_string(std::string_view s) {
  for (auto k : {KernelState::kStarting, KernelState::kIdle, KernelState::kBusy,
                 KernelState::kRestarting, KernelState::kDead})
    if (to_string(k) == s) return k;
  return std::nullopt;
}

}  // namespace skylab::kernel
