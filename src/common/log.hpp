// Minimal thread-safe logging to stderr, one line per record, as text or as
// JSON lines (`[log] format = "json"`). Never pass secrets (tokens,
// passwords, query strings, cookies) to these functions.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace skylab::log {

enum class Level { kDebug, kInfo, kWarn, kError };
enum class Format {
  kText,  //!< `[I 2026-01-01T00:00:00Z skylab] message k=v k="v w"`
  kJson,  //!< `{"ts":"…","level":"info","msg":"…","k":"v"}`
};

void set_level(Level level);
void set_format(Format format);
void write(Level level, std::string_view message);

//! One named field of a record (key: a plain identifier). Text values are
//! escaped as the format needs; numbers are JSON numbers in JSON lines.
struct Field {
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(v) {}
  Field(std::string_view k, const std::string& v) : key(k), value(v) {}
  Field(std::string_view k, long long v) : key(k), value(std::to_string(v)), number(true) {}
  Field(std::string_view k, double v);  //!< printed with 6 decimals
  std::string_view key;
  std::string value;
  bool number = false;
};
using Fields = std::initializer_list<Field>;
//! One record with fields: a request, a runtime event.
void record(Level level, std::string_view message, Fields fields);

inline void debug(std::string_view m) {
  write(Level::kDebug, m);
}
inline void info(std::string_view m) {
  write(Level::kInfo, m);
}
inline void warn(std::string_view m) {
  write(Level::kWarn, m);
}
inline void error(std::string_view m) {
  write(Level::kError, m);
}

}  // namespace skylab::log
