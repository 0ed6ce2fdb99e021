#include "runtime/config.hpp"

#include <gtest/gtest.h>

namespace skylab::runtime {

TEST(OpsConfig, TlsProxiesMetricsAndLogParse) {
  auto c = parse_config(R"(
[server]
tls_cert = "/etc/skylab/cert.pem"
tls_key = "/etc/skylab/key.pem"
trusted_proxies = ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]
[metrics]
token = "0123456789abcdef0123"
[log]
format = "json"
)");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->server.tls_cert, "/etc/skylab/cert.pem");
  EXPECT_EQ(c->server.tls_key, "/etc/skylab/key.pem");
  EXPECT_EQ(c->server.trusted_proxies.size(), 3u);
  EXPECT_EQ(c->ops.metrics_token, "0123456789abcdef0123");
  EXPECT_TRUE(c->ops.log_json);
  auto d = parse_config("");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->server.tls_cert.empty());
  EXPECT_FALSE(d->ops.log_json);
}

TEST(OpsConfig, BadValuesNameTheKey) {
  struct Case {
    const char* text;
    const char* key;
  } cases[] = {
      {"[server]\ntls_cert = \"/a\"\n", "server.tls_cert"},
      {"[server]\ntls_key = 3\n", "server.tls_key"},
      {"[server]\ntrusted_proxies = \"10.0.0.0/8\"\n", "server.trusted_proxies"},
      {"[server]\ntrusted_proxies = [\"example.org\"]\n", "server.trusted_proxies"},
      {"[server]\nbogus = 1\n", "server.bogus"},
      {"[metrics]\ntoken = \"short\"\n", "metrics.token"},
      {"[metrics]\nport = 9\n", "metrics.port"},
      {"metrics = 1\n", "metrics"},
      {"[log]\nformat = \"xml\"\n", "log.format"},
      {"[log]\nlevel = \"debug\"\n", "log.level"},
  };
  for (const auto& k : cases) {
    auto c = parse_config(k.text);
    ASSERT_FALSE(c.ok()) << k.text;
    EXPECT_NE(c.error().message.find(k.key), std::string::npos) << c.error().message;
  }
}

}  // namespace skylab::runtime
