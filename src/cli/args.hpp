// One command-line parser for the `skylab` commands: options declared once,
// `--help`, and uniform usage errors (exit 2, one line that names the bad
// option or argument).
#pragma once

#include <cstdio>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

namespace skylab::cli {

//! Prints a usage error, "<program>: <message> (see '<program> --help')", on
//! `err`; returns 2 (the exit status of every usage error).
int usage_error(const char* program, const std::string& message, std::FILE* err = stderr);

class ArgParser {
 public:
  //! Takes a value and stores it; returns "" or what is wrong with it (the
  //! whole message, e.g. "--port must be a number from 0 to 65535").
  using Take = std::function<std::string(const std::string& value)>;

  //! `program` ("skylab run") starts every error line; `help` is printed for
  //! -h/--help. Both must outlive the parser.
  ArgParser(const char* program, const char* help) : program_(program), help_(help) {}

  //! A switch: any of `names` ("-q", "--quiet") sets *dst. "--quiet=x" is an error.
  ArgParser& flag(std::initializer_list<const char*> names, bool* dst);
  //! An option with a value: "--name VALUE", or "--name=VALUE" for a long name.
  ArgParser& option(std::initializer_list<const char*> names, std::string* dst);
  ArgParser& option(std::initializer_list<const char*> names, Take take);
  //! An option followed by `n` values ("-p NAME VALUE"); no "=" form. When
  //! fewer follow: "<name> needs <what>".
  ArgParser& option_n(std::initializer_list<const char*> names, int n, const char* what,
                      std::function<std::string(const std::vector<std::string>&)> take);
  //! Each argument that is not an option ("-" is not one), in order.
  //! Without this, any is an error ("unexpected argument 'x'").
  ArgParser& positional(Take take);
  //! positional() for "COMMAND ARGS...": the first argument goes to *command,
  //! the others to *args.
  ArgParser& command(std::string* command, std::vector<std::string>* args);
  //! "--" ends the options; everything after it goes to *dst (the command
  //! to run). Without this, "--" is an unknown option.
  ArgParser& rest_after_dashdash(std::vector<std::string>* dst);

  enum class Outcome {
    kRun,    //!< parsed: go on
    kHelp,   //!< -h/--help (before any "--"): the help is on `out`; exit 0
    kError,  //!< one line on `err`; exit 2
  };
  Outcome parse(const std::vector<std::string>& args, std::FILE* out = stdout,
                std::FILE* err = stderr) const;
  //! The exit status for an outcome other than kRun (0 or 2).
  static int exit_code(Outcome o) { return o == Outcome::kHelp ? 0 : 2; }
  //! Prints a usage error found after parse() ("<program>: <message>" and
  //! where the help is) on `err`; returns 2.
  int usage_error(const std::string& message, std::FILE* err = stderr) const;

 private:
  struct Spec {
    std::vector<std::string> names;
    enum class Kind { kFlag, kValue, kValues };
    Kind kind = Kind::kFlag;
    bool* flag = nullptr;
    Take take;
    int n = 1;
    std::string what;
    std::function<std::string(const std::vector<std::string>&)> take_n;
  };
  const Spec* find(const std::string& name) const;

  const char* program_;
  const char* help_;
  std::vector<Spec> specs_;
  Take positional_;
  std::vector<std::string>* rest_ = nullptr;
};

}  // namespace skylab::cli
