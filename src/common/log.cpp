#include "common/log.hpp"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <string>

#include "common/mutex.hpp"
#include "common/util.hpp"

namespace skylab::log {
namespace {
std::atomic<Level> g_level{Level::kInfo};
std::atomic<Format> g_format{Format::kText};
Mutex g_mutex;
const char* name(Level l) {
  switch (l) {
    case Level::kDebug:
      return "D";
    case Level::kInfo:
      return "I";
    case Level::kWarn:
      return "W";
    case Level::kError:
      return "E";
  }
  return "?";
}
const char* long_name(Level l) {
  switch (l) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "?";
}

void json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));  // UTF-8 passes; invalid bytes are the caller's
        }
    }
  }
  out.push_back('"');
}

// Text values: bare when simple, else quoted with the JSON escapes (one line).
void text_value(std::string& out, std::string_view s) {
  bool plain = !s.empty();
  for (unsigned char c : s)
    if (c <= 0x20 || c == '"' || c == '\\' || c == 0x7f || c == '=') plain = false;
  if (plain)
    out.append(s);
  else
    json_string(out, s);
}

void emit(std::string& line) {
  line.push_back('\n');
  MutexLock lock(g_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

std::string render(Level level, std::string_view message, Fields fields) {
  std::string line;
  if (g_format.load() == Format::kJson) {
    line = "{\"ts\":";
    json_string(line, util::iso_now());
    line += ",\"level\":";
    json_string(line, long_name(level));
    line += ",\"msg\":";
    json_string(line, message);
    for (const auto& f : fields) {
      line.push_back(',');
      json_string(line, f.key);
      line.push_back(':');
      if (f.number)
        line.append(f.value);
      else
        json_string(line, f.value);
    }
    line.push_back('}');
    return line;
  }
  line = "[" + std::string(name(level)) + " " + util::iso_now() + " skylab] ";
  for (char c : message) line.push_back(c == '\n' ? ' ' : c);  // one record, one line
  for (const auto& f : fields) {
    line.push_back(' ');
    line.append(f.key);
    line.push_back('=');
    text_value(line, f.value);
  }
  return line;
}
}  // namespace

Field::Field(std::string_view k, double v) : key(k), number(true) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", std::isfinite(v) ? v : 0.0);
  value = buf;
}

void set_level(Level level) {
  g_level = level;
}
void set_format(Format format) {
  g_format = format;
}

void write(Level level, std::string_view message) {
  if (level < g_level.load()) return;
  auto line = render(level, message, {});
  emit(line);
}

void record(Level level, std::string_view message, Fields fields) {
  if (level < g_level.load()) return;
  auto line = render(level, message, fields);
  emit(line);
}

}  // namespace skylab::log
