// Kernelspec discovery in the standard Jupyter data paths.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.hpp"

namespace skylab::kernel {

struct KernelSpec {
  std::string name;          //!< directory name, lower case
  std::string resource_dir;  //!< where kernel.json and logos live ("" for none)
  nlohmann::json spec;       //!< kernel.json as Jupyter Server returns it
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  std::string interrupt_mode = "signal";  //!< "signal" or "message"
};

//! Finds kernelspecs on every call (so new installs show without a restart).
//! Thread-safe: holds only immutable configuration.
class KernelSpecStore {
 public:
  //! `dirs` are `.../kernels` directories, earlier ones win. `python` runs
  //! the built-in `python3` spec (ipykernel) when no directory provides it.
  KernelSpecStore(std::vector<std::string> dirs, std::string python);

  //! JUPYTER_PATH entries, ~/.local/share/jupyter, /usr/local/share/jupyter,
  //! /usr/share/jupyter (each with /kernels appended), as Jupyter orders them.
  static std::vector<std::string> default_dirs();

  std::vector<KernelSpec> list() const;
  Result<KernelSpec> find(const std::string& name) const;
  std::string default_name() const { return "python3"; }
  //! Absolute path of `resource` inside spec `name`'s directory; rejects
  //! traversal and anything that is not a regular file.
  Result<std::string> resource_path(const std::string& name, const std::string& resource) const;

 private:
  Result<KernelSpec> load(const std::string& dir, const std::string& name) const;
  KernelSpec builtin_python() const;

  std::vector<std::string> dirs_;
  std::string python_;
};

//! True for names Jupyter accepts as kernelspec names: [a-z0-9._-]+.
bool valid_kernel_name(const std::string& name);

}  // namespace skylab::kernel
