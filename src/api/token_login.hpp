// The login URL: `http://host:port/?token=T`, as Jupyter prints it. Opening
// it signs the browser in as the admin token's identity and drops the token
// from the address bar and the history.
#pragma once

#include <optional>
#include <string>

#include "api/api.hpp"

namespace skylab::api {

//! What a page route answers when its request carries a `token` query
//! parameter; nullopt when it carries none (the page is served as usual).
//! `landing` is where the browser goes next (a local path; anything else
//! goes to "/"). Every answer is a 303 to a URL without the token, with
//! `Referrer-Policy: no-referrer` and `Cache-Control: no-store`:
//! - the admin token (ctx.is_admin_token): a new admin session
//!   (AccountStore::create_admin_session) in the session and `_xsrf`
//!   cookies, then `landing`;
//! - any other token: no cookie, `/login?next=<landing>&token_refused=1`.
//! The token is never logged. Cheap and non-blocking (no database write):
//! callable on the Asio thread.
std::optional<http::Response> token_login(const Context& ctx, const http::Request& req,
                                          const std::string& landing);

//! `path` (decoded) percent-encoded back for a Location header: every byte
//! but A-Z a-z 0-9 - . _ ~ / is encoded.
std::string encode_path(const std::string& path);

}  // namespace skylab::api
