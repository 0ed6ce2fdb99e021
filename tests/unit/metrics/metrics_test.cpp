#include "metrics/metrics.hpp"

#include <gtest/gtest.h>

#include <regex>
#include <sstream>
#include <thread>
#include <vector>

namespace skylab::metrics {

namespace {
// The value of the first line that starts with `series` followed by a space.
double value_of(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  return -1;
}
}  // namespace

TEST(Metrics, CountersAreExactUnderConcurrency) {
  double before = value_of(render(), "skylab_http_requests_total{method=\"PATCH\",code=\"418\"}");
  if (before < 0) before = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([] {
      for (int i = 0; i < 10000; ++i) http_request("PATCH", 418, 0.001);
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(value_of(render(), "skylab_http_requests_total{method=\"PATCH\",code=\"418\"}"),
            before + 40000);
}

TEST(Metrics, UnknownMethodsAndCodesHaveBoundedLabels) {
  http_request("BREW", 9999, 0.5);
  http_request("\"}\n", -1, 0.5);
  auto text = render();
  EXPECT_GE(value_of(text, "skylab_http_requests_total{method=\"other\",code=\"0\"}"), 2);
  EXPECT_EQ(text.find("BREW"), std::string::npos);
}

TEST(Metrics, HistogramIsCumulativeAndEveryLineIsWellFormed) {
  http_request("GET", 200, 0.003);
  http_request("GET", 200, 7);
  http_request("GET", 200, 1000);
  kernel_message(KernelChannel::kIopub, Direction::kFromKernel);
  auto text = render();
  double last = 0;
  for (const char* le : {"0.005", "0.01", "0.1", "1", "10", "+Inf"}) {
    double v = value_of(
        text, std::string("skylab_http_request_duration_seconds_bucket{le=\"") + le + "\"}");
    EXPECT_GE(v, last) << le;
    last = v;
  }
  EXPECT_EQ(last, value_of(text, "skylab_http_request_duration_seconds_count"));
  EXPECT_GE(value_of(text, "skylab_kernel_messages_total{channel=\"iopub\",direction=\"out\"}"), 1);
  std::regex sample(R"(^[a-z_]+(\{[a-z_]+="[^"\\]*"(,[a-z_]+="[^"\\]*")*\})? [-+0-9.eInf]+$)");
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) continue;
    EXPECT_TRUE(std::regex_match(line, sample)) << line;
  }
}

TEST(Metrics, LabelValuesAreEscaped) {
  std::string out;
  write_sample(out, "skylab_drive_bytes", {{"user", "a\"b\\c\nd"}}, 12);
  EXPECT_EQ(out, "skylab_drive_bytes{user=\"a\\\"b\\\\c\\nd\"} 12\n");
}

TEST(Metrics, BusyHandlerCountsAndGivesUp) {
  int limit = 3;
  auto text = render();
  double before = value_of(text, "skylab_sqlite_busy_waits_total");
  int calls = 0;
  while (counting_busy_handler(&limit, calls) != 0) ++calls;
  EXPECT_LE(calls, 3);
  EXPECT_EQ(value_of(render(), "skylab_sqlite_busy_waits_total"), before + calls + 1);
}

}  // namespace skylab::metrics
