#include "runtime/netns.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "runtime/seccomp.hpp"

namespace skylab::runtime {

namespace {

Error sys_error(const std::string& what) {
  return Error::internal("network: " + what + ": " + std::strerror(errno));
}

bool is_loopback_address(const std::string& a) {
  in_addr v4{};
  if (::inet_pton(AF_INET, a.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (::inet_pton(AF_INET6, a.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

// RTM_NEWROUTE "prohibit PREFIX" in the calling process's network namespace.
Status add_prohibit_route(int sock, const std::string& prefix) {
  auto slash = prefix.find('/');
  if (slash == std::string::npos) return Error::internal("network: bad prefix " + prefix);
  std::string addr = prefix.substr(0, slash);
  int len = std::atoi(prefix.c_str() + slash + 1);
  struct {
    nlmsghdr n;
    rtmsg r;
    char attrs[64];
  } req{};
  unsigned char bytes[16];
  int family = AF_INET;
  std::size_t alen = 4;
  if (::inet_pton(AF_INET, addr.c_str(), bytes) != 1) {
    if (::inet_pton(AF_INET6, addr.c_str(), bytes) != 1)
      return Error::internal("network: bad prefix " + prefix);
    family = AF_INET6;
    alen = 16;
  }
  if (len < 0 || len > static_cast<int>(alen * 8))
    return Error::internal("network: bad prefix " + prefix);
  req.n.nlmsg_len = NLMSG_LENGTH(sizeof(rtmsg));
  req.n.nlmsg_type = RTM_NEWROUTE;
  req.n.nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK;
  req.r.rtm_family = static_cast<unsigned char>(family);
  req.r.rtm_dst_len = static_cast<unsigned char>(len);
  req.r.rtm_table = RT_TABLE_MAIN;
  req.r.rtm_protocol = RTPROT_STATIC;
  req.r.rtm_scope = RT_SCOPE_UNIVERSE;
  req.r.rtm_type = RTN_PROHIBIT;
  auto* rta =
      reinterpret_cast<rtattr*>(reinterpret_cast<char*>(&req) + NLMSG_ALIGN(req.n.nlmsg_len));
  rta->rta_type = RTA_DST;
  rta->rta_len = static_cast<unsigned short>(RTA_LENGTH(alen));
  std::memcpy(RTA_DATA(rta), bytes, alen);
  req.n.nlmsg_len = NLMSG_ALIGN(req.n.nlmsg_len) + RTA_ALIGN(rta->rta_len);
  if (::send(sock, &req, req.n.nlmsg_len, 0) < 0) return sys_error("netlink send");
  char buf[512];
  ssize_t n = ::recv(sock, buf, sizeof buf, 0);
  if (n < 0) return sys_error("netlink recv");
  auto* h = reinterpret_cast<nlmsghdr*>(buf);
  if (n < static_cast<ssize_t>(NLMSG_LENGTH(sizeof(nlmsgerr))) || h->nlmsg_type != NLMSG_ERROR)
    return Error::internal("network: unexpected netlink answer for " + prefix);
  int err = reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
  if (err != 0) {
    errno = -err;
    return sys_error("route prohibit " + prefix);
  }
  return ok_status();
}

}  // namespace

std::vector<std::string> resolv_nameservers(const std::string& resolv_conf) {
  std::vector<std::string> out;
  std::istringstream in(resolv_conf);
  std::string line;
  while (out.size() < 16 && std::getline(in, line)) {
    std::istringstream words(line);
    std::string key, value;
    if (words >> key >> value && key == "nameserver") out.push_back(value);
  }
  return out;
}

std::string dns_forward_address(const std::string& resolv_conf, const std::string& ipv4_gateway) {
  auto servers = resolv_nameservers(resolv_conf);
  if (servers.empty()) return {};  // glibc then asks 127.0.0.1 (nothing there in a runtime either)
  for (auto& s : servers)
    if (!is_loopback_address(s)) return {};
  return ipv4_gateway;
}

std::string host_ipv4_gateway() {
  std::ifstream in("/proc/net/route");
  std::string line;
  std::getline(in, line);  // header
  for (int i = 0; i < 4096 && std::getline(in, line); ++i) {
    std::istringstream f(line);
    std::string iface, dest, gw;
    if (!(f >> iface >> dest >> gw) || dest != "00000000") continue;
    in_addr a{};
    a.s_addr = static_cast<in_addr_t>(
        std::stoul(gw, nullptr, 16));  // /proc writes network byte order as hex
    char text[INET_ADDRSTRLEN];
    if (a.s_addr != 0 && ::inet_ntop(AF_INET, &a, text, sizeof text)) return text;
  }
  return {};
}

std::vector<std::string> prohibited_prefixes() {
  std::vector<std::string> out = {"169.254.0.0/16"};
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr) continue;
    char text[INET6_ADDRSTRLEN];
    if (i->ifa_addr->sa_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(i->ifa_addr);
      if (::inet_ntop(AF_INET, &a->sin_addr, text, sizeof text) && !is_loopback_address(text))
        out.push_back(std::string(text) + "/32");
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
      if (::inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text) && !is_loopback_address(text))
        out.push_back(std::string(text) + "/128");
    }
    if (out.size() >= 1024) break;  // bounded: a host with thousands of addresses keeps the first
  }
  ::freeifaddrs(list);
  return out;
}

Result<PendingNetwork> start_isolated_network(std::vector<std::string> prohibit,
                                              const std::string& dns_forward) {
  if (::access(kPastaPath, X_OK) != 0)
    return Error::unavailable(std::string("network: ") + kPastaPath +
                              " is missing (install Debian's passt)");
  int host = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (host < 0) return sys_error("open /proc/self/ns/net");
  if (::unshare(CLONE_NEWNET) != 0) {
    ::close(host);
    return sys_error("unshare(CLONE_NEWNET)");
  }
  int ns = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (ns < 0) {
    ::close(host);
    return sys_error("open /proc/self/ns/net");
  }
  // pasta drops to nobody unless told otherwise, and nobody may not join a
  // namespace owned by the initial user namespace; as root it keeps only
  // CAP_NET_BIND_SERVICE and CAP_SYS_ADMIN, sets no_new_privs, installs its
  // own seccomp filter and moves into an empty mount namespace. It reaches
  // the namespace through its own /proc/self/fd/3 (opening /proc/PID/ns/net
  // of a fully privileged process needs CAP_SYS_PTRACE it no longer has).
  std::vector<std::string> args = {
      kPastaPath, "--config-net", "--quiet", "--runas", "0:0",
      // no inbound forwarding, nothing from the namespace to the host's loopback
      "--tcp-ports", "none", "--udp-ports", "none", "--tcp-ns", "none", "--udp-ns", "none",
      // the gateway is the real gateway, not an alias of the host's loopback
      "--no-map-gw",
      // the namespace is an fd, not a file; it lives as long as the runtime's cgroup
      "--no-netns-quit", "--netns", "/proc/self/fd/3"};
  if (!dns_forward.empty()) args.insert(args.end(), {"--dns-forward", dns_forward});
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(ns);
    ::close(host);
    return sys_error("fork");
  }
  if (pid == 0) {
    // pasta starts in the host's namespace (its sockets are the NAT).
    if (::setns(host, CLONE_NEWNET) != 0) ::_exit(125);
    int devnull = ::open("/dev/null", O_RDWR);
    if (devnull < 0 || ::dup2(devnull, 0) < 0 || ::dup2(devnull, 1) < 0 || ::dup2(ns, 3) != 3)
      ::_exit(125);
    ::syscall(SYS_close_range, 4U, ~0U, 0U);
    ::execv(kPastaPath, argv.data());
    ::_exit(127);
  }
  ::close(ns);
  ::close(host);
  return PendingNetwork{pid, std::move(prohibit)};
}

Status finish_isolated_network(PendingNetwork& net) {
  if (net.pasta <= 0) return Error::internal("network: pasta was not started");
  int status = 0;
  while (::waitpid(net.pasta, &status, 0) < 0) {
    if (errno != EINTR) return sys_error("waitpid pasta");
  }
  net.pasta = -1;
  // pasta's first process returns once the namespace is configured and the
  // daemon runs.
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return Error::internal("network: pasta failed (status " + std::to_string(status) + ")");
  int sock = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (sock < 0) return sys_error("netlink socket");
  Status st = ok_status();
  for (auto& p : net.prohibit) {
    st = add_prohibit_route(sock, p);
    if (!st.ok()) break;
  }
  ::close(sock);
  return st;
}

namespace {
// Moves `fd` to `target` without O_CLOEXEC, so that bwrap inherits it.
Status hand_over(int fd, int target) {
  if (::dup2(fd, target) != target) {
    ::close(fd);
    return sys_error("dup2");
  }
  ::close(fd);
  return ok_status();
}
}  // namespace

Status isolate_network(const std::vector<std::string>& prohibit, const std::string& dns_forward) {
  auto net = start_isolated_network(prohibit, dns_forward);
  if (!net.ok()) return net.error();
  return finish_isolated_network(net.value());
}

Status isolate_runtime(bool isolated_net, const std::string& dns_forward, bool seccomp,
                       PendingNetwork* pending) {
  if (isolated_net && pending) {
    auto net = start_isolated_network(prohibited_prefixes(), dns_forward);
    if (!net.ok()) return net.error();
    *pending = std::move(net.value());
  } else if (isolated_net) {
    auto st = isolate_network(prohibited_prefixes(), dns_forward);
    if (!st.ok()) return st;
  }
  if (!dns_forward.empty()) {
    if (dns_forward.size() > 64 || dns_forward.find_first_of(" \n") != std::string::npos)
      return Error::bad_request("network: bad --dns-forward address");
    int fd = ::memfd_create("skylab-resolv.conf", MFD_CLOEXEC);
    if (fd < 0) return sys_error("memfd_create");
    std::string text =
        "# Skylab: DNS through the runtime's NAT (pasta --dns-forward)\nnameserver " + dns_forward +
        "\n";
    if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
        ::lseek(fd, 0, SEEK_SET) != 0) {
      ::close(fd);
      return sys_error("write resolv.conf");
    }
    if (auto st = hand_over(fd, kResolvConfFd); !st.ok()) return st;
  }
  if (seccomp) {
    auto fd = default_seccomp_bpf_fd();
    if (!fd.ok()) return fd.error();
    if (auto st = hand_over(fd.value(), kSeccompFd); !st.ok()) return st;
  }
  return ok_status();
}

}  // namespace skylab::runtime
