#include "runtime/launch.hpp"

namespace skylab::runtime {

namespace {
constexpr const char* kStateEnv = "SKYLAB_RUNTIME_STATE";
constexpr const char* kAckEnv = "SKYLAB_RUNTIME_ACK";

std::string env_of(const kernel::KernelModel& k, const char* name) {
  auto it = k.launch.env.find(name);
  return it == k.launch.env.end() ? std::string() : it->second;
}
}  // namespace

std::string visible_devices(const std::vector<int>& gpus) {
  std::string visible;
  for (int g : gpus) visible += (visible.empty() ? "" : ",") + std::to_string(g);
  return visible;
}

kernel::LaunchSettings launch_settings(const std::string& type, const std::vector<int>& gpus) {
  kernel::LaunchSettings s;
  s.devices = gpus;
  s.env[kStateEnv] = "{state_file}";
  s.env[kAckEnv] = "{ack_file}";
  if (!gpus.empty() || !type.empty()) s.env["CUDA_VISIBLE_DEVICES"] = visible_devices(gpus);
  return s;
}

const std::vector<int>& gpus_of(const kernel::KernelModel& k) {
  return k.launch.devices;
}

std::string state_file_of(const kernel::KernelModel& k) {
  return env_of(k, kStateEnv);
}

std::string ack_file_of(const kernel::KernelModel& k) {
  return env_of(k, kAckEnv);
}

}  // namespace skylab::runtime
