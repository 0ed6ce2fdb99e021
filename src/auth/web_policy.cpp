#include "auth/web_policy.hpp"

#include <cctype>

#include "auth/crypto.hpp"
#include "common/util.hpp"

namespace skylab::auth {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Splits "host[:port]" (IPv6 in brackets) and fills in the default port.
// Returns false when malformed.
bool split_authority(std::string_view auth, std::string_view default_port, std::string& host,
                     std::string& port) {
  if (auth.empty()) return false;
  for (char c : auth)
    if (static_cast<unsigned char>(c) <= 0x20 || c == '/' || c == '@' || c == '\\' || c == '?' ||
        c == '#')
      return false;
  std::string_view h = auth, p;
  if (auth.front() == '[') {
    auto close = auth.find(']');
    if (close == std::string_view::npos) return false;
    h = auth.substr(0, close + 1);
    auto rest = auth.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      p = rest.substr(1);
    }
  } else {
    auto colon = auth.rfind(':');
    if (colon != std::string_view::npos) {
      h = auth.substr(0, colon);
      p = auth.substr(colon + 1);
      if (h.find(':') != std::string_view::npos) return false;
    }
  }
  if (h.empty()) return false;
  if (p.empty()) p = default_port;
  for (char c : p)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  while (p.size() > 1 && p.front() == '0') p.remove_prefix(1);
  host = lower(h);
  port = std::string(p);
  return !port.empty();
}

}  // namespace

std::string_view session_cookie_name(bool secure) {
  return secure ? "__Host-skylab_session" : "skylab_session";
}

std::string set_cookie(std::string_view name, std::string_view value, bool http_only, bool secure,
                       long long max_age_seconds) {
  std::string c;
  c.append(name).append("=").append(value).append("; Path=/; SameSite=Lax");
  if (max_age_seconds >= 0) c.append("; Max-Age=").append(std::to_string(max_age_seconds));
  if (http_only) c.append("; HttpOnly");
  if (secure) c.append("; Secure");
  return c;
}

std::optional<std::string_view> cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    auto semi = header.find(';');
    auto pair = trim(header.substr(0, semi));
    header = semi == std::string_view::npos ? std::string_view{} : header.substr(semi + 1);
    auto eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    if (trim(pair.substr(0, eq)) != name) continue;
    auto v = trim(pair.substr(eq + 1));
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    return v;
  }
  return std::nullopt;
}

std::string xsrf_token_for_session(std::string_view session_secret) {
  return sha256_hex(std::string("skylab-xsrf-v1:").append(session_secret));
}

bool is_safe_redirect(std::string_view next) {
  if (next.empty() || next.size() > 2048) return false;
  if (next.front() != '/') return false;  // "https://x", "https:///x", "evil.com", "\\evil"
  if (next.size() > 1 && (next[1] == '/' || next[1] == '\\')) return false;  // "//evil", "/\evil"
  for (char c : next) {
    auto u = static_cast<unsigned char>(c);
    // Browsers drop tabs and newlines from URLs ("/\t/evil" is "//evil") and
    // read '\' as '/'; refuse them, spaces and anything non-ASCII outright.
    if (u < 0x21 || u >= 0x7f || c == '\\') return false;
  }
  // An encoded slash or backslash right after the first one is refused too,
  // in case something on the way decodes it.
  auto rest = lower(next.substr(1, 3));
  if (rest == "%2f" || rest == "%5c") return false;
  return true;
}

std::string safe_redirect_target(std::string_view next) {
  return is_safe_redirect(next) ? std::string(next) : std::string("/");
}

bool is_safe_method(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS";
}

bool origin_matches_host(std::string_view origin, std::string_view host) {
  auto sep = origin.find("://");
  if (sep == std::string_view::npos) return false;
  auto scheme = lower(origin.substr(0, sep));
  std::string_view def;
  if (scheme == "http" || scheme == "ws")
    def = "80";
  else if (scheme == "https" || scheme == "wss")
    def = "443";
  else
    return false;
  std::string oh, op, hh, hp;
  if (!split_authority(origin.substr(sep + 3), def, oh, op)) return false;
  if (!split_authority(trim(host), def, hh, hp)) return false;
  return oh == hh && op == hp;
}

CrossSite check_cross_site(const Identity& who, const RequestFacts& f) {
  if (!who.by_cookie()) return CrossSite::kAllowed;
  if (f.websocket) {
    if (f.origin.empty() || !origin_matches_host(f.origin, f.host))
      return CrossSite::kForeignOrigin;
    return CrossSite::kAllowed;
  }
  if (is_safe_method(f.method)) return CrossSite::kAllowed;
  if (!f.origin.empty() && !origin_matches_host(f.origin, f.host)) return CrossSite::kForeignOrigin;
  if (f.presented_xsrf.empty()) return CrossSite::kMissingXsrf;
  if (who.xsrf.empty() || !util::secure_equals(f.presented_xsrf, who.xsrf))
    return CrossSite::kBadXsrf;
  return CrossSite::kAllowed;
}

const char* describe(CrossSite v) {
  switch (v) {
    case CrossSite::kAllowed:
      return "allowed";
    case CrossSite::kMissingXsrf:
      return "Forbidden: '_xsrf' argument missing (send the X-XSRFToken header)";
    case CrossSite::kBadXsrf:
      return "Forbidden: XSRF cookie does not match";
    case CrossSite::kForeignOrigin:
      return "Forbidden: cross-origin request refused";
  }
  return "Forbidden";
}

}  // namespace skylab::auth
