// A runtime's own network (issue 12, row 6): a new network namespace with
// outbound NAT through pasta (package passt), in which the host's loopback,
// the host's own addresses, other runtimes and link-local addresses
// (169.254.0.0/16, the cloud metadata service) are unreachable.
//
// Runs in the outer `skylab sandbox-exec` (root, before bubblewrap): the
// routes are set while privileged, and the runtime, which later runs under
// its own uid without CAP_NET_ADMIN in that namespace, cannot undo them.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/result.hpp"

namespace skylab::runtime {

//! The fd number on which the outer `skylab sandbox-exec` hands bubblewrap
//! the runtime's /etc/resolv.conf when DNS goes through pasta's forwarder
//! (`bwrap --ro-bind-data 253 /etc/resolv.conf`).
inline constexpr int kResolvConfFd = 253;

//! Where pasta is (Debian's passt package).
inline constexpr const char* kPastaPath = "/usr/bin/pasta";

//! The nameserver addresses of a resolv.conf text (at most 16, as written).
std::vector<std::string> resolv_nameservers(const std::string& resolv_conf);

//! The address the runtime must send DNS queries to, given the host's
//! resolv.conf and its IPv4 default gateway: "" when the host has a
//! nameserver reachable from another namespace (not loopback), else the
//! gateway, to which pasta's `--dns-forward` answers with the host's first
//! nameserver. "" too when there is no gateway (then no DNS).
std::string dns_forward_address(const std::string& resolv_conf, const std::string& ipv4_gateway);

//! The host's IPv4 default gateway from /proc/net/route ("" if none).
std::string host_ipv4_gateway();

//! The host's own addresses (getifaddrs: every interface, v4 and v6,
//! loopback included), as "ADDR/32" or "ADDR/128" prefixes; plus the
//! link-local 169.254.0.0/16. These are the prefixes a runtime's namespace
//! routes as `prohibit`.
std::vector<std::string> prohibited_prefixes();

//! Moves the calling process (root) into a new network namespace, starts
//! pasta on it (no inbound forwarding, no forwarding to the host's
//! loopback, gateway not mapped to the host; DNS forwarding to
//! `dns_forward` when non-empty), waits until pasta configured it, and
//! routes every prefix of `prohibit` as `prohibit` (connect: EACCES at
//! once). pasta runs in the caller's cgroups, so killing the runtime's
//! cgroup ends it. Error when any step fails: the runtime must not start
//! with a network other than the one asked for.
Status isolate_network(const std::vector<std::string>& prohibit, const std::string& dns_forward);

//! A network namespace whose pasta is still configuring it: the two halves
//! of isolate_network(), for a caller that has other work to do meanwhile
//! (the held start of a templated runtime builds its bubblewrap sandbox
//! while pasta starts). Nothing may run in the namespace but our own code
//! until finish_isolated_network() succeeded.
struct PendingNetwork {
  pid_t pasta = -1;                   //!< pasta's first process (exits once configured)
  std::vector<std::string> prohibit;  //!< prefixes routed as `prohibit` when it is
};
//! isolate_network() up to starting pasta: the caller is in the new
//! namespace, pasta is starting on it.
Result<PendingNetwork> start_isolated_network(std::vector<std::string> prohibit,
                                              const std::string& dns_forward);
//! The rest of isolate_network(): waits until pasta configured the
//! namespace, then sets the prohibit routes (in the caller's namespace).
Status finish_isolated_network(PendingNetwork& net);

//! The outer `skylab sandbox-exec`'s isolation step, before it execs
//! bubblewrap: isolate_network() with the host's prohibited_prefixes() when
//! `isolated_net`; a resolv.conf "nameserver `dns_forward`" on
//! kResolvConfFd when non-empty; the default seccomp filter on kSeccompFd
//! when `seccomp`. Both fds stay open across exec (bwrap reads them).
//! With `pending` (and `isolated_net`), the network is only started
//! (start_isolated_network) and left in `*pending` for the caller to finish
//! before anything but our own code runs in the namespace.
Status isolate_runtime(bool isolated_net, const std::string& dns_forward, bool seccomp,
                       PendingNetwork* pending = nullptr);

}  // namespace skylab::runtime
