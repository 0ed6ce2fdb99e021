// Who is making a request. Every handler receives an Identity, never a
// bare token or cookie; accounts (account_store.hpp) sit behind Authenticator.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace skylab::auth {

//! How a request proved its identity. Cookie-authenticated requests are the
//! ones a foreign site can make a browser send, so only they are subject to
//! the XSRF and Origin rules (web_policy.hpp).
enum class Via {
  kNone,        //!< not authenticated (public route)
  kAdminToken,  //!< SKYLAB_ADMIN_TOKEN (or the generated one)
  kApiToken,    //!< a per-user API token
  kSession,     //!< the session cookie set by /login
};

//! The authenticated user of a request or WebSocket.
struct Identity {
  std::string username;  //!< stable account name; owner of kernels and files
  bool admin = false;
  Via via = Via::kNone;
  //! Stable, non-secret id of the credential used ("session:<hash>",
  //! "token:<id>", "admin-token"); lets the server find and close the
  //! WebSockets opened with a credential that has since been revoked.
  std::string credential_id;
  //! For Via::kSession: the XSRF token this session's state-changing
  //! requests must echo (`X-XSRFToken` header or `_xsrf` field). Not a
  //! credential by itself: it is a one-way function of the session secret.
  std::string xsrf;

  bool by_cookie() const { return via == Via::kSession; }
  //! Who really acts when a share lets a user work in `username`'s Drive
  //! (recorded as the author of revisions); "" when it is `username`.
  std::string acting_user;
};

//! Credentials found on a request. Filled by the HTTP layer.
struct Credentials {
  std::string_view authorization_header;  //!< raw `Authorization` value, may be empty
  std::string_view query_token;           //!< `?token=` value, may be empty
  std::string_view cookie_header;         //!< raw `Cookie` value, may be empty
  //! The request reached the server over TLS (`--secure-cookies`, or a
  //! trusted proxy said so): only `__Host-` session cookies count then.
  bool secure = false;
};

//! Decides who a request is. Implementations must be thread-safe.
class Authenticator {
 public:
  virtual ~Authenticator() = default;
  //! The identity for these credentials, or nullopt when they prove nothing.
  //! An `Authorization` header that is present but wrong is never rescued by
  //! a query token or a cookie.
  virtual std::optional<Identity> authenticate(const Credentials& creds) const = 0;
  //! Whether an identity returned earlier still holds (its session or token
  //! not revoked or expired, its account not disabled). Used to close open
  //! WebSockets whose credential went away. The default: always.
  virtual bool still_valid(const Identity& who) const { return true; }
};

//! Accepts exactly one shared admin token (SKYLAB_ADMIN_TOKEN or generated).
class AdminTokenAuthenticator : public Authenticator {
 public:
  explicit AdminTokenAuthenticator(std::string token) : token_(std::move(token)) {}
  std::optional<Identity> authenticate(const Credentials& creds) const override;

  //! True when `presented` is the admin token (constant time).
  bool matches(std::string_view presented) const;
  //! The identity the admin token stands for: user "admin", an administrator.
  static Identity admin_identity();

 private:
  std::string token_;
};

//! Extracts the token from an `Authorization: token T` or `Bearer T` value.
std::optional<std::string_view> token_from_authorization(std::string_view header);

}  // namespace skylab::auth
