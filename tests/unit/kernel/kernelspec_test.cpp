#include "kernel/kernelspec.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include "temp_dir.hpp"

namespace skylab::kernel {

namespace fs = std::filesystem;

class KernelSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(root_ / "a" / "echo");
    fs::create_directories(root_ / "b" / "echo");
    fs::create_directories(root_ / "b" / "broken");
    write(root_ / "a" / "echo" / "kernel.json",
          R"({"argv":["/bin/echo","{connection_file}"],"display_name":"Echo A","language":"text",
              "interrupt_mode":"message","env":{"X":"1"}})");
    write(root_ / "a" / "echo" / "logo-64x64.png", "PNG");
    write(root_ / "b" / "echo" / "kernel.json",
          R"({"argv":["/bin/false"],"display_name":"Echo B"})");
    write(root_ / "b" / "broken" / "kernel.json", "{not json");
  }
  static void write(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }
  TempDir tmp_{"skylab-ks"};
  fs::path root_ = tmp_.path();
};

TEST_F(KernelSpecTest, EarlierDirectoriesWinAndBrokenSpecsAreSkipped) {
  KernelSpecStore store({(root_ / "a").string(), (root_ / "b").string()}, "/usr/bin/python3");
  auto k = store.find("echo");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->spec["display_name"], "Echo A");
  EXPECT_EQ(k->interrupt_mode, "message");
  EXPECT_EQ(k->env.at("X"), "1");
  EXPECT_FALSE(store.find("broken").ok());
}

TEST_F(KernelSpecTest, Python3IsAlwaysPresent) {
  KernelSpecStore store({(root_ / "a").string()}, "/opt/py/bin/python3");
  auto k = store.find("python3");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->argv.front(), "/opt/py/bin/python3");
  EXPECT_EQ(k->argv[2], "ipykernel_launcher");
  bool listed = false;
  for (auto& s : store.list()) listed = listed || s.name == "python3";
  EXPECT_TRUE(listed);
}

TEST_F(KernelSpecTest, ResourcesRejectTraversal) {
  KernelSpecStore store({(root_ / "a").string()}, "python3");
  EXPECT_TRUE(store.resource_path("echo", "logo-64x64.png").ok());
  EXPECT_FALSE(store.resource_path("echo", "../b/echo/kernel.json").ok());
  EXPECT_FALSE(store.resource_path("echo", "..").ok());
  EXPECT_FALSE(store.resource_path("echo", "missing.png").ok());
  EXPECT_FALSE(store.resource_path("../a/echo", "logo-64x64.png").ok());
  EXPECT_FALSE(store.find("..").ok());
  EXPECT_FALSE(store.find("no such").ok());
}

}  // namespace skylab::kernel
