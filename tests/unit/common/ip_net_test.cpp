#include "common/ip_net.hpp"

#include <gtest/gtest.h>

namespace skylab::net {

TEST(IpNet, EntriesAreAddressesOrNetworks) {
  for (const char* ok :
       {"127.0.0.1", "10.0.0.0/8", "0.0.0.0/0", "::1", "fd00::/8", "192.168.1.0/24", "::/0"})
    EXPECT_TRUE(valid_proxy_entry(ok)) << ok;
  for (const char* bad : {"", "10.0.0.0/33", "::1/129", "10.0.0.0/", "10.0.0.0/x", "localhost",
                          "10.0.0.256", "10.0.0.0/8/8", "1.2.3.4 ", "10.0.0.0/-1", "10.0.0.0/0008"})
    EXPECT_FALSE(valid_proxy_entry(bad)) << bad;
}

TEST(IpNet, MatchesAddressesNetworksAndMappedIpv4) {
  std::vector<std::string> trusted = {"127.0.0.1", "10.0.0.0/8", "fd00::/8", "192.168.7.128/25"};
  EXPECT_TRUE(address_trusted("127.0.0.1", trusted));
  EXPECT_FALSE(address_trusted("127.0.0.2", trusted));
  EXPECT_TRUE(address_trusted("10.255.1.2", trusted));
  EXPECT_FALSE(address_trusted("11.0.0.1", trusted));
  EXPECT_TRUE(address_trusted("::ffff:10.1.2.3",
                              trusted));  // IPv4-mapped, as a dual-stack socket reports it
  EXPECT_TRUE(address_trusted("fd12::1", trusted));
  EXPECT_FALSE(address_trusted("fe80::1", trusted));
  EXPECT_TRUE(address_trusted("192.168.7.200", trusted));
  EXPECT_FALSE(address_trusted("192.168.7.127", trusted));
  EXPECT_FALSE(address_trusted("", trusted));
  EXPECT_FALSE(address_trusted("not an address", trusted));
  EXPECT_FALSE(address_trusted("10.0.0.1", {}));
  EXPECT_FALSE(address_trusted("10.0.0.1", {"garbage/8"}));
}

}  // namespace skylab::net
