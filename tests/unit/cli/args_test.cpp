#include "cli/args.hpp"

#include <gtest/gtest.h>

#include <cstdio>

namespace skylab::cli {
namespace {

//! What one parse printed, and how it ended.
struct Run {
  ArgParser::Outcome outcome;
  std::string out, err;
};

std::string slurp(std::FILE* f) {
  std::rewind(f);
  std::string s;
  char buf[512];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}

Run parse(const ArgParser& p, std::vector<std::string> args) {
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  auto o = p.parse(args, out, err);
  return {o, slurp(out), slurp(err)};
}

struct Opts {
  std::string dir = "default", name;
  bool quiet = false;
  int port = 0;
  std::vector<std::string> pos, pairs, rest;
};

ArgParser make(Opts& o, bool with_rest = false) {
  ArgParser p("skylab test", "usage: skylab test [options]\n");
  p.option({"--data-dir"}, &o.dir)
      .option({"-n", "--name"}, &o.name)
      .flag({"-q", "--quiet"}, &o.quiet)
      .option({"--port"},
              [&](const std::string& v) -> std::string {
                if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos)
                  return "--port must be a number";
                o.port = std::stoi(v);
                return "";
              })
      .option_n({"-p"}, 2, "a NAME and a VALUE",
                [&](const std::vector<std::string>& nv) {
                  o.pairs.push_back(nv[0] + "=" + nv[1]);
                  return std::string();
                })
      .positional([&](const std::string& a) {
        o.pos.push_back(a);
        return std::string();
      });
  if (with_rest) p.rest_after_dashdash(&o.rest);
  return p;
}

TEST(ArgParser, ValuesInBothFormsFlagsAndPositionalsInOrder) {
  Opts o;
  auto p = make(o);
  auto r = parse(
      p, {"a", "--data-dir=/d", "-q", "b", "--name", "x y", "-p", "k", "v", "-", "--port", "80"});
  EXPECT_EQ(r.outcome, ArgParser::Outcome::kRun);
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(o.dir, "/d");
  EXPECT_EQ(o.name, "x y");
  EXPECT_TRUE(o.quiet);
  EXPECT_EQ(o.port, 80);
  EXPECT_EQ(o.pairs, std::vector<std::string>{"k=v"});
  EXPECT_EQ(o.pos, (std::vector<std::string>{"a", "b", "-"}));  // "-" is an argument
}

TEST(ArgParser, HelpAnywhereWinsAndGoesToStdout) {
  Opts o;
  auto p = make(o);
  auto r = parse(p, {"--bogus", "-h"});
  EXPECT_EQ(r.outcome, ArgParser::Outcome::kHelp);
  EXPECT_EQ(ArgParser::exit_code(r.outcome), 0);
  EXPECT_EQ(r.out, "usage: skylab test [options]\n");
  EXPECT_EQ(r.err, "");
}

TEST(ArgParser, EveryUsageErrorIsOneLineNamingTheCulprit) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  for (auto& c : std::vector<Case>{
           {{"--bogus"}, "unknown option '--bogus'"},
           {{"--bogus=1"}, "unknown option '--bogus=1'"},
           {{"-x"}, "unknown option '-x'"},
           {{"--name"}, "--name needs a value"},
           {{"-n"}, "-n needs a value"},
           {{"--quiet=yes"}, "--quiet takes no value"},
           {{"--port", "eighty"}, "--port must be a number"},
           {{"-p", "k"}, "-p needs a NAME and a VALUE"},
           {{"--"}, "unknown option '--'"},
       }) {
    Opts o;
    auto p = make(o);
    auto r = parse(p, c.args);
    EXPECT_EQ(r.outcome, ArgParser::Outcome::kError) << c.message;
    EXPECT_EQ(ArgParser::exit_code(r.outcome), 2);
    EXPECT_EQ(r.err, "skylab test: " + c.message + " (see 'skylab test --help')\n");
    EXPECT_EQ(r.out, "");
  }
  ArgParser none("skylab none", "");
  auto r = parse(none, {"file"});
  EXPECT_EQ(r.err, "skylab none: unexpected argument 'file' (see 'skylab none --help')\n");
}

TEST(ArgParser, DashDashEndsOptionsAndHelpAfterItBelongsToTheCommand) {
  Opts o;
  auto p = make(o, true);
  auto r = parse(p, {"-q", "--", "ls", "--help", "-q"});
  EXPECT_EQ(r.outcome, ArgParser::Outcome::kRun);
  EXPECT_EQ(o.rest, (std::vector<std::string>{"ls", "--help", "-q"}));
  EXPECT_TRUE(o.quiet);
}

}  // namespace
}  // namespace skylab::cli
