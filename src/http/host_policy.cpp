#include "http/host_policy.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

namespace skylab::http {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string normalize_entry(std::string_view e) {
  if (e.size() >= 2 && e.front() == '[' && e.back() == ']') e = e.substr(1, e.size() - 2);
  return lower(e);
}

bool valid_port(std::string_view p) {
  if (p.empty() || p.size() > 5) return false;
  return std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

std::optional<std::string> host_of(std::string_view v) {
  if (v.empty() || v.size() > 255) return std::nullopt;
  std::string_view host;
  if (v.front() == '[') {
    auto close = v.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = v.substr(1, close - 1);
    auto rest = v.substr(close + 1);
    if (!rest.empty() && (rest.front() != ':' || !valid_port(rest.substr(1)))) return std::nullopt;
    for (char c : host)
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.')
        return std::nullopt;
  } else {
    auto colon = v.find(':');
    host = v.substr(0, colon);
    if (colon != std::string_view::npos && !valid_port(v.substr(colon + 1))) return std::nullopt;
    for (char c : host)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_')
        return std::nullopt;
  }
  if (host.empty()) return std::nullopt;
  return lower(host);
}

bool host_allowed(std::string_view header_value, const std::vector<std::string>& allowed) {
  if (allowed.empty()) return true;
  if (std::find(allowed.begin(), allowed.end(), "*") != allowed.end()) return true;
  auto host = host_of(header_value);
  if (!host) return false;
  // A trailing dot names the same host ("localhost." is localhost).
  if (host->size() > 1 && host->back() == '.') host->pop_back();
  for (const auto& e : allowed)
    if (normalize_entry(e) == *host) return true;
  return false;
}

std::vector<std::string> default_allowed_hosts(const std::string& listen_host,
                                               const std::vector<std::string>& extra) {
  std::vector<std::string> out = {"localhost", "127.0.0.1", "::1"};
  auto add = [&](std::string h) {
    h = normalize_entry(h);
    if (!h.empty() && std::find(out.begin(), out.end(), h) == out.end())
      out.push_back(std::move(h));
  };
  add(listen_host);
  if (listen_host.empty() || listen_host == "0.0.0.0" || listen_host == "::" ||
      listen_host == "[::]") {
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) == 0 && name[0]) add(name);
    ifaddrs* ifs = nullptr;
    if (::getifaddrs(&ifs) == 0) {
      for (ifaddrs* i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr) continue;
        char buf[INET6_ADDRSTRLEN] = {};
        if (i->ifa_addr->sa_family == AF_INET) {
          ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf,
                      sizeof buf);
        } else if (i->ifa_addr->sa_family == AF_INET6) {
          auto* a6 = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
          if (IN6_IS_ADDR_LINKLOCAL(&a6->sin6_addr)) continue;  // needs a zone id in a URL
          ::inet_ntop(AF_INET6, &a6->sin6_addr, buf, sizeof buf);
        } else {
          continue;
        }
        add(buf);
      }
      ::freeifaddrs(ifs);
    }
  }
  for (const auto& e : extra) add(e);
  return out;
}

}  // namespace skylab::http
