#include "runtime/config_ops.hpp"

#include "common/ip_net.hpp"

namespace skylab::runtime {
namespace {

Status string_key(const toml::table& t, const std::string& prefix, const char* key,
                  std::string& out, std::size_t max = 4096) {
  auto* n = t.get(key);
  if (!n) return ok_status();
  auto v = n->value_exact<std::string>();
  if (!v || v->size() > max || v->find('\0') != std::string::npos)
    return Error::bad_request("config: " + prefix + key + ": expected a string");
  out = *v;
  return ok_status();
}

}  // namespace

Status parse_ops_config(const toml::table& root, Config& c) {
  if (auto* sv = root.get_as<toml::table>("server")) {
    if (auto st = string_key(*sv, "server.", "tls_cert", c.server.tls_cert); !st.ok()) return st;
    if (auto st = string_key(*sv, "server.", "tls_key", c.server.tls_key); !st.ok()) return st;
    if (c.server.tls_cert.empty() != c.server.tls_key.empty())
      return Error::bad_request("config: server.tls_cert and server.tls_key: give both or neither");
    if (auto* node = sv->get("trusted_proxies")) {
      auto* arr = node->as_array();
      if (!arr || arr->size() > 1024)
        return Error::bad_request(
            "config: server.trusted_proxies: expected a list of addresses or networks");
      for (auto& item : *arr) {
        auto v = item.value_exact<std::string>();
        if (!v || !net::valid_proxy_entry(*v))
          return Error::bad_request(
              "config: server.trusted_proxies: invalid entry (an IP address or a CIDR "
              "network such as \"10.0.0.0/8\")");
        c.server.trusted_proxies.push_back(*v);
      }
    }
  }
  if (auto* m = root.get_as<toml::table>("metrics")) {
    for (auto& [k, _] : *m)
      if (k.str() != "token")
        return Error::bad_request("config: metrics." + std::string(k.str()) + ": unknown key");
    if (auto st = string_key(*m, "metrics.", "token", c.ops.metrics_token, 256); !st.ok())
      return st;
    if (!c.ops.metrics_token.empty() && c.ops.metrics_token.size() < 16)
      return Error::bad_request("config: metrics.token: use at least 16 characters");
  } else if (root.contains("metrics")) {
    return Error::bad_request("config: metrics: expected a table");
  }
  if (auto* l = root.get_as<toml::table>("log")) {
    for (auto& [k, _] : *l)
      if (k.str() != "format")
        return Error::bad_request("config: log." + std::string(k.str()) + ": unknown key");
    std::string format = "text";
    if (auto st = string_key(*l, "log.", "format", format, 16); !st.ok()) return st;
    if (format != "text" && format != "json")
      return Error::bad_request("config: log.format: expected \"text\" or \"json\"");
    c.ops.log_json = format == "json";
  } else if (root.contains("log")) {
    return Error::bad_request("config: log: expected a table");
  }
  return ok_status();
}

}  // namespace skylab::runtime
