#include "auth/crypto.hpp"

#include <sodium.h>

#include <mutex>
#include <stdexcept>

namespace skylab::auth {

namespace {

void ensure_sodium() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialize");
  });
}

constexpr char kHex[] = "0123456789abcdef";

}  // namespace

PasswordHashParams PasswordHashParams::interactive() {
  return {crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE, crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE};
}

PasswordHashParams PasswordHashParams::minimal() {
  return {crypto_pwhash_argon2id_OPSLIMIT_MIN, std::size_t{64} * 1024};
}

Result<std::string> hash_password(std::string_view password, const PasswordHashParams& params) {
  ensure_sodium();
  char out[crypto_pwhash_argon2id_STRBYTES];
  if (crypto_pwhash_argon2id_str(out, password.data(), password.size(), params.ops_limit,
                                 params.mem_limit) != 0)
    return Error::unavailable("Not enough memory to hash a password");
  return std::string(out);
}

bool verify_password(std::string_view encoded, std::string_view password) {
  ensure_sodium();
  // The encoded form must be NUL-terminated and start with the Argon2id tag.
  if (encoded.size() >= crypto_pwhash_argon2id_STRBYTES) return false;
  if (encoded.rfind("$argon2id$", 0) != 0) return false;
  std::string z(encoded);
  return crypto_pwhash_argon2id_str_verify(z.c_str(), password.data(), password.size()) == 0;
}

std::string sha256_hex(std::string_view data) {
  ensure_sodium();
  unsigned char d[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(d, reinterpret_cast<const unsigned char*>(data.data()), data.size());
  std::string out;
  out.reserve(sizeof d * 2);
  for (unsigned char c : d) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

}  // namespace skylab::auth
