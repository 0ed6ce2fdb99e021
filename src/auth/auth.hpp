// Who is making a request. Every handler receives an Identity, never a
// bare token, so that accounts (a later issue) slot in behind Authenticator.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace skylab::auth {

//! The authenticated user of a request or WebSocket.
struct Identity {
  std::string username;  //!< stable account name; owner of kernels and files
  bool admin = false;
};

//! Credentials found on a request. Filled by the HTTP layer.
struct Credentials {
  std::string_view authorization_header;  //!< raw `Authorization` value, may be empty
  std::string_view query_token;           //!< `?token=` value, may be empty
};

//! Decides who a request is. Implementations must be thread-safe.
class Authenticator {
 public:
  virtual ~Authenticator() = default;
  //! The identity for these credentials, or nullopt when they prove nothing.
  virtual std::optional<Identity> authenticate(const Credentials& creds) const = 0;
};

//! Accepts exactly one shared admin token (SKYLAB_ADMIN_TOKEN or generated).
class AdminTokenAuthenticator : public Authenticator {
 public:
  explicit AdminTokenAuthenticator(std::string token) : token_(std::move(token)) {}
  std::optional<Identity> authenticate(const Credentials& creds) const override;

 private:
  std::string token_;
};

//! Extracts the token from an `Authorization: token T` or `Bearer T` value.
std::optional<std::string_view> token_from_authorization(std::string_view header);

}  // namespace skylab::auth
