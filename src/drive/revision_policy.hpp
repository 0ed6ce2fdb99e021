// Which revisions of a file to keep. Pure functions: the clock is an argument.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "drive/metadata_store.hpp"

namespace skylab::drive {

//! Revisions are kept by age (now - created):
//!  - younger than `recent`: all of them, but at most `recent_max` (the newest);
//!  - younger than `hourly`: the newest one of each UTC clock hour;
//!  - younger than `daily`: the newest one of each UTC day;
//!  - older: none.
//! The newest revision of a file is always kept, whatever its age, so a file
//! always has its last checkpoint.
struct RevisionPolicy {
  std::chrono::seconds recent{std::chrono::hours(1)};
  std::size_t recent_max = 100;
  std::chrono::seconds hourly{std::chrono::hours(24)};
  std::chrono::seconds daily{std::chrono::hours(24 * 30)};
};

//! The ids among `revisions` (one file's, any order) that the policy drops.
std::vector<std::int64_t> revisions_to_prune(const std::vector<RevisionInfo>& revisions,
                                             std::chrono::system_clock::time_point now,
                                             const RevisionPolicy& policy);

}  // namespace skylab::drive
