#include "drive/revision_policy.hpp"

#include <algorithm>
#include <set>

namespace skylab::drive {

std::vector<std::int64_t> revisions_to_prune(const std::vector<RevisionInfo>& revisions,
                                             std::chrono::system_clock::time_point now,
                                             const RevisionPolicy& policy) {
  using namespace std::chrono;
  std::vector<const RevisionInfo*> newest_first;
  newest_first.reserve(revisions.size());
  for (auto& r : revisions) newest_first.push_back(&r);
  std::sort(newest_first.begin(), newest_first.end(),
            [](const RevisionInfo* a, const RevisionInfo* b) {
              return a->created != b->created ? a->created > b->created : a->id > b->id;
            });

  std::vector<std::int64_t> drop;
  std::size_t recent_kept = 0;
  std::set<std::int64_t> hours_seen, days_seen;
  for (std::size_t i = 0; i < newest_first.size(); ++i) {
    const RevisionInfo& r = *newest_first[i];
    if (i == 0) {  // the newest revision is always kept
      ++recent_kept;
      hours_seen.insert(duration_cast<hours>(r.created.time_since_epoch()).count());
      days_seen.insert(duration_cast<hours>(r.created.time_since_epoch()).count() / 24);
      continue;
    }
    auto age = now - r.created;
    std::int64_t hour = duration_cast<hours>(r.created.time_since_epoch()).count();
    std::int64_t day = hour / 24;
    bool keep = false;
    if (age < policy.recent) {
      keep = recent_kept < policy.recent_max;
      if (keep) ++recent_kept;
    } else if (age < policy.hourly) {
      keep = hours_seen.insert(hour).second;
    } else if (age < policy.daily) {
      keep = days_seen.insert(day).second;
    }
    // Buckets also remember kept revisions of younger tiers, so an hour or a
    // day that already has a newer survivor does not keep a second one.
    if (keep) {
      hours_seen.insert(hour);
      days_seen.insert(day);
    } else {
      drop.push_back(r.id);
    }
  }
  return drop;
}

}  // namespace skylab::drive
