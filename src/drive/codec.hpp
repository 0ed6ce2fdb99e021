// Encodings the Drive needs: base64 (Jupyter's "base64" format), SHA-256
// (content addressing, `hash=1`), mimetypes by file name. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace skylab::drive {

//! Standard base64 with padding.
std::string base64_encode(std::string_view bytes);
//! Decodes standard base64; ASCII whitespace is skipped, padding optional.
//! nullopt for any other character or a truncated final group.
std::optional<std::string> base64_decode(std::string_view text);

//! Incremental SHA-256.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view bytes);
  //! Lower-case hex digest; the object must not be updated afterwards.
  std::string hex();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

//! Hex SHA-256 of `bytes`.
std::string sha256_hex(std::string_view bytes);

//! The mimetype Jupyter (Python's mimetypes) reports for this file name, or
//! nullopt when the extension is unknown.
std::optional<std::string> guess_mimetype(std::string_view name);

}  // namespace skylab::drive
