// Process-wide counters for `GET /metrics` (Prometheus text exposition
// format 0.0.4), written by a small exposition writer of our own: the hot
// paths (every HTTP request, every kernel message) only do relaxed atomic
// increments on fixed arrays — no locks, no allocation, no label maps.
// Label values come from small closed sets, so cardinality is bounded.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace skylab::metrics {

//! Kernel channels counted by kernel_message(); matches kernel::Channel's order.
enum class KernelChannel { kShell = 0, kIopub, kStdin, kControl, kHb, kCount };
enum class Direction { kToKernel = 0, kFromKernel, kCount };

//! Counts one HTTP response: `method` outside GET/HEAD/POST/PUT/PATCH/DELETE/
//! OPTIONS counts as "other", `status` outside 100..599 as 0; `seconds` feeds
//! skylab_http_request_duration_seconds. Lock-free, any thread.
void http_request(std::string_view method, int status, double seconds);
//! Counts one kernel message. Lock-free, any thread.
void kernel_message(KernelChannel channel, Direction direction);
//! skylab_websocket_connections: +1 on open, -1 on close. Lock-free.
void websocket_opened();
void websocket_closed();
//! Counts one wait of a SQLite connection on another's lock (busy handler).
void sqlite_busy_wait();
//! A sqlite3 busy handler that counts each call in sqlite_busy_wait() and
//! then sleeps like sqlite3_busy_timeout would, up to `*(int*)arg` ms in all;
//! install with sqlite3_busy_handler(db, metrics::counting_busy_handler, &ms).
//! `arg` must outlive the connection.
int counting_busy_handler(void* arg, int calls);

//! Appends exposition text for gauges only known at scrape time (runtimes,
//! GPUs, Drive bytes). Called from render() on the scraping thread; may block
//! briefly (scrapes run on a worker thread).
using Collector = std::function<void(std::string& out)>;
//! Registers a collector for the life of the process (serve sets these up
//! once, before serving). Not thread-safe with render(); call before serving.
void add_collector(Collector c);

//! The whole exposition: the built-in counters, then every collector's text.
std::string render();

//! Helpers for collectors: a `# HELP`/`# TYPE` header, and one sample with
//! labels (values escaped per the format: backslash, quote, newline).
void write_header(std::string& out, std::string_view name, std::string_view type,
                  std::string_view help);
void write_sample(std::string& out, std::string_view name,
                  std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
                  double value);

}  // namespace skylab::metrics
