// The runtime notions of a kernel: its GPUs, its runtime state file, and the
// environment they make. The kernel layer carries them as generic
// LaunchSettings (devices, env) and never interprets them; this is where
// they are made and read back.
#pragma once

#include <string>
#include <vector>

#include "kernel/launcher.hpp"
#include "kernel/manager.hpp"

namespace skylab::runtime {

//! The owner of a runtime started for anyone (the instant pool, WarmPool),
//! until a user claims it (SandboxLauncher::assign). Never a valid username.
inline constexpr const char* kAnyone = "@anyone";

//! CUDA_VISIBLE_DEVICES for `gpus`: "0,1"; "" for none.
std::string visible_devices(const std::vector<int>& gpus);

//! The one place a runtime's launch is made: `gpus` as the devices, and in
//! the environment SKYLAB_RUNTIME_STATE and SKYLAB_RUNTIME_ACK (the kernel's
//! state and ack files) and CUDA_VISIBLE_DEVICES (the granted GPUs; "" for a
//! runtime without GPUs; left alone for a plain kernel, with neither a
//! runtime `type` nor GPUs).
kernel::LaunchSettings launch_settings(const std::string& type, const std::vector<int>& gpus);

//! The GPUs granted to the kernel `k` (as launch_settings put them).
const std::vector<int>& gpus_of(const kernel::KernelModel& k);

//! The runtime state file of `k` (SKYLAB_RUNTIME_STATE, which skylab.runtime
//! reads; the kernel can read but not write it); "" when it has none.
std::string state_file_of(const kernel::KernelModel& k);

//! Where the kernel `k`'s expiry hooks say they are done (SKYLAB_RUNTIME_ACK);
//! "" when it has none. Kernel-writable: look at it with lstat only, never
//! open it as root.
std::string ack_file_of(const kernel::KernelModel& k);

}  // namespace skylab::runtime
