// Private to config*.cpp: the operators' keys ([server] tls_cert, tls_key,
// trusted_proxies; [metrics]; [log]). Unknown-key checks of the root and of
// [server] stay in parse_config.
#pragma once

#include <toml++/toml.h>

#include "common/result.hpp"
#include "runtime/config.hpp"

namespace skylab::runtime {

//! Fills c.server.tls_*, c.server.trusted_proxies and c.ops from `root`;
//! errors name the key.
Status parse_ops_config(const toml::table& root, Config& c);

}  // namespace skylab::runtime
