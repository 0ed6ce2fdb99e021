// Small helpers shared by every subsystem: randomness, ids, time stamps,
// URL decoding, UTF-8 validation. All functions are thread-safe.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace skylab::util {

//! `bytes` random bytes from the kernel's CSPRNG, hex encoded (2*bytes chars).
std::string random_hex(std::size_t bytes);

//! A random RFC 4122 version-4 UUID in canonical lower-case form.
std::string uuid4();

//! UTC time as ISO 8601 with microseconds and a `Z` suffix, as Jupyter writes it.
std::string iso_time(std::chrono::system_clock::time_point t);
inline std::string iso_now() {
  return iso_time(std::chrono::system_clock::now());
}

//! Percent-decodes `in` (and '+' as space when `plus_as_space`). Returns
//! nullopt for malformed escapes; the result may contain any byte.
std::optional<std::string> url_decode(std::string_view in, bool plus_as_space = false);
//! Percent-encodes everything but RFC 3986 unreserved characters and '/'.
std::string url_encode(std::string_view in);

//! True when `s` is well-formed UTF-8 (no overlongs, no surrogates).
bool valid_utf8(std::string_view s);

//! The first `cap` bytes of the file at `path` (fewer when it is shorter);
//! "" when it cannot be opened. For small control files the caller trusts
//! the location of (not for trees a runtime can write: see safe_fs).
std::string read_file_prefix(const std::string& path, std::size_t cap);

//! Constant-time comparison for secrets.
bool secure_equals(std::string_view a, std::string_view b);

}  // namespace skylab::util
