#include "http/message.hpp"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/json_io.hpp"
#include "common/util.hpp"

namespace skylab::http {

FileBody::~FileBody() {
  if (fd >= 0) ::close(fd);
}

std::string_view Request::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return v;
  return {};
}

std::optional<std::string> Request::query_param(const std::string& name) const {
  auto it = query.find(name);
  if (it == query.end()) return std::nullopt;
  return it->second;
}

Response Response::json(int status, const nlohmann::json& body) {
  Response r;
  r.status = status;
  // Invalid UTF-8 (data from kernels or users may carry it) is replaced, not
  // thrown; '<', '>' and '&' are escaped, so no reply can be rendered as HTML.
  json_io::write_json(r.body, body, json_io::JsonStyle{-1, true});
  r.headers.emplace_back("Content-Type", "application/json");
  return r;
}

Response Response::error(int status, std::string_view message) {
  return json(status, {{"message", std::string(message)}, {"reason", nullptr}});
}

Response Response::from_error(const Error& e) {
  Response r = error(status_for(e), e.message);
  // Unavailable is temporary (a busy database, a full queue): say when to retry.
  if (r.status == 503) r.set_header("Retry-After", "1");
  return r;
}

Response Response::empty(int status) {
  Response r;
  r.status = status;
  return r;
}

std::optional<std::map<std::string, std::string>> parse_form(std::string_view body) {
  std::map<std::string, std::string> out;
  while (!body.empty()) {
    auto amp = body.find('&');
    auto pair = body.substr(0, amp);
    body = amp == std::string_view::npos ? std::string_view{} : body.substr(amp + 1);
    if (pair.empty()) continue;
    auto eq = pair.find('=');
    auto k = util::url_decode(pair.substr(0, eq), true);
    auto v = util::url_decode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true);
    if (!k || !v) return std::nullopt;
    out.emplace(std::move(*k), std::move(*v));
  }
  return out;
}

void Response::set_header(std::string name, std::string value) {
  for (auto& [k, v] : headers) {
    if (k == name) {
      v = std::move(value);
      return;
    }
  }
  headers.emplace_back(std::move(name), std::move(value));
}

int status_for(const Error& e) {
  switch (e.code) {
    case Error::Code::kBadRequest:
      return 400;
    case Error::Code::kForbidden:
      return 403;
    case Error::Code::kNotFound:
      return 404;
    case Error::Code::kConflict:
      return 409;
    case Error::Code::kTooLarge:
      return 413;
    case Error::Code::kUnavailable:
      return 503;
    case Error::Code::kInternal:
      return 500;
    case Error::Code::kInsufficientStorage:
      return 507;
  }
  return 500;
}

}  // namespace skylab::http
