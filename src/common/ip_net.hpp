// IP addresses and CIDR networks (trusted proxies).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace skylab::net {

//! Whether `entry` is an IPv4/IPv6 address or a CIDR network ("10.0.0.0/8",
//! "fd00::/8") — the form trusted_proxies accepts.
bool valid_proxy_entry(std::string_view entry);
//! Whether the peer address `addr` (as Asio prints it; IPv4-mapped IPv6
//! counts as IPv4) is one of `entries` (addresses or networks). Invalid
//! entries match nothing.
bool address_trusted(std::string_view addr, const std::vector<std::string>& entries);

}  // namespace skylab::net
