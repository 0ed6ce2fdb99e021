// The runtime notions of a kernel as the kernel layer carries them
// (LaunchSettings) and as the kernel's environment ends up with them.
#include "runtime/launch.hpp"

#include <gtest/gtest.h>

#include "kernel/process.hpp"

namespace skylab::runtime {
namespace {

std::map<std::string, std::string> env_of(std::vector<std::string> base,
                                          const kernel::LaunchSettings& s) {
  std::vector<char*> ptrs;
  for (auto& e : base) ptrs.push_back(e.data());
  ptrs.push_back(nullptr);
  kernel::KernelEnvInput in;
  in.launch_env = s.env;
  return kernel::kernel_environment(ptrs.data(), in);
}

TEST(LaunchSettings, NameTheStateAndAckFilesForTheManagerToFillIn) {
  auto s = launch_settings("", {});
  EXPECT_EQ(s.env["SKYLAB_RUNTIME_STATE"], "{state_file}");
  EXPECT_EQ(s.env["SKYLAB_RUNTIME_ACK"], "{ack_file}");
  EXPECT_TRUE(s.devices.empty());
  // A plain kernel keeps the server's CUDA_VISIBLE_DEVICES (none here).
  EXPECT_EQ(env_of({}, s).count("CUDA_VISIBLE_DEVICES"), 0u);
}

TEST(LaunchSettings, CudaVisibleDevicesListsTheGrantedGpusOnly) {
  auto s = launch_settings("gpu", {2, 0});
  EXPECT_EQ(s.devices, (std::vector<int>{2, 0}));
  EXPECT_EQ(env_of({"CUDA_VISIBLE_DEVICES=0,1,2,3"}, s)["CUDA_VISIBLE_DEVICES"], "2,0");
  auto env = env_of({"CUDA_VISIBLE_DEVICES=0,1,2,3"}, launch_settings("cpu", {}));
  ASSERT_EQ(env.count("CUDA_VISIBLE_DEVICES"), 1u);
  EXPECT_EQ(env["CUDA_VISIBLE_DEVICES"], "");  // a runtime without GPUs sees none
}

TEST(LaunchSettings, AreReadBackFromTheKernelModel) {
  kernel::KernelModel k;
  EXPECT_EQ(state_file_of(k), "");
  EXPECT_EQ(ack_file_of(k), "");
  EXPECT_TRUE(gpus_of(k).empty());
  k.launch = launch_settings("gpu", {1});
  k.launch.env["SKYLAB_RUNTIME_STATE"] = "/run/state/k1/state.json";  // as start() fills it in
  EXPECT_EQ(state_file_of(k), "/run/state/k1/state.json");
  EXPECT_EQ(gpus_of(k), (std::vector<int>{1}));
  EXPECT_EQ(visible_devices({}), "");
  EXPECT_EQ(visible_devices({3, 1}), "3,1");
}

}  // namespace
}  // namespace skylab::runtime
