// Transport-neutral HTTP request/response types. Handlers see only these;
// Boost.Beast stays inside server.cpp.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "auth/auth.hpp"
#include "common/result.hpp"

namespace skylab::http {

//! One parsed request. `path` is percent-decoded; `params` holds the route's
//! captured groups (decoded). Header names are lower case.
struct Request {
  std::string method;
  std::string target;  //!< raw target, including the query; never log it
  std::string path;
  std::map<std::string, std::string> query;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::vector<std::string> params;
  auth::Identity user;
  std::string client_address;  //!< peer IP, or X-Forwarded-For's last hop from a trusted proxy
  std::string host;            //!< Host, or X-Forwarded-Host from a trusted proxy
  bool secure = false;         //!< arrived over TLS (--secure-cookies, or a trusted proxy said so)

  //! First header with this (lower-case) name, or empty.
  std::string_view header(std::string_view name) const;
  //! Query parameter, or nullopt.
  std::optional<std::string> query_param(const std::string& name) const;
};

//! An open regular file sent as a response body, streamed from disk in
//! bounded memory. Owns (and closes) the descriptor.
struct FileBody {
  explicit FileBody(int fd) : fd(fd) {}
  ~FileBody();
  FileBody(const FileBody&) = delete;
  FileBody& operator=(const FileBody&) = delete;
  int fd;
};

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  //! When set, the body is this file's content (from its current offset to
  //! its end) and `body` is ignored.
  std::shared_ptr<FileBody> file;

  //! `body` as compact JSON with '<', '>' and '&' written as \u003c, \u003e,
  //! \u0026 (replies carry users' strings: none can be rendered as HTML) and
  //! invalid UTF-8 replaced by U+FFFD.
  static Response json(int status, const nlohmann::json& body);
  //! Jupyter-style error body `{"message": m, "reason": null}`.
  static Response error(int status, std::string_view message);
  static Response from_error(const Error& e);
  static Response empty(int status);
  void set_header(std::string name, std::string value);
};

//! Decodes an `application/x-www-form-urlencoded` body (or query string);
//! the first value of a repeated name wins. Nullopt when malformed.
std::optional<std::map<std::string, std::string>> parse_form(std::string_view body);

//! Completes a request; may be called from any thread, exactly once.
using Responder = std::function<void(Response)>;

//! The HTTP status that an Error maps to.
int status_for(const Error& e);

}  // namespace skylab::http
