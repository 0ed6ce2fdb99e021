// What `skylab serve` and `skylab run --runtime` share: where the installed
// helper folders are, and which kernel launcher the runtime configuration asks for.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "common/result.hpp"
#include "kernel/launcher.hpp"
#include "runtime/config.hpp"

namespace skylab::cli {

//! The folder `name` (python, examples) shipped beside the binary: BIN/../NAME
//! (a build tree or checkout), BIN/../lib/skylab/NAME or BIN/../share/skylab/NAME
//! (an install: `make install` puts python/ under lib/, examples/ under share/).
//! "" if none exists.
std::string find_installed_dir(const std::string& name);

//! The sandbox launcher `config.runtimes.sandbox` asks for, with the Drive,
//! caches and datasets of data directory `data`; null for plain processes
//! ("none", or "auto" where bubblewrap cannot run). Error when "bwrap" is
//! required but unusable. `die_with_parent`: sandboxes end with this
//! process (`skylab run`), not after a server restart.
Result<std::shared_ptr<kernel::Launcher>> make_launcher(const runtime::Config& config,
                                                        const std::filesystem::path& data,
                                                        bool die_with_parent = false);

//! The admin-provided datasets of data directory `data` (mounted read-only at
//! /datasets in every runtime).
std::filesystem::path datasets_dir(const std::filesystem::path& data);

}  // namespace skylab::cli
