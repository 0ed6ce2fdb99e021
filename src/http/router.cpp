#include "http/router.hpp"

namespace skylab::http {

void Router::add(std::string method, std::string pattern, Handler h, RouteOptions o) {
  Route r;
  r.method = std::move(method);
  r.regex = std::regex(pattern, std::regex::ECMAScript | std::regex::optimize);
  r.pattern = std::move(pattern);
  r.handler = std::move(h);
  r.options = o;
  routes_.push_back(std::move(r));
}

void Router::add_websocket(std::string pattern, UpgradeHandler h, RouteOptions o) {
  Route r;
  r.method = "WS";
  r.regex = std::regex(pattern, std::regex::ECMAScript | std::regex::optimize);
  r.pattern = std::move(pattern);
  r.upgrade = std::move(h);
  r.options = o;
  routes_.push_back(std::move(r));
}

const Route* Router::match(std::string_view method, const std::string& path,
                           std::vector<std::string>& params, bool& path_exists) const {
  path_exists = false;
  std::smatch m;
  for (const auto& r : routes_) {
    if (!std::regex_match(path, m, r.regex)) continue;
    if (r.method != method) {
      path_exists = true;
      continue;
    }
    params.clear();
    for (std::size_t i = 1; i < m.size(); ++i) params.push_back(m[i].str());
    return &r;
  }
  return nullptr;
}

}  // namespace skylab::http
