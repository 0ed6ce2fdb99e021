// Route table: method + path pattern -> handler, with per-route limits.
#pragma once

#include <functional>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "http/message.hpp"
#include "http/websocket.hpp"

namespace skylab::http {

using Handler = std::function<void(Request&, Responder)>;

//! Result of accepting a WebSocket upgrade: a handler and the subprotocol
//! to answer with, or an HTTP error response that refuses the upgrade.
struct Upgrade {
  std::shared_ptr<WebSocketHandler> handler;
  std::string subprotocol;
  std::optional<Response> refuse;
};
using UpgradeHandler = std::function<Upgrade(Request&)>;

struct RouteOptions {
  std::size_t body_limit = 1 << 20;  //!< bytes; larger bodies get 413
  bool public_route = false;         //!< true: no authentication required
};

struct Route {
  std::string method;  //!< "GET", "POST", ... or "WS" for upgrades
  std::string pattern;
  std::regex regex;
  Handler handler;
  UpgradeHandler upgrade;
  RouteOptions options;
};

//! Immutable after start-up; lookups are thread-safe.
class Router {
 public:
  void add(std::string method, std::string pattern, Handler h, RouteOptions o = {});
  void add_websocket(std::string pattern, UpgradeHandler h, RouteOptions o = {});

  //! Finds the route for method and decoded path; fills `params`. Sets
  //! `path_exists` when some route matches the path with another method.
  const Route* match(std::string_view method, const std::string& path,
                     std::vector<std::string>& params, bool& path_exists) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
};

}  // namespace skylab::http
