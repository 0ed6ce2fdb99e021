// The notebook app in the browser: its HTML shell for the app's routes,
// its static assets and the sandboxed frame that renders untrusted outputs.
#include <filesystem>
#include <fstream>
#include <regex>

#include "api/api.hpp"
#include "api/token_login.hpp"
#include "auth/account_store.hpp"
#include "auth/web_policy.hpp"
#include "common/log.hpp"
#include "common/util.hpp"

namespace skylab::api {

using http::Request;
using http::Responder;
using http::Response;

namespace {

namespace fs = std::filesystem;

std::string content_type_for(const std::string& name) {
  auto dot = name.rfind('.');
  std::string ext = dot == std::string::npos ? "" : name.substr(dot + 1);
  if (ext == "js") return "text/javascript; charset=utf-8";
  if (ext == "css") return "text/css; charset=utf-8";
  if (ext == "html") return "text/html; charset=utf-8";
  if (ext == "json" || ext == "map") return "application/json";
  if (ext == "svg") return "image/svg+xml";
  if (ext == "png") return "image/png";
  if (ext == "ico") return "image/x-icon";
  if (ext == "woff2") return "font/woff2";
  if (ext == "woff") return "font/woff";
  if (ext == "ttf") return "font/ttf";
  return "application/octet-stream";
}

// Reads a file below `dir`; nullopt when absent or not a regular file.
std::optional<std::string> read_file(const fs::path& p) {
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return std::nullopt;
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A static asset name: segments of [A-Za-z0-9._-], none of them "." or "..".
bool safe_asset_name(const std::string& name) {
  static const std::regex ok(
      "([A-Za-z0-9_-][A-Za-z0-9._-]{0,127})(/[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}){0,4}");
  if (name.size() > 512 || !std::regex_match(name, ok)) return false;
  return name.find("..") == std::string::npos;
}

}  // namespace

std::string app_csp(const std::string& output_origin) {
  std::string frames = "'self'";
  if (!output_origin.empty()) frames += " " + output_origin;
  return "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' "
         "data: blob:; "
         "font-src 'self' data:; connect-src 'self' ws: wss:; frame-src " +
         frames +
         "; worker-src 'self' blob:; manifest-src 'self'; base-uri 'none'; form-action 'self'; "
         "frame-ancestors 'none'";
}

void add_web_routes(http::Router& r, std::shared_ptr<const Context> ctx) {
  http::RouteOptions pub;
  pub.public_route = true;
  const fs::path dir = ctx->web_dir;

  // The app's pages: the same HTML shell; the script routes by path.
  auto shell = [ctx, dir](Request& req, Responder done) {
    if (auto login = token_login(*ctx, req, encode_path(req.path))) return done(std::move(*login));
    if (ctx->accounts) {
      bool signed_in = false;
      if (auto v = auth::cookie_value(req.header("cookie"), auth::session_cookie_name(req.secure)))
        signed_in = ctx->accounts->session_identity(*v).has_value();
      if (!signed_in) {
        std::string next = req.path;
        Response res;
        res.status = 303;
        res.set_header("Location", "/login?next=" + util::url_encode(next));
        res.set_header("Cache-Control", "no-store");
        return done(std::move(res));
      }
    }
    auto html = dir.empty() ? std::nullopt : read_file(dir / "index.html");
    if (!html) {
      log::warn("the web app is not built (no index.html in '" + dir.string() + "'); run make");
      return done(Response::error(
          503, "The web app is not built on this server (run make, or pass --web-dir)"));
    }
    Response res;
    res.body = std::move(*html);
    res.set_header("Content-Type", "text/html; charset=utf-8");
    res.set_header("Cache-Control", "no-store");
    res.set_header("Content-Security-Policy", app_csp(ctx->output_origin));
    res.set_header("Referrer-Policy", "same-origin");
    done(std::move(res));
  };
  r.add("GET", "/", shell, pub);
  r.add("GET", "/(drive|recent|shared)(/[\\s\\S]*)?", shell, pub);
  r.add("GET", "/notebooks/([\\s\\S]+)", shell, pub);
  r.add("GET", "/(usage|admin)/?", shell, pub);  // the Usage page, the admin page (web/src/usage)

  r.add(
      "GET", "/static/([\\s\\S]+)",
      [dir](Request& req, Responder done) {
        const std::string& name = req.params[0];
        if (dir.empty() || !safe_asset_name(name)) return done(Response::error(404, "Not found"));
        auto body = read_file(dir / "static" / name);
        if (!body) return done(Response::error(404, "Not found"));
        Response res;
        res.body = std::move(*body);
        res.set_header("Content-Type", content_type_for(name));
        res.set_header("Cache-Control", "public, max-age=31536000, immutable");
        res.set_header("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'");
        done(std::move(res));
      },
      pub);

  // The page that renders text/html and JavaScript outputs. It always runs
  // sandboxed (an opaque origin, whatever the embedding iframe says): it
  // can neither read the app's cookies nor call its API with them.
  r.add(
      "GET", "/output-frame",
      [dir](Request&, Responder done) {
        auto body = dir.empty() ? std::nullopt : read_file(dir / "frame.html");
        if (!body) return done(Response::error(404, "Not found"));
        Response res;
        res.body = std::move(*body);
        res.set_header("Content-Type", "text/html; charset=utf-8");
        res.set_header("Cache-Control", "public, max-age=3600");
        res.set_header("Content-Security-Policy",
                       "sandbox allow-scripts allow-popups allow-popups-to-escape-sandbox "
                       "allow-forms allow-modals "
                       "allow-downloads; default-src * data: blob: 'unsafe-inline' 'unsafe-eval'; "
                       "frame-ancestors *");
        res.set_header("X-Frame-Options", "SAMEORIGIN");
        done(std::move(res));
      },
      pub);
}

}  // namespace skylab::api
