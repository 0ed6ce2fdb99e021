#include "api/token_login.hpp"

#include <chrono>

#include "auth/account_store.hpp"
#include "auth/web_policy.hpp"
#include "common/log.hpp"
#include "common/util.hpp"

namespace skylab::api {

std::string encode_path(const std::string& path) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  out.reserve(path.size());
  for (unsigned char c : path) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~' || c == '/') {
      out.push_back(static_cast<char>(c));
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::optional<http::Response> token_login(const Context& ctx, const http::Request& req,
                                          const std::string& landing) {
  auto token = req.query_param("token");
  if (!token) return std::nullopt;
  std::string to = auth::safe_redirect_target(landing);
  http::Response res;
  res.status = 303;
  res.set_header("Cache-Control", "no-store");
  res.set_header("Referrer-Policy", "no-referrer");
  bool valid =
      !token->empty() && token->size() <= 256 && ctx.is_admin_token && ctx.is_admin_token(*token);
  if (!valid || !ctx.accounts) {
    // Without accounts there is no sign-in: the page is open; only drop the token.
    if (!ctx.accounts) {
      res.set_header("Location", to);
      return res;
    }
    log::info("a login URL with a wrong token was refused (from " + req.client_address + ")");
    res.set_header("Location", "/login?token_refused=1&next=" + util::url_encode(to));
    return res;
  }
  auto session = ctx.accounts->create_admin_session();
  auto max_age = session.expires - std::chrono::duration_cast<std::chrono::seconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count();
  res.headers.emplace_back(
      "Set-Cookie", auth::set_cookie(auth::session_cookie_name(req.secure), session.secret, true,
                                     req.secure, max_age));
  res.headers.emplace_back(
      "Set-Cookie", auth::set_cookie(auth::kXsrfCookie, session.xsrf, false, req.secure, max_age));
  res.set_header("Location", to);
  log::info("signed in as 'admin' with the login URL (from " + req.client_address + ")");
  return res;
}

}  // namespace skylab::api
