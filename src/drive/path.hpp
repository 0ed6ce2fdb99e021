// API paths of the Drive ("dir/sub/name.ipynb", relative to a user's root).
// DrivePath::parse is the single place where client-supplied paths are
// checked; every Drive and FileStore call takes a DrivePath, so a path that
// has not passed these checks never reaches the filesystem.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace skylab::drive {

//! A validated, normalized Drive path: zero or more components, each a
//! non-empty, valid UTF-8 name of at most 255 bytes without '/', '\\', NUL
//! or control characters, never "." or ".." (nor a percent-encoding of
//! them, however many times encoded). Immutable value type.
class DrivePath {
 public:
  //! The root of a user's Drive.
  DrivePath() = default;

  //! Parses a Jupyter API path. One leading and one trailing '/' are
  //! accepted ("/a/b/" is "a/b"); an empty string or "/" is the root.
  //! BadRequest, with a message naming the problem, for: "..", ".",
  //! "%2e%2e" (percent-encoded at any depth), a second leading '/'
  //! (absolute path), empty components ("a//b"), NUL and control
  //! characters, backslashes, invalid UTF-8, names over 255 bytes or paths
  //! over 4096 bytes.
  static Result<DrivePath> parse(std::string_view api_path);

  //! Checks one name (a single component) by the same rules.
  static Status check_name(std::string_view name);

  const std::vector<std::string>& parts() const { return parts_; }
  bool is_root() const { return parts_.empty(); }
  //! "a/b/c"; "" for the root.
  std::string str() const;
  //! The last component; "" for the root.
  std::string_view name() const;
  //! The containing directory; the root's parent is the root.
  DrivePath parent() const;
  //! This path with one more component. `name` must satisfy check_name.
  Result<DrivePath> child(std::string_view name) const;
  //! True when any component starts with '.' (hidden, as Jupyter's allow_hidden=False).
  bool is_hidden() const;
  //! True when this path equals `dir` or lies below it.
  bool is_within(const DrivePath& dir) const;

  bool operator==(const DrivePath& o) const { return parts_ == o.parts_; }

 private:
  std::vector<std::string> parts_;
};

}  // namespace skylab::drive
