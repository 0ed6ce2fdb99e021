#include "auth/throttle.hpp"
#include "common/mutex.hpp"

#include <algorithm>
#include <vector>

namespace skylab::auth {

using std::chrono::steady_clock;

LoginThrottle::LoginThrottle(ThrottleOptions options, const Clock& clock)
    : opts_(options), clock_(clock) {}

steady_clock::duration LoginThrottle::delay_for(int failures) const {
  int over = failures - opts_.free_failures;
  if (over < 0 || failures == 0) return steady_clock::duration::zero();
  steady_clock::duration d = opts_.base_delay;
  for (int i = 0; i < over && d < opts_.max_delay; ++i) d *= 2;
  return std::min<steady_clock::duration>(d, opts_.max_delay);
}

std::chrono::seconds LoginThrottle::retry_after(const std::string& key) const {
  auto now = clock_.now();
  MutexLock lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::chrono::seconds(0);
  const Entry& e = it->second;
  if (now - e.last >= opts_.forget_after) return std::chrono::seconds(0);
  auto until = e.last + delay_for(e.failures);
  if (now >= until) return std::chrono::seconds(0);
  return std::chrono::ceil<std::chrono::seconds>(until - now);
}

void LoginThrottle::failure(const std::string& key) {
  auto now = clock_.now();
  MutexLock lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (entries_.size() >= opts_.max_keys) prune_locked(now);
    it = entries_.emplace(key, Entry{}).first;
  } else if (now - it->second.last >= opts_.forget_after) {
    it->second.failures = 0;
  }
  it->second.failures = std::min(it->second.failures + 1, 1 << 20);
  it->second.last = now;
}

void LoginThrottle::success(const std::string& key) {
  MutexLock lock(mutex_);
  entries_.erase(key);
}

std::size_t LoginThrottle::size() const {
  MutexLock lock(mutex_);
  return entries_.size();
}

void LoginThrottle::prune_locked(steady_clock::time_point now) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (now - it->second.last >= opts_.forget_after)
      it = entries_.erase(it);
    else
      ++it;
  }
  if (entries_.size() < opts_.max_keys) return;
  // Still full: drop the stalest half.
  std::vector<steady_clock::time_point> times;
  times.reserve(entries_.size());
  for (auto& [_, e] : entries_) times.push_back(e.last);
  auto mid = times.begin() + static_cast<std::ptrdiff_t>(times.size() / 2);
  std::nth_element(times.begin(), mid, times.end());
  auto cutoff = *mid;
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second.last <= cutoff)
      it = entries_.erase(it);
    else
      ++it;
  }
}

}  // namespace skylab::auth
