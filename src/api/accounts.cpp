// Sign-in and account routes: /login, /logout, /api/skylab/tokens,
// /api/skylab/users (admins), /api/skylab/routes (admins).
#include <cctype>
#include <deque>
#include <map>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "api/api.hpp"
#include "api/token_login.hpp"
#include "api/work_queue.hpp"
#include "auth/account_store.hpp"
#include "auth/throttle.hpp"
#include "auth/web_policy.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/util.hpp"
#include "drive/drive.hpp"
#include "runtime/config.hpp"

namespace skylab::api {

using http::Request;
using http::Responder;
using http::Response;
using nlohmann::json;

namespace {

constexpr std::size_t kLoginBodyLimit = std::size_t{16} * 1024;
constexpr std::int64_t kMaxTokenLifetime = 10LL * 366 * 24 * 3600;
constexpr const char* kPageCsp =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'";

struct LoginState {
  std::shared_ptr<auth::AccountStore> store;
  runtime::AccountsSection accounts;  //!< self sign-up policy
  auth::LoginThrottle by_user;
  auth::LoginThrottle by_address;
  //! Every sign-up attempt counts (a created account too): one address may
  //! create a classroom's worth of accounts, then slows down.
  auth::LoginThrottle signups_by_address;
  //! Password checks cost tens of milliseconds and 64 MiB each: they run on
  //! Context::logins (two threads of their own), never on the Asio thread.
  std::shared_ptr<WorkQueue> workers;

  LoginState(std::shared_ptr<auth::AccountStore> s, runtime::AccountsSection a,
             std::shared_ptr<WorkQueue> w)
      : store(std::move(s)),
        accounts(std::move(a)),
        by_user(auth::ThrottleOptions{}),
        by_address([] {
          auth::ThrottleOptions o;
          o.free_failures = 50;  // a classroom behind one NAT mistypes a lot
          return o;
        }()),
        signups_by_address([] {
          auth::ThrottleOptions o;
          o.free_failures = 100;
          o.base_delay = std::chrono::seconds(5);
          return o;
        }()),
        workers(std::move(w)) {}
};

//! Runs `job` on the login workers. When too many wait already, `job` is
//! dropped and `done` gets 503 "Too many <what> at once; try again" with
//! Retry-After: 1 (the sign-in and sign-up forms' one answer to a crowd).
void post_login_work(LoginState& st, const char* what, std::function<void()> job,
                     const Responder& done) {
  if (st.workers->post(std::move(job))) return;
  auto res = Response::error(503, std::string("Too many ") + what + " at once; try again");
  res.set_header("Retry-After", "1");
  done(std::move(res));
}

// The sign-in pages' look: the app's (web/src/style.css: colours, type,
// buttons, the logo), inline since these pages load no script or stylesheet.
constexpr const char* kPageStyle =
    ":root{--fg:#202124;--muted:#5f6368;--line:#dadce0;--soft:#f1f3f4;--accent:#1a73e8;--err:#"
    "c5221f;"
    "--sans:'Google Sans',Roboto,'Segoe UI','DejaVu Sans',system-ui,sans-serif}"
    "*{box-sizing:border-box}"
    "html,body{margin:0;min-height:100%;background:var(--soft);color:var(--fg);font:14px/1.45 "
    "var(--sans)}"
    "body{display:flex;align-items:flex-start;justify-content:center;padding:10vh 16px}"
    ".card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:36px 40px "
    "28px;width:100%;"
    "max-width:420px;box-shadow:0 1px 2px rgba(60,64,67,.1)}"
    ".logo{display:flex;align-items:center;gap:8px;font-size:20px;font-weight:500;margin-bottom:"
    "20px}"
    ".logo-mark{width:30px;height:30px;border-radius:50%;display:inline-block;"
    "background:radial-gradient(circle at 35% 35%,#fbbc04 0 45%,#e37400 46% 100%)}"
    "h1{font-size:22px;font-weight:400;margin:0 0 20px}"
    "label{display:block;font-size:13px;color:var(--muted);margin:14px 0 4px}"
    "input{display:block;width:100%;padding:10px 12px;border:1px solid "
    "var(--line);border-radius:4px;font:inherit}"
    "input:focus{outline:none;border-color:var(--accent);box-shadow:0 0 0 1px var(--accent)}"
    "button{display:block;width:100%;margin-top:24px;padding:9px 12px;border:1px solid "
    "var(--accent);"
    "border-radius:4px;background:var(--accent);color:#fff;font:inherit;font-weight:500;cursor:"
    "pointer}"
    "button:hover{background:#1765cc}"
    ":focus-visible{outline:2px solid var(--accent);outline-offset:1px}"
    "a{color:var(--accent)}p{color:var(--muted);margin:18px 0 0}"
    ".err{color:var(--err);background:#fce8e6;border-radius:4px;padding:8px 12px;margin:0 0 8px}";

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

Response page(int status, const std::string& title, const std::string& body_html) {
  Response res;
  res.status = status;
  res.body =
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" +
      html_escape(title) +
      "</title>\n<meta name=\"viewport\" content=\"width=device-width\">\n"
      "<style>" +
      std::string(kPageStyle) +
      "</style>\n"
      "</head><body>\n<main class=\"card\">\n<div class=\"logo\"><span class=\"logo-mark\"></span>"
      "<span>Skylab</span></div>\n" +
      body_html + "\n</main>\n</body></html>\n";
  res.set_header("Content-Type", "text/html; charset=utf-8");
  res.set_header("Content-Security-Policy", kPageCsp);
  res.set_header("Cache-Control", "no-store");
  return res;
}

// The pre-login XSRF value: the `_xsrf` cookie when it looks like one of
// ours, else a fresh one (returned in `set` to be stored in the cookie).
std::string login_xsrf(const Request& req, std::string& set) {
  auto v = auth::cookie_value(req.header("cookie"), auth::kXsrfCookie);
  if (v && v->size() >= 32 && v->size() <= 128) {
    bool hex = true;
    for (char c : *v) hex = hex && std::isxdigit(static_cast<unsigned char>(c));
    if (hex) return std::string(*v);
  }
  set = util::random_hex(32);
  return set;
}

// A page with one form that posts to `action` and carries the pre-login
// XSRF value and the `next` target; `fields` is the rest of the form and
// `after` what follows it.
Response form_page(const Request& req, int status, const std::string& title,
                   const std::string& heading, const std::string& action, const std::string& next,
                   const std::string& error, const std::string& fields, const std::string& after) {
  std::string set;
  std::string xsrf = login_xsrf(req, set);
  std::string html = "<h1>" + html_escape(heading) + "</h1>\n";
  if (!error.empty()) html += "<p class=\"err\" role=\"alert\">" + html_escape(error) + "</p>\n";
  html += "<form method=\"post\" action=\"" + action +
          "\">\n"
          "<input type=\"hidden\" name=\"_xsrf\" value=\"" +
          html_escape(xsrf) +
          "\">\n"
          "<input type=\"hidden\" name=\"next\" value=\"" +
          html_escape(next) + "\">\n" + fields + "</form>\n" + after;
  auto res = page(status, title, html);
  if (!set.empty())
    res.headers.emplace_back("Set-Cookie",
                             auth::set_cookie(auth::kXsrfCookie, set, false, req.secure, -1));
  return res;
}

Response login_page(const LoginState& st, const Request& req, int status, const std::string& next,
                    const std::string& error, const std::string& username = "") {
  std::string fields =
      "<label for=\"username\">User name</label>"
      "<input id=\"username\" name=\"username\" autocomplete=\"username\" autocapitalize=\"none\" "
      "required "
      "maxlength=\"32\" value=\"" +
      html_escape(username) +
      "\">\n"
      "<label for=\"password\">Password</label>"
      "<input id=\"password\" name=\"password\" type=\"password\" "
      "autocomplete=\"current-password\" required>\n"
      "<button type=\"submit\">Sign in</button>\n";
  std::string after;
  if (st.accounts.signup)
    after = "<p>New here? <a href=\"/signup?next=" + html_escape(util::url_encode(next)) +
            "\">Create an account</a></p>";
  return form_page(req, status, "Sign in - Skylab", "Sign in to Skylab", "/login", next, error,
                   fields, after);
}

Response signup_page(const LoginState& st, const Request& req, int status, const std::string& next,
                     const std::string& error, const std::string& username = "",
                     const std::string& email = "") {
  std::string fields =
      "<label for=\"username\">User name</label>"
      "<input id=\"username\" name=\"username\" autocomplete=\"username\" autocapitalize=\"none\" "
      "required "
      "maxlength=\"32\" pattern=\"[a-z_][a-z0-9_\\-]{0,31}\" title=\"a-z, 0-9, _ and -, starting "
      "with a letter\" "
      "value=\"" +
      html_escape(username) + "\">\n";
  if (!st.accounts.email_domains.empty()) {
    std::string domains;
    for (auto& d : st.accounts.email_domains) domains += (domains.empty() ? "" : ", ") + d;
    fields += "<label for=\"email\">E-mail address (" + html_escape(domains) +
              ")</label>"
              "<input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"email\" required "
              "maxlength=\"254\" "
              "value=\"" +
              html_escape(email) + "\">\n";
  }
  fields +=
      "<label for=\"password\">Password (at least 8 characters)</label>"
      "<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"new-password\" "
      "required "
      "minlength=\"8\">\n"
      "<label for=\"password2\">Repeat the password</label>"
      "<input id=\"password2\" name=\"password2\" type=\"password\" autocomplete=\"new-password\" "
      "required>\n";
  if (!st.accounts.invite_codes.empty())
    fields +=
        "<label for=\"invite\">Invitation code</label>"
        "<input id=\"invite\" name=\"invite\" autocomplete=\"off\" autocapitalize=\"none\" "
        "required>\n";
  fields += "<button type=\"submit\">Create account</button>\n";
  std::string after =
      "<p>Have an account? <a href=\"/login?next=" + html_escape(util::url_encode(next)) +
      "\">Sign in</a></p>";
  return form_page(req, status, "Create an account - Skylab", "Create a Skylab account", "/signup",
                   next, error, fields, after);
}

//! Empty when `email` is an address in one of `domains`; otherwise why not.
std::string email_problem(std::string_view email, const std::vector<std::string>& domains) {
  auto at = email.rfind('@');
  if (email.size() > 254 || at == std::string_view::npos || at == 0 || email.find('@') != at)
    return "Enter a valid e-mail address.";
  for (unsigned char c : email)
    if (c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '"')
      return "Enter a valid e-mail address.";
  std::string domain(email.substr(at + 1));
  for (auto& c : domain) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (auto& d : domains)
    if (domain == d) return "";
  return "Sign-up is limited to e-mail addresses of certain domains.";
}

Response set_session(Response res, const auth::NewSession& session, bool secure) {
  auto max_age = session.expires - std::chrono::duration_cast<std::chrono::seconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count();
  res.headers.emplace_back("Set-Cookie", auth::set_cookie(auth::session_cookie_name(secure),
                                                          session.secret, true, secure, max_age));
  res.headers.emplace_back(
      "Set-Cookie", auth::set_cookie(auth::kXsrfCookie, session.xsrf, false, secure, max_age));
  return res;
}

Response redirect(const std::string& to) {
  Response res;
  res.status = 303;
  res.set_header("Location", to);
  res.set_header("Cache-Control", "no-store");
  return res;
}

bool origin_ok(const Request& req) {
  auto origin = req.header("origin");
  return origin.empty() || auth::origin_matches_host(origin, req.host);
}

std::optional<std::string> form_field(const std::map<std::string, std::string>& f,
                                      const char* name) {
  auto it = f.find(name);
  if (it == f.end()) return std::nullopt;
  return it->second;
}

//! Login XSRF for the sign-in and sign-up forms: the request comes from our
//! origin (or names none) and the form echoes the `_xsrf` cookie that the
//! form's GET set, so that another site cannot sign a browser into its own account.
bool form_xsrf_ok(const Request& req, const std::map<std::string, std::string>& form) {
  auto cookie = auth::cookie_value(req.header("cookie"), auth::kXsrfCookie);
  auto field = form_field(form, "_xsrf");
  return origin_ok(req) && cookie && !cookie->empty() && field &&
         util::secure_equals(*cookie, *field);
}

void clear_session_cookies(Response& res, bool secure) {
  res.headers.emplace_back(
      "Set-Cookie", auth::set_cookie(auth::session_cookie_name(secure), "", true, secure, 0));
  res.headers.emplace_back("Set-Cookie", auth::set_cookie(auth::kXsrfCookie, "", false, secure, 0));
}

void changed(const Context& ctx) {
  if (ctx.accounts_changed) ctx.accounts_changed();
}

//! A handler that runs on the work queue: these routes write to (or wait on)
//! the account database, which another process may hold locked for seconds.
//! The request is copied; a full queue answers 503 with Retry-After.
http::Handler on_work_queue(std::shared_ptr<const Context> ctx, http::Handler h) {
  return [ctx, h = std::move(h)](Request& req, Responder done) {
    auto copy = std::make_shared<Request>(req);
    post_or_busy(
        ctx->work.get(), [h, copy, done] { h(*copy, done); }, done);
  };
}

// ---------------------------------------------------------------- models

json time_or_null(std::optional<std::int64_t> t) {
  if (!t) return nullptr;
  return util::iso_time(std::chrono::system_clock::time_point(std::chrono::seconds(*t)));
}

json token_json(const auth::TokenRecord& t) {
  return {{"id", t.id},
          {"name", t.name},
          {"created", time_or_null(t.created)},
          {"expires", time_or_null(t.expires)}};
}

json user_json(const auth::UserRecord& u) {
  return {{"username", u.username},
          {"admin", u.admin},
          {"disabled", u.disabled},
          {"created", time_or_null(u.created)},
          {"password_changed", time_or_null(u.password_changed)},
          {"email", u.email.empty() ? json(nullptr) : json(u.email)}};
}

json kernel_summary(const kernel::KernelModel& k) {
  return {{"id", k.id},
          {"name", k.name},
          {"execution_state", kernel::to_string(k.execution_state)},
          {"last_activity", util::iso_time(k.last_activity)},
          {"connections", k.connections}};
}

//! Refuses fields other than `allowed` (typos must not pass silently).
std::optional<Response> unknown_fields(const json& body,
                                       std::initializer_list<const char*> allowed) {
  for (auto it = body.begin(); it != body.end(); ++it) {
    bool known = false;
    for (auto* a : allowed) known = known || it.key() == a;
    if (!known) return Response::error(400, "Unknown field '" + it.key() + "'");
  }
  return std::nullopt;
}

std::optional<Response> admin_only(const Request& req) {
  if (!req.user.admin) return Response::error(403, "Forbidden: administrators only");
  return std::nullopt;
}

}  // namespace

void add_account_routes(http::Router& r, std::shared_ptr<const Context> ctx) {
  const http::Router* router = &r;  // outlives its handlers
  r.add("GET", "/api/skylab/routes/?", [router](Request& req, Responder done) {
    if (auto no = admin_only(req)) return done(*no);
    json out = json::array();
    for (const auto& route : router->routes())
      out.push_back({{"method", route.method},
                     {"pattern", route.pattern},
                     {"public", route.options.public_route}});
    done(Response::json(200, out));
  });

  if (!ctx->accounts) return;
  auto store = ctx->accounts;
  auto st = std::make_shared<LoginState>(
      store, ctx->runtime_config ? ctx->runtime_config->accounts : runtime::AccountsSection{},
      ctx->logins);
  http::RouteOptions pub;
  pub.public_route = true;
  pub.body_limit = kLoginBodyLimit;

  // ---- sign-in pages
  r.add(
      "GET", "/login",
      [st, ctx](Request& req, Responder done) {
        std::string next = auth::safe_redirect_target(req.query_param("next").value_or("/"));
        if (auto login = token_login(*ctx, req, next))
          return done(std::move(*login));  // Jupyter's /login?token=
        if (auto v =
                auth::cookie_value(req.header("cookie"), auth::session_cookie_name(req.secure)))
          if (st->store->session_identity(*v)) return done(redirect(next));
        auto res = login_page(*st, req, 200, next,
                              req.query_param("token_refused")
                                  ? "That login URL is not valid (the server prints a new "
                                    "one each time it starts). Sign in with your account."
                                  : "");
        // Not no-referrer: browsers then send `Origin: null` with the form's POST.
        res.set_header("Referrer-Policy", "same-origin");
        done(std::move(res));
      },
      pub);

  r.add(
      "POST", "/login",
      [st](Request& req, Responder done) {
        auto ct = req.header("content-type");
        if (ct.substr(0, ct.find(';')) != "application/x-www-form-urlencoded")
          return done(
              Response::error(415, "Send the login form as application/x-www-form-urlencoded"));
        auto form = http::parse_form(req.body);
        if (!form) return done(Response::error(400, "Malformed form"));
        std::string next = auth::safe_redirect_target(form_field(*form, "next").value_or("/"));
        if (!form_xsrf_ok(req, *form))
          return done(
              login_page(*st, req, 403, next, "Your sign-in form expired. Please try again."));
        auto username = form_field(*form, "username").value_or("");
        auto password = form_field(*form, "password").value_or("");
        if (!util::valid_utf8(username) || !util::valid_utf8(password))
          return done(Response::error(400, "User name and password must be UTF-8"));
        if (username.empty() || password.empty())
          return done(login_page(*st, req, 400, next, "Enter your user name and password."));
        if (!auth::valid_username(username))
          return done(login_page(*st, req, 400, next, "Invalid user name or password."));

        std::string user_key = "user:" + username, addr_key = "addr:" + req.client_address;
        auto wait =
            std::max(st->by_user.retry_after(user_key), st->by_address.retry_after(addr_key));
        if (wait.count() > 0) {
          auto res = login_page(
              *st, req, 429, next,
              "Too many failed sign-ins. Try again in " + std::to_string(wait.count()) + " s.",
              username);
          res.set_header("Retry-After", std::to_string(wait.count()));
          return done(std::move(res));
        }
        Request copy;  // what the worker needs of the request (it outlives nothing)
        copy.headers = req.headers;
        copy.secure = req.secure;
        post_login_work(
            *st, "sign-ins",
            [st, copy = std::move(copy), done, username, password, next, user_key, addr_key]() {
              auto user = st->store->check_password(username, password);
              if (!user.ok()) {
                if (user.error().code == Error::Code::kUnavailable) {
                  log::warn("login deferred: " + user.error().message);
                  return done(Response::from_error(user.error()));
                }
                if (user.error().code != Error::Code::kForbidden) {
                  log::error("login failed: " + user.error().message);
                  return done(Response::error(500, "Internal server error"));
                }
                st->by_user.failure(user_key);
                st->by_address.failure(addr_key);
                log::info("failed sign-in for user '" + username + "'");
                return done(
                    login_page(*st, copy, 403, next, "Invalid user name or password.", username));
              }
              st->by_user.success(user_key);
              auto session = st->store->create_session(user.value());
              if (!session.ok()) {
                log::error("cannot create a session: " + session.error().message);
                if (session.error().code == Error::Code::kUnavailable)
                  return done(Response::from_error(session.error()));
                return done(Response::error(500, "Internal server error"));
              }
              log::info("user '" + username + "' signed in");
              done(set_session(redirect(next), session.value(), copy.secure));
            },
            done);
      },
      pub);

  // ---- optional self sign-up ([accounts] signup = true)
  r.add(
      "GET", "/signup",
      [st](Request& req, Responder done) {
        if (!st->accounts.signup) return done(Response::error(404, "Not found"));
        std::string next = auth::safe_redirect_target(req.query_param("next").value_or("/"));
        if (auto v =
                auth::cookie_value(req.header("cookie"), auth::session_cookie_name(req.secure)))
          if (st->store->session_identity(*v)) return done(redirect(next));
        done(signup_page(*st, req, 200, next, ""));
      },
      pub);

  r.add(
      "POST", "/signup",
      [st, ctx](Request& req, Responder done) {
        if (!st->accounts.signup) return done(Response::error(404, "Not found"));
        auto ct = req.header("content-type");
        if (ct.substr(0, ct.find(';')) != "application/x-www-form-urlencoded")
          return done(
              Response::error(415, "Send the sign-up form as application/x-www-form-urlencoded"));
        auto form = http::parse_form(req.body);
        if (!form) return done(Response::error(400, "Malformed form"));
        for (auto& [k, v] : *form) {
          static const std::set<std::string> known = {"_xsrf",    "next",      "username", "email",
                                                      "password", "password2", "invite"};
          if (!known.count(k))
            return done(Response::error(400, "Unknown field '" + k.substr(0, 64) + "'"));
          if (!util::valid_utf8(v)) return done(Response::error(400, "Form fields must be UTF-8"));
        }
        std::string next = auth::safe_redirect_target(form_field(*form, "next").value_or("/"));
        if (!form_xsrf_ok(req, *form))
          return done(
              signup_page(*st, req, 403, next, "Your sign-up form expired. Please try again."));
        auto username = form_field(*form, "username").value_or("");
        auto email = form_field(*form, "email").value_or("");
        auto password = form_field(*form, "password").value_or("");
        auto shown_name = username.size() <= 32 ? username : "";
        auto shown_email = email.size() <= 254 ? email : "";
        auto refuse = [&](int status, const std::string& why) {
          done(signup_page(*st, req, status, next, why, shown_name, shown_email));
        };

        std::string addr_key = "signup:" + req.client_address;
        if (auto wait = st->signups_by_address.retry_after(addr_key); wait.count() > 0) {
          auto res = signup_page(*st, req, 429, next,
                                 "Too many sign-ups from your address. Try again in " +
                                     std::to_string(wait.count()) + " s.",
                                 shown_name, shown_email);
          res.set_header("Retry-After", std::to_string(wait.count()));
          return done(std::move(res));
        }
        st->signups_by_address.failure(addr_key);
        if (!auth::valid_username(username))
          return refuse(400,
                        "User names are 1 to 32 characters of a-z, 0-9, '_' and '-', starting with "
                        "a letter.");
        if (auto p = auth::password_problem(password); !p.empty()) return refuse(400, p);
        if (form_field(*form, "password2").value_or("") != password)
          return refuse(400, "The passwords differ.");
        if (!st->accounts.email_domains.empty()) {
          if (auto p = email_problem(email, st->accounts.email_domains); !p.empty())
            return refuse(400, p);
        } else {
          email.clear();
        }
        if (!st->accounts.invite_codes.empty()) {
          auto code = form_field(*form, "invite").value_or("");
          bool match = false;
          for (auto& c : st->accounts.invite_codes) match = util::secure_equals(code, c) || match;
          if (!match) {
            log::info("sign-up refused: wrong invitation code");
            return refuse(403, "That invitation code is not valid.");
          }
        }

        Request copy;
        copy.headers = req.headers;
        copy.secure = req.secure;
        post_login_work(
            *st, "sign-ups",
            [st, ctx, copy = std::move(copy), done, username, email, password, next]() {
              auto added = st->store->add_user(username, password, false, email);
              if (!added.ok()) {
                if (added.error().code == Error::Code::kConflict)
                  return done(signup_page(*st, copy, 409, next,
                                          "That user name is taken. Choose another.", "", email));
                if (added.error().code == Error::Code::kBadRequest)
                  return done(signup_page(*st, copy, 400, next, added.error().message, "", email));
                if (added.error().code == Error::Code::kUnavailable)
                  return done(Response::from_error(added.error()));
                log::error("sign-up failed: " + added.error().message);
                return done(Response::error(500, "Internal server error"));
              }
              log::info("user '" + username + "' signed up" +
                        (email.empty() ? "" : " as " + email));
              changed(*ctx);
              auto user = st->store->find_user(username);
              auto session = user.ok() ? st->store->create_session(user.value())
                                       : Result<auth::NewSession>(user.error());
              if (!session.ok()) {
                log::error("cannot create a session: " + session.error().message);
                return done(redirect("/login"));
              }
              done(set_session(redirect(next), session.value(), copy.secure));
            },
            done);
      },
      pub);

  r.add(
      "GET", "/logout",
      [st](Request& req, Responder done) {
        std::string xsrf;
        if (auto v =
                auth::cookie_value(req.header("cookie"), auth::session_cookie_name(req.secure)))
          if (auto who = st->store->session_identity(*v)) xsrf = who->xsrf;
        if (xsrf.empty()) {
          auto res = redirect("/login");
          clear_session_cookies(res, req.secure);
          return done(std::move(res));
        }
        done(page(200, "Sign out - Skylab",
                  "<h1>Sign out of Skylab?</h1>\n<form method=\"post\" action=\"/logout\">"
                  "<input type=\"hidden\" name=\"_xsrf\" value=\"" +
                      html_escape(xsrf) +
                      "\">"
                      "<button type=\"submit\">Sign out</button></form>"));
      },
      pub);

  r.add("POST", "/logout",
        on_work_queue(ctx,
                      [st, ctx](Request& req, Responder done) {
                        auto secret = auth::cookie_value(req.header("cookie"),
                                                         auth::session_cookie_name(req.secure));
                        std::optional<auth::Identity> who;
                        if (secret) who = st->store->session_identity(*secret);
                        if (who) {
                          std::string presented(req.header("x-xsrftoken"));
                          if (presented.empty())
                            if (auto form = http::parse_form(req.body))
                              presented = form_field(*form, "_xsrf").value_or("");
                          auth::RequestFacts f;
                          f.method = req.method;
                          f.origin = req.header("origin");
                          f.host = req.host;
                          f.presented_xsrf = presented;
                          if (auto v = auth::check_cross_site(*who, f);
                              v != auth::CrossSite::kAllowed)
                            return done(Response::error(403, auth::describe(v)));
                          st->store->end_session(*secret);
                          log::info("user '" + who->username + "' signed out");
                          changed(*ctx);
                        }
                        auto res = redirect("/login");
                        clear_session_cookies(res, req.secure);
                        done(std::move(res));
                      }),
        pub);

  // ---- API tokens of the requesting user
  r.add("GET", "/api/skylab/tokens/?", on_work_queue(ctx, [store](Request& req, Responder done) {
          auto tokens = store->list_tokens(req.user.username);
          if (!tokens.ok()) return done(Response::from_error(tokens.error()));
          json out = json::array();
          for (auto& t : tokens.value()) out.push_back(token_json(t));
          done(Response::json(200, out));
        }));

  r.add("POST", "/api/skylab/tokens/?", on_work_queue(ctx, [store](Request& req, Responder done) {
          auto body = parse_json_body(req.body);
          if (!body.ok()) return done(Response::from_error(body.error()));
          if (auto bad = unknown_fields(body.value(), {"name", "expires_in"})) return done(*bad);
          std::string name = "api";
          if (auto n = body->find("name"); n != body->end() && !n->is_null()) {
            if (!n->is_string()) return done(Response::error(400, "'name' must be a string"));
            name = n->get<std::string>();
            if (name.empty() || name.size() > 100)
              return done(Response::error(400, "'name' must have 1 to 100 characters"));
          }
          std::optional<std::int64_t> lifetime;
          if (auto e = body->find("expires_in"); e != body->end() && !e->is_null()) {
            if (!e->is_number_integer())
              return done(Response::error(400, "'expires_in' must be a number of seconds"));
            auto v = e->get<std::int64_t>();
            if (v < 60 || v > kMaxTokenLifetime)
              return done(Response::error(400, "'expires_in' must be from 60 seconds to 10 years"));
            lifetime = v;
          }
          if (!store->find_user(req.user.username).ok())
            return done(Response::error(
                400, "'" + req.user.username +
                         "' has no account; create one with 'skylab user add' to get API tokens"));
          auto t = store->create_token(req.user.username, name, lifetime);
          if (!t.ok()) return done(Response::from_error(t.error()));
          json out = token_json(t->record);
          out["token"] = t->token;
          auto res = Response::json(201, out);
          res.set_header("Cache-Control", "no-store");
          done(std::move(res));
        }));

  r.add("DELETE", "/api/skylab/tokens/([0-9a-f]{1,64})",
        on_work_queue(ctx, [store, ctx](Request& req, Responder done) {
          auto st = store->revoke_token(req.user.username, req.params[0]);
          if (!st.ok()) return done(Response::from_error(st.error()));
          changed(*ctx);
          done(Response::empty(204));
        }));

  // ---- administration
  r.add(
      "GET", "/api/skylab/users/?", on_work_queue(ctx, [store, ctx](Request& req, Responder done) {
        if (auto no = admin_only(req)) return done(*no);
        auto users = store->list_users();
        if (!users.ok()) return done(Response::from_error(users.error()));
        std::map<std::string, json> kernels;
        for (auto& k : ctx->kernels->list()) {
          auto& list = kernels[k.owner];
          if (list.is_null()) list = json::array();
          list.push_back(kernel_summary(k));
        }
        json out = json::array();
        for (auto& u : users.value()) {
          json j = user_json(u);
          auto it = kernels.find(u.username);
          j["kernels"] = it == kernels.end() ? json::array() : it->second;
          if (it != kernels.end()) kernels.erase(it);
          out.push_back(std::move(j));
        }
        // Owners without an account (the admin token's "admin").
        for (auto& [owner, list] : kernels)
          out.push_back({{"username", owner},
                         {"admin", owner == "admin"},
                         {"disabled", false},
                         {"created", nullptr},
                         {"password_changed", nullptr},
                         {"account", false},
                         {"kernels", list}});
        // Each user's storage use and quota (filesystem queries or bounded walks; on the work
        // queue).
        if (ctx->drive) {
          for (auto& j : out) {
            auth::Identity who;
            who.username = j["username"].get<std::string>();
            auto st = ctx->drive->storage(who);
            j["storage"] = st.ok() ? json{{"used", st->used}, {"quota", st->quota}} : json(nullptr);
          }
        }
        done(Response::json(200, out));
      }));

  r.add("POST", "/api/skylab/users/?",
        on_work_queue(ctx, [store, ctx](Request& req, Responder done) {
          if (auto no = admin_only(req)) return done(*no);
          auto body = parse_json_body(req.body);
          if (!body.ok()) return done(Response::from_error(body.error()));
          if (auto bad = unknown_fields(body.value(), {"username", "password", "admin"}))
            return done(*bad);
          auto u = body->find("username");
          auto p = body->find("password");
          if (u == body->end() || !u->is_string() || p == body->end() || !p->is_string())
            return done(Response::error(400, "'username' and 'password' (strings) are required"));
          bool admin = false;
          if (auto a = body->find("admin"); a != body->end()) {
            if (!a->is_boolean())
              return done(Response::error(400, "'admin' must be true or false"));
            admin = a->get<bool>();
          }
          auto name = u->get<std::string>();
          auto st = store->add_user(name, p->get<std::string>(), admin);
          if (!st.ok()) return done(Response::from_error(st.error()));
          auto rec = store->find_user(name);
          if (!rec.ok()) return done(Response::from_error(rec.error()));
          log::info("user '" + name + "' created by '" + req.user.username + "'");
          audit(*ctx, req.user.username, "user.add", name, admin ? "administrator" : "");
          done(Response::json(201, user_json(rec.value())));
        }));

  r.add("PATCH", "/api/skylab/users/([a-z0-9_-]{1,32})",
        on_work_queue(ctx, [store, ctx](Request& req, Responder done) {
          if (auto no = admin_only(req)) return done(*no);
          auto body = parse_json_body(req.body);
          if (!body.ok()) return done(Response::from_error(body.error()));
          if (auto bad = unknown_fields(body.value(), {"disabled", "admin", "password"}))
            return done(*bad);
          const std::string& name = req.params[0];
          if (!store->find_user(name).ok())
            return done(Response::error(404, "No such user: " + name));
          auto d = body->find("disabled");
          auto a = body->find("admin");
          auto p = body->find("password");
          if ((d != body->end() && !d->is_boolean()) || (a != body->end() && !a->is_boolean()) ||
              (p != body->end() && !p->is_string()))
            return done(Response::error(
                400, "'disabled' and 'admin' must be booleans, 'password' a string"));
          if (p != body->end()) {
            auto st = store->set_password(name, p->get<std::string>());
            if (!st.ok()) return done(Response::from_error(st.error()));
          }
          if (a != body->end()) {
            auto st = store->set_admin(name, a->get<bool>());
            if (!st.ok()) return done(Response::from_error(st.error()));
          }
          if (d != body->end()) {
            auto st = store->set_disabled(name, d->get<bool>());
            if (!st.ok()) return done(Response::from_error(st.error()));
          }
          changed(*ctx);
          if (p != body->end()) audit(*ctx, req.user.username, "user.password", name);
          if (a != body->end())
            audit(*ctx, req.user.username, a->get<bool>() ? "user.admin" : "user.unadmin", name);
          if (d != body->end())
            audit(*ctx, req.user.username, d->get<bool>() ? "user.disable" : "user.enable", name);
          auto rec = store->find_user(name);
          if (!rec.ok()) return done(Response::from_error(rec.error()));
          done(Response::json(200, user_json(rec.value())));
        }));
}

}  // namespace skylab::api
