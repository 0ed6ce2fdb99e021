#include "metrics/metrics.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>
#include <vector>

namespace skylab::metrics {
namespace {

constexpr std::array<std::string_view, 8> kMethods = {"GET",   "HEAD",   "POST",    "PUT",
                                                      "PATCH", "DELETE", "OPTIONS", "other"};
constexpr int kCodes = 600;
constexpr std::array<double, 11> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                             0.5,   1,    2.5,   5,    10};
constexpr std::array<std::string_view, 5> kChannels = {"shell", "iopub", "stdin", "control", "hb"};
constexpr std::array<std::string_view, 2> kDirections = {"in", "out"};  // in: to the kernel

struct State {
  std::array<std::array<std::atomic<std::uint64_t>, kCodes>, kMethods.size()> requests{};
  std::array<std::atomic<std::uint64_t>, kBuckets.size() + 1> buckets{};  // last: above every bound
  std::atomic<std::uint64_t> duration_us{0};
  std::array<std::array<std::atomic<std::uint64_t>, 2>, 5> kernel{};
  std::atomic<std::int64_t> websockets{0};
  std::atomic<std::uint64_t> busy_waits{0};
  std::vector<Collector> collectors;
};

State& state() {
  static State s;
  return s;
}

std::size_t method_index(std::string_view m) {
  for (std::size_t i = 0; i + 1 < kMethods.size(); ++i)
    if (kMethods[i] == m) return i;
  return kMethods.size() - 1;
}

void append_number(std::string& out, double v) {
  char buf[64];
  if (std::isinf(v))
    out += v > 0 ? "+Inf" : "-Inf";
  else if (std::isnan(v))
    out += "NaN";
  else if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
    out += buf;
  } else {
    std::snprintf(buf, sizeof buf, "%.9g", v);
    out += buf;
  }
}

}  // namespace

void http_request(std::string_view method, int status, double seconds) {
  auto& s = state();
  int code = status >= 100 && status < kCodes ? status : 0;
  s.requests[method_index(method)][static_cast<std::size_t>(code)].fetch_add(
      1, std::memory_order_relaxed);
  std::size_t b = 0;
  while (b < kBuckets.size() && seconds > kBuckets[b]) ++b;
  s.buckets[b].fetch_add(1, std::memory_order_relaxed);
  if (seconds < 0) seconds = 0;
  s.duration_us.fetch_add(static_cast<std::uint64_t>(seconds * 1e6), std::memory_order_relaxed);
}

void kernel_message(KernelChannel channel, Direction direction) {
  auto c = static_cast<std::size_t>(channel), d = static_cast<std::size_t>(direction);
  if (c >= kChannels.size() || d >= kDirections.size()) return;
  state().kernel[c][d].fetch_add(1, std::memory_order_relaxed);
}

void websocket_opened() {
  state().websockets.fetch_add(1, std::memory_order_relaxed);
}
void websocket_closed() {
  state().websockets.fetch_sub(1, std::memory_order_relaxed);
}
void sqlite_busy_wait() {
  state().busy_waits.fetch_add(1, std::memory_order_relaxed);
}

int counting_busy_handler(void* arg, int calls) {
  sqlite_busy_wait();
  int limit_ms = arg ? *static_cast<const int*>(arg) : 0;
  // Waits like SQLite's own busy timeout: short sleeps first, then 100 ms.
  static constexpr int kDelays[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};
  constexpr int kN = static_cast<int>(sizeof kDelays / sizeof kDelays[0]);
  int waited = 0;
  for (int i = 0; i < calls; ++i) waited += kDelays[i < kN ? i : kN - 1];
  int delay = kDelays[calls < kN ? calls : kN - 1];
  if (waited >= limit_ms) return 0;
  if (waited + delay > limit_ms) delay = limit_ms - waited;
  std::this_thread::sleep_for(std::chrono::milliseconds(delay));
  return 1;
}

void add_collector(Collector c) {
  state().collectors.push_back(std::move(c));
}

void write_header(std::string& out, std::string_view name, std::string_view type,
                  std::string_view help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void write_sample(std::string& out, std::string_view name,
                  std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
                  double value) {
  out.append(name);
  if (labels.size() > 0) {
    out.push_back('{');
    bool first = true;
    for (const auto& [k, v] : labels) {
      if (!first) out.push_back(',');
      first = false;
      out.append(k).append("=\"");
      for (char ch : v) {
        if (ch == '\\')
          out += "\\\\";
        else if (ch == '"')
          out += "\\\"";
        else if (ch == '\n')
          out += "\\n";
        else
          out.push_back(ch);
      }
      out.push_back('"');
    }
    out.push_back('}');
  }
  out.push_back(' ');
  append_number(out, value);
  out.push_back('\n');
}

std::string render() {
  auto& s = state();
  std::string out;
  out.reserve(8192);
  write_header(out, "skylab_http_requests_total", "counter",
               "HTTP responses sent, by method and status code.");
  for (std::size_t m = 0; m < kMethods.size(); ++m)
    for (int c = 0; c < kCodes; ++c)
      if (auto n = s.requests[m][static_cast<std::size_t>(c)].load(std::memory_order_relaxed);
          n > 0) {
        std::string code = std::to_string(c);
        write_sample(out, "skylab_http_requests_total", {{"method", kMethods[m]}, {"code", code}},
                     static_cast<double>(n));
      }
  write_header(out, "skylab_http_request_duration_seconds", "histogram",
               "Time from a request's header to its response being queued.");
  std::uint64_t cumulative = 0;
  for (std::size_t b = 0; b <= kBuckets.size(); ++b) {
    cumulative += s.buckets[b].load(std::memory_order_relaxed);
    std::string le;
    if (b == kBuckets.size())
      le = "+Inf";
    else
      append_number(le, kBuckets[b]);
    write_sample(out, "skylab_http_request_duration_seconds_bucket", {{"le", le}},
                 static_cast<double>(cumulative));
  }
  write_sample(out, "skylab_http_request_duration_seconds_sum", {},
               static_cast<double>(s.duration_us.load(std::memory_order_relaxed)) / 1e6);
  write_sample(out, "skylab_http_request_duration_seconds_count", {},
               static_cast<double>(cumulative));
  write_header(out, "skylab_kernel_messages_total", "counter",
               "Jupyter messages between the server and kernels (direction in: to the kernel).");
  for (std::size_t c = 0; c < kChannels.size(); ++c)
    for (std::size_t d = 0; d < kDirections.size(); ++d)
      write_sample(out, "skylab_kernel_messages_total",
                   {{"channel", kChannels[c]}, {"direction", kDirections[d]}},
                   static_cast<double>(s.kernel[c][d].load(std::memory_order_relaxed)));
  write_header(out, "skylab_websocket_connections", "gauge", "Open WebSocket connections.");
  write_sample(out, "skylab_websocket_connections", {},
               static_cast<double>(s.websockets.load(std::memory_order_relaxed)));
  write_header(out, "skylab_sqlite_busy_waits_total", "counter",
               "Times a SQLite connection waited for another's lock.");
  write_sample(out, "skylab_sqlite_busy_waits_total", {},
               static_cast<double>(s.busy_waits.load(std::memory_order_relaxed)));
  for (auto& c : s.collectors) c(out);
  return out;
}

}  // namespace skylab::metrics
