// Expected-style results for failures that are part of normal operation
// (bad input, unknown ids, dead kernels). Exceptions are for bugs and
// for errors that end the whole operation; they never cross module seams.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace skylab {

//! Why an operation failed. `code` maps onto an HTTP status at the API edge.
struct Error {
  enum class Code {
    kBadRequest,
    kNotFound,
    kConflict,
    kTooLarge,
    kUnavailable,
    kInternal,
    kForbidden,
    kInsufficientStorage  //!< disk full or quota exceeded (HTTP 507)
  };
  Code code = Code::kInternal;
  std::string message;

  static Error bad_request(std::string m) { return {Code::kBadRequest, std::move(m)}; }
  static Error not_found(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Error conflict(std::string m) { return {Code::kConflict, std::move(m)}; }
  static Error too_large(std::string m) { return {Code::kTooLarge, std::move(m)}; }
  static Error unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Error internal(std::string m) { return {Code::kInternal, std::move(m)}; }
  static Error forbidden(std::string m) { return {Code::kForbidden, std::move(m)}; }
  static Error insufficient_storage(std::string m) {
    return {Code::kInsufficientStorage, std::move(m)};
  }
};

//! Either a T or an Error. Check ok() before value(). [[nodiscard]]: a dropped
//! Result is a dropped error; say `(void)` where ignoring one is right.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(implicit)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(implicit)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

struct Unit {};
using Status = Result<Unit>;
inline Status ok_status() {
  return Unit{};
}

}  // namespace skylab
