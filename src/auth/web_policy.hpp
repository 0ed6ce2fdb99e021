// Browser-facing rules: cookies, XSRF and Origin checks, post-login
// redirects. Pure functions, thread-safe; the HTTP layer and the login
// handlers call them.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "auth/auth.hpp"

namespace skylab::auth {

//! The XSRF cookie, named as Jupyter names it so that @jupyterlab/services
//! finds it and echoes it in `X-XSRFToken`. Readable by scripts (not HttpOnly).
inline constexpr std::string_view kXsrfCookie = "_xsrf";

//! The session cookie's name: `__Host-skylab_session` over TLS (the browser
//! then enforces Secure, Path=/ and no Domain), `skylab_session` otherwise.
std::string_view session_cookie_name(bool secure);

//! A `Set-Cookie` value with `Path=/; SameSite=Lax`, plus `HttpOnly` and
//! `Secure` when asked. `max_age_seconds` < 0 leaves it a browser-session
//! cookie; 0 deletes it.
std::string set_cookie(std::string_view name, std::string_view value, bool http_only, bool secure,
                       long long max_age_seconds);

//! The value of cookie `name` in a `Cookie` header ("a=1; b=2"), or nullopt.
//! The first occurrence wins.
std::optional<std::string_view> cookie_value(std::string_view header, std::string_view name);

//! The XSRF token bound to a session: a one-way function of the session
//! secret, so that the (script-readable) XSRF cookie never reveals it.
std::string xsrf_token_for_session(std::string_view session_secret);

//! True for `next` values that are safe to redirect to after login: a local
//! absolute path ("/tree?x=1"), never one a browser would read as another
//! host ("//evil", "/\\evil", "\\\\evil", "https://x", "/\t/evil").
bool is_safe_redirect(std::string_view next);
//! `next` when is_safe_redirect(next), else "/".
std::string safe_redirect_target(std::string_view next);

//! GET, HEAD and OPTIONS: methods that must not change state.
bool is_safe_method(std::string_view method);

//! True when an `Origin` value ("https://host:port") names the same host and
//! port as a `Host` value ("host:port"); default ports may be left out on
//! either side. "null" and malformed origins never match.
bool origin_matches_host(std::string_view origin, std::string_view host);

//! What the HTTP layer knows about a request when it applies the rules.
struct RequestFacts {
  std::string_view method;
  bool websocket = false;           //!< a WebSocket upgrade
  std::string_view origin;          //!< `Origin` header, may be empty
  std::string_view host;            //!< `Host` (or X-Forwarded-Host from a trusted proxy)
  std::string_view presented_xsrf;  //!< `X-XSRFToken` header, `_xsrf` query or form field
};

enum class CrossSite {
  kAllowed,
  kMissingXsrf,    //!< cookie-authenticated state change without an XSRF token
  kBadXsrf,        //!< ... with a wrong one
  kForeignOrigin,  //!< Origin absent (WebSocket) or naming another site
};

//! Jupyter's rules, applied to cookie-authenticated requests only (token
//! holders are not a browser being tricked): a WebSocket upgrade needs an
//! Origin equal to Host; a request with an unsafe method needs the session's
//! XSRF token and, when it carries an Origin, one equal to Host.
CrossSite check_cross_site(const Identity& who, const RequestFacts& facts);

//! A short message for a refusal.
const char* describe(CrossSite verdict);

}  // namespace skylab::auth
