#include "kernel/process.hpp"

#include <sys/wait.h>

#include <gtest/gtest.h>
#include "temp_dir.hpp"

namespace skylab::kernel {
namespace {

std::map<std::string, std::string> env_of(std::vector<std::string> base, const KernelEnvInput& in) {
  std::vector<char*> ptrs;
  for (auto& s : base) ptrs.push_back(s.data());
  ptrs.push_back(nullptr);
  return kernel_environment(ptrs.data(), in);
}

TEST(KernelEnvironment, DropsTheAdminTokenAndAddsTheLaunchEnv) {
  KernelEnvInput in;
  in.launch_env = {{"SKYLAB_RUNTIME_STATE", "/s/state.json"}, {"HOME", "/launch"}};
  auto env = env_of({"SKYLAB_ADMIN_TOKEN=secret", "HOME=/root", "noequals", "SKYLAB_OTHER=x",
                     "CUDA_VISIBLE_DEVICES=0,1"},
                    in);
  EXPECT_EQ(env.count("SKYLAB_ADMIN_TOKEN"), 0u);
  EXPECT_EQ(env["HOME"], "/launch");  // the launch env overrides the server's
  EXPECT_EQ(env["SKYLAB_OTHER"], "x");
  EXPECT_EQ(env.count("noequals"), 0u);
  EXPECT_EQ(env["SKYLAB_RUNTIME_STATE"], "/s/state.json");
  EXPECT_EQ(env["CUDA_VISIBLE_DEVICES"], "0,1");  // nothing of its own: the launch env decides
}

TEST(KernelEnvironment, SpecEnvIsAppliedLast) {
  KernelEnvInput in;
  in.launch_env = {{"HOME", "/launch"}};
  in.spec_env = {{"HOME", "/home/x"}};
  auto env = env_of({"HOME=/root"}, in);
  EXPECT_EQ(env["HOME"], "/home/x");
}

TEST(KernelEnvironment, PythonPathIsPrepended) {
  KernelEnvInput in;
  in.python_path = "/opt/skylab/python";
  EXPECT_EQ(env_of({"PYTHONPATH=/a"}, in)["PYTHONPATH"], "/opt/skylab/python:/a");
  EXPECT_EQ(env_of({}, in)["PYTHONPATH"], "/opt/skylab/python");
}

TEST(KernelArgv, SubstitutesConnectionFileAndResourceDirOnce) {
  KernelSpec spec;
  spec.argv = {"python3", "-f", "{connection_file}", "--dir={resource_dir}/x"};
  spec.resource_dir = "/k";
  auto argv = kernel_argv(spec, "/run/{connection_file}.json");
  ASSERT_EQ(argv.size(), 4u);
  EXPECT_EQ(argv[2], "/run/{connection_file}.json");  // not expanded again (no endless loop)
  EXPECT_EQ(argv[3], "--dir=/k/x");
}

TEST(SpawnProcess, RunsAndReapsAChild) {
  TempDir tmp("skylab-spawn");
  std::string log = (tmp / "log").string();
  auto pid = spawn_process({"sh", "-c", "echo hi; exit 3"}, {{"PATH", "/usr/bin:/bin"}}, "", log);
  ASSERT_TRUE(pid.ok()) << pid.error().message;
  int status = 0;
  EXPECT_TRUE(process_exited(pid.value(), false, true, status));
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3);
  EXPECT_FALSE(spawn_process({}, {}, "", log).ok());
}

TEST(PickPorts, GivesDistinctPorts) {
  int ports[5] = {};
  ASSERT_TRUE(pick_ports("127.0.0.1", ports, 5));
  for (int i = 0; i < 5; ++i) {
    EXPECT_GT(ports[i], 0);
    for (int j = 0; j < i; ++j) EXPECT_NE(ports[i], ports[j]);
  }
}

}  // namespace
}  // namespace skylab::kernel
