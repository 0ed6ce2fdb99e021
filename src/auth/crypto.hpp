// Password hashing (Argon2id, libsodium) and digests for stored secrets.
// All functions are thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace skylab::auth {

//! Argon2id cost. `interactive()` is libsodium's recommendation for logins
//! (64 MiB, 2 passes); tests use `minimal()` to stay fast.
struct PasswordHashParams {
  unsigned long long ops_limit;
  std::size_t mem_limit;  //!< bytes

  static PasswordHashParams interactive();
  static PasswordHashParams minimal();
};

//! An encoded Argon2id hash (`$argon2id$v=19$m=...`) of `password` with a
//! fresh random salt. Fails only when the machine lacks the memory.
Result<std::string> hash_password(std::string_view password, const PasswordHashParams& params);

//! True when `password` matches `encoded` (which carries its own salt and
//! cost). False for a malformed `encoded`. Constant time in the password.
bool verify_password(std::string_view encoded, std::string_view password);

//! Lower-case hex SHA-256 of `data`. Stored instead of random secrets
//! (session cookies, API tokens): they have enough entropy not to need a
//! slow hash, and a leaked database then reveals no usable credential.
std::string sha256_hex(std::string_view data);

}  // namespace skylab::auth
