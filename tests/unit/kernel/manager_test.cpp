// KernelManager with a stand-in kernel (`sleep`: a process that never
// answers): what it does with the starter's LaunchSettings and reserved
// kernels, without ipykernel.
#include "kernel/manager.hpp"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include "temp_dir.hpp"

namespace skylab::kernel {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class ManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir / "kernels" / "sleeper");
    std::ofstream(dir / "kernels" / "sleeper" / "kernel.json")
        << R"({"argv": ["sleep", "60"], "display_name": "Sleeper", "language": "none"})";
    specs = std::make_shared<KernelSpecStore>(std::vector<std::string>{(dir / "kernels").string()},
                                              "python3");
    mo.runtime_dir = (dir / "run").string();
    mo.shutdown_wait = 100ms;
  }
  TempDir tmp{"skylab-manager"};
  fs::path dir = tmp.path();
  std::shared_ptr<KernelSpecStore> specs;
  ManagerOptions mo;
};

TEST_F(ManagerTest, LaunchEnvNamesTheKernelsFilesAndReachesItsProcess) {
  std::vector<KernelModel> hooked;
  mo.on_started = [&](const KernelModel& k) { hooked.push_back(k); };
  KernelManager km(mo, specs);
  StartOptions so;
  so.launch.env = {{"MY_STATE", "{state_file}"}, {"MY_ACK", "{ack_file}"}, {"PLAIN", "x"}};
  so.launch.devices = {3};
  auto k = km.start("sleeper", "ann", so);
  ASSERT_TRUE(k.ok()) << k.error().message;
  const std::string state =
      (fs::path(mo.runtime_dir) / ("kernel-" + k->id + ".state.json")).string();
  EXPECT_EQ(k->launch.env.at("MY_STATE"), state);
  EXPECT_EQ(k->launch.env.at("MY_ACK"), state + ".done");
  EXPECT_EQ(k->launch.env.at("PLAIN"), "x");
  EXPECT_EQ(k->launch.devices, std::vector<int>{3});
  // The hook sees the paths before the process exists.
  ASSERT_EQ(hooked.size(), 1u);
  EXPECT_EQ(hooked[0].launch.env.at("MY_STATE"), state);

  std::string env_text = read("/proc/" + std::to_string(k->pid) + "/environ");
  EXPECT_NE(env_text.find(std::string("MY_STATE=") + state + '\0'), std::string::npos);
  EXPECT_NE(env_text.find(std::string("PLAIN=x") + '\0'), std::string::npos);

  // The runtime record keeps them for a restarted server (written on the I/O thread).
  fs::path record = fs::path(mo.runtime_dir) / "records" / (k->id + ".json");
  for (int i = 0; i < 500 && !fs::exists(record); ++i) std::this_thread::sleep_for(10ms);
  auto r = nlohmann::json::parse(read(record));
  EXPECT_EQ(r.at("env").at("MY_STATE"), state);
  EXPECT_EQ(r.at("devices"), nlohmann::json::array({3}));
  EXPECT_FALSE(r.at("reserved").get<bool>());
}

TEST_F(ManagerTest, ReservedKernelsAreHiddenUntilClaimed) {
  std::vector<std::string> hooked;
  mo.on_started = [&](const KernelModel& k) { hooked.push_back(k.id); };
  KernelManager km(mo, specs);
  StartOptions so;
  so.reserved = true;
  auto k = km.start("sleeper", "ann", so);
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_TRUE(k->reserved);
  EXPECT_TRUE(hooked.empty());  // nobody's runtime yet
  EXPECT_TRUE(km.list().empty());
  ASSERT_EQ(km.list(true).size(), 1u);
  EXPECT_FALSE(km.get(k->id).ok());

  EXPECT_FALSE(km.claim(k->id, "mallory").ok());  // another user's spare
  auto c = km.claim(k->id, "ann");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_FALSE(c->reserved);
  EXPECT_TRUE(c->claimed);
  EXPECT_EQ(hooked, std::vector<std::string>{k->id});
  ASSERT_TRUE(km.get(k->id).ok());
  EXPECT_TRUE(km.get(k->id)->claimed);
  EXPECT_FALSE(km.claim(k->id, "ann").ok());  // claimed once
}

}  // namespace
}  // namespace skylab::kernel
