#include "common/log.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

#include "common/util.hpp"

namespace skylab::log {
namespace {
std::atomic<Level> g_level{Level::kInfo};
std::mutex g_mutex;
const char* name(Level l) {
  switch (l) {
    case Level::kDebug: return "D";
    case Level::kInfo: return "I";
    case Level::kWarn: return "W";
    case Level::kError: return "E";
  }
  return "?";
}
}  // namespace

void set_level(Level level) { g_level = level; }

void write(Level level, std::string_view message) {
  if (level < g_level.load()) return;
  std::string line = "[" + std::string(name(level)) + " " + util::iso_now() + " skylab] ";
  line.append(message);
  line.push_back('\n');
  std::lock_guard lock(g_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace skylab::log
