#include "common/ip_net.hpp"

#include <arpa/inet.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <optional>

namespace skylab::net {
namespace {

struct Net {
  std::array<unsigned char, 16> bytes{};
  int len = 0;   // 4 or 16
  int bits = 0;  // prefix length
};

std::optional<Net> parse_address(std::string_view s) {
  if (s.size() >= 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  if (s.empty() || s.size() > 45) return std::nullopt;
  std::string str(s);
  Net n;
  if (::inet_pton(AF_INET, str.c_str(), n.bytes.data()) == 1) {
    n.len = 4;
    n.bits = 32;
    return n;
  }
  if (::inet_pton(AF_INET6, str.c_str(), n.bytes.data()) == 1) {
    static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(n.bytes.data(), kMapped, 12) == 0) {  // ::ffff:a.b.c.d is a.b.c.d
      std::memmove(n.bytes.data(), n.bytes.data() + 12, 4);
      n.len = 4;
      n.bits = 32;
      return n;
    }
    n.len = 16;
    n.bits = 128;
    return n;
  }
  return std::nullopt;
}

std::optional<Net> parse_entry(std::string_view e) {
  auto slash = e.find('/');
  auto addr = parse_address(e.substr(0, slash));
  if (!addr || slash == std::string_view::npos) return addr;
  auto digits = e.substr(slash + 1);
  if (digits.empty() || digits.size() > 3 ||
      digits.find_first_not_of("0123456789") != std::string_view::npos)
    return std::nullopt;
  int bits = std::atoi(std::string(digits).c_str());
  if (bits > addr->len * 8) return std::nullopt;
  addr->bits = bits;
  return addr;
}

bool contains(const Net& net, const Net& a) {
  if (net.len != a.len) return false;
  int full = net.bits / 8, rest = net.bits % 8;
  if (std::memcmp(net.bytes.data(), a.bytes.data(), static_cast<std::size_t>(full)) != 0)
    return false;
  if (rest == 0) return true;
  auto mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (net.bytes[static_cast<std::size_t>(full)] & mask) ==
         (a.bytes[static_cast<std::size_t>(full)] & mask);
}

}  // namespace

bool valid_proxy_entry(std::string_view entry) {
  return parse_entry(entry).has_value();
}

bool address_trusted(std::string_view addr, const std::vector<std::string>& entries) {
  auto a = parse_address(addr);
  if (!a) return false;
  for (const auto& e : entries)
    if (auto net = parse_entry(e); net && contains(*net, *a)) return true;
  return false;
}

}  // namespace skylab::net
