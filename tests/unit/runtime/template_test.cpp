#include "runtime/template.hpp"

#include <gtest/gtest.h>

#include "runtime/config.hpp"
#include "runtime/sandbox.hpp"

namespace skylab::runtime {

TEST(RuntimeTemplate, ParsesTheBwrapCommandItHolds) {
  SandboxOptions o;
  o.skylab_binary = "/usr/bin/true";
  SandboxPlan p;
  p.uid = p.gid = 200001;
  p.content_dir = "/d/runtimes/k/content";
  p.drive_dir = "/d/drive/u";
  p.cache_dir = "/d/cache/u";
  p.seccomp = true;
  p.hold = true;
  p.env = {{"HOME", "/root"}, {"SKYLAB_KERNEL_ID", "k"}, {"X", "--setenv"}};
  std::vector<std::string> argv = {"python3", "-m", "ipykernel_launcher", "-f", "/run/c.json"};
  auto cmd = bwrap_args(o, p, argv);
  if (::geteuid() != 0) GTEST_SKIP() << "the inner sandbox-exec is added as root only";
  auto r = parse_bwrap_command(cmd);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->uid, 200001);
  EXPECT_EQ(r->gid, 200001);
  EXPECT_TRUE(r->seccomp);
  EXPECT_EQ(r->env, p.env);
  EXPECT_EQ(r->argv, argv);
  EXPECT_NE(std::find(cmd.begin(), cmd.end(), "--hold"), cmd.end());
}

TEST(RuntimeTemplate, RefusesCommandsWithoutAnUnprivilegedInnerProgram) {
  EXPECT_FALSE(parse_bwrap_command({"bwrap", "--", "python3"}).ok());
  EXPECT_FALSE(parse_bwrap_command({"bwrap", "--setenv", "A"}).ok());
  EXPECT_FALSE(parse_bwrap_command({"bwrap", "--", "/opt/skylab/bin/skylab", "sandbox-exec",
                                    "--uid", "0", "--gid", "0", "--", "python3"})
                   .ok());
  EXPECT_FALSE(parse_bwrap_command({"bwrap", "--", "/opt/skylab/bin/skylab", "sandbox-exec",
                                    "--uid", "5", "--gid", "5", "--"})
                   .ok());
}

TEST(RuntimeTemplate, ServesOnlyTheDefaultPythonKernelspec) {
  EXPECT_TRUE(template_can_serve({"python3", "-m", "ipykernel_launcher", "-f", "/c.json"},
                                 "/usr/bin/python3"));
  EXPECT_TRUE(template_can_serve({"/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "c"},
                                 "/usr/bin/python3"));
  EXPECT_FALSE(template_can_serve({"/opt/venv/bin/python", "-m", "ipykernel_launcher", "-f", "c"},
                                  "/usr/bin/python3"));
  EXPECT_FALSE(template_can_serve({"python3", "-m", "ipykernel_launcher", "-f", "c", "--debug"},
                                  "/usr/bin/python3"));
  EXPECT_FALSE(template_can_serve({"R", "--slave", "-e", "IRkernel::main()", "c"}, "python3"));
}

TEST(RuntimeTemplate, ConfigKeys) {
  auto c =
      parse_config("[runtimes]\ntemplate = true\n[runtime_types.cpu]\npreload = [\"numpy\"]\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_TRUE(c->runtimes.template_on);
  EXPECT_EQ(c->types["cpu"].preload, std::vector<std::string>{"numpy"});
  auto d = parse_config("");
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->runtimes.template_on);
  EXPECT_EQ(d->types["cpu"].preload,
            (std::vector<std::string>{"numpy", "pandas", "matplotlib", "torch"}));
  EXPECT_FALSE(parse_config("[runtimes]\ntemplate = \"yes\"\n").ok());
  EXPECT_FALSE(parse_config("[runtime_types.cpu]\npreload = [\"os; rm\"]\n").ok());
  EXPECT_FALSE(parse_config("[runtime_types.cpu]\npreload = \"numpy\"\n").ok());
}

}  // namespace skylab::runtime
