// The Host allow-list against DNS rebinding: a page on evil.example whose
// name an attacker re-points at 127.0.0.1 reaches the server with
// `Host: evil.example`. Only names the operator serves under are accepted.
// Pure functions; no I/O except default_allowed_hosts().
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace skylab::http {

//! The host of a Host header value ("name", "name:port", "1.2.3.4:port",
//! "[v6]", "[v6]:port"), lower case, without brackets or port. nullopt when
//! empty or malformed (a bad port, characters a host name cannot have).
std::optional<std::string> host_of(std::string_view header_value);

//! Whether `header_value` names a host in `allowed` (any port). Entries are
//! host names or addresses, compared case-insensitively; "[::1]" and "::1"
//! are the same; "*" allows everything. An empty `allowed` allows everything
//! (no list configured). A missing or malformed Host is refused otherwise.
bool host_allowed(std::string_view header_value, const std::vector<std::string>& allowed);

//! The list for a server listening on `listen_host`: that address,
//! "localhost", "127.0.0.1" and "::1"; when it listens on every address
//! (0.0.0.0, ::, empty) also the machine's host name and the addresses of its
//! interfaces. `extra` (from [server] allowed_hosts) is appended.
std::vector<std::string> default_allowed_hosts(const std::string& listen_host,
                                               const std::vector<std::string>& extra = {});

}  // namespace skylab::http
