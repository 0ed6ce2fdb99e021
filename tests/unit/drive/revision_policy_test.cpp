#include "drive/revision_policy.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

namespace skylab::drive {

using namespace std::chrono;
using TP = system_clock::time_point;

namespace {

// 2024-01-10 00:00:00 UTC, a day boundary.
const TP kMidnight = TP(seconds(1704844800));

std::vector<RevisionInfo> revs(const std::vector<TP>& times) {
  std::vector<RevisionInfo> out;
  std::int64_t id = 1;
  for (auto t : times) {
    RevisionInfo r;
    r.id = id++;
    r.created = t;
    out.push_back(r);
  }
  return out;
}

std::set<std::int64_t> kept(const std::vector<RevisionInfo>& all, TP now,
                            const RevisionPolicy& p = {}) {
  auto drop = revisions_to_prune(all, now, p);
  std::set<std::int64_t> out;
  for (auto& r : all)
    if (std::find(drop.begin(), drop.end(), r.id) == drop.end()) out.insert(r.id);
  return out;
}

}  // namespace

TEST(RevisionPolicy, KeepsEverythingFromTheLastHour) {
  TP now = kMidnight + hours(12);
  std::vector<TP> times;
  for (int m = 59; m >= 0; --m) times.push_back(now - minutes(m));
  auto all = revs(times);
  EXPECT_EQ(kept(all, now).size(), 60u);
}

TEST(RevisionPolicy, RecentRevisionsAreCapped) {
  TP now = kMidnight + hours(12);
  std::vector<TP> times;
  for (int s = 299; s >= 0; --s) times.push_back(now - seconds(s * 10));  // 300 in 50 minutes
  auto all = revs(times);
  RevisionPolicy p;
  p.recent_max = 100;
  auto k = kept(all, now, p);
  EXPECT_EQ(k.size(), 100u);
  EXPECT_TRUE(k.count(300));  // the newest
  EXPECT_TRUE(k.count(201));
  EXPECT_FALSE(k.count(200));
}

TEST(RevisionPolicy, HourlyForADayThenDailyForAMonth) {
  TP now = kMidnight + hours(12);  // noon
  std::vector<TP> times;
  // Every 10 minutes for the last 40 days.
  for (int m = 40 * 24 * 60; m >= 0; m -= 10) times.push_back(now - minutes(m));
  auto all = revs(times);
  auto k = kept(all, now);
  std::size_t last_hour = 0, hourly = 0, daily = 0, older = 0;
  std::set<long> hours_seen, days_seen;
  for (auto& r : all) {
    if (!k.count(r.id)) continue;
    auto age = now - r.created;
    if (age < hours(1))
      ++last_hour;
    else if (age < hours(24)) {
      ++hourly;
      EXPECT_TRUE(
          hours_seen.insert(duration_cast<hours>(r.created.time_since_epoch()).count()).second);
    } else if (age < hours(24 * 30)) {
      ++daily;
      EXPECT_TRUE(
          days_seen.insert(duration_cast<hours>(r.created.time_since_epoch()).count() / 24).second);
    } else {
      ++older;
    }
  }
  EXPECT_EQ(last_hour, 6u);  // every 10 minutes within the hour
  // One per clock hour between 1 h and 24 h old (the hour of "now - 1h" already has a survivor).
  EXPECT_GE(hourly, 22u);
  EXPECT_LE(hourly, 24u);
  EXPECT_GE(daily, 28u);
  EXPECT_LE(daily, 30u);
  EXPECT_EQ(older, 0u);
  // The kept revision of an hour is the newest of that hour.
  for (auto& r : all) {
    if (!k.count(r.id)) continue;
    auto age = now - r.created;
    if (age >= hours(1) && age < hours(24)) {
      auto next = r.created + minutes(10);
      EXPECT_NE(duration_cast<hours>(next.time_since_epoch()).count(),
                duration_cast<hours>(r.created.time_since_epoch()).count())
          << "a newer revision of the same hour exists";
    }
  }
}

TEST(RevisionPolicy, NewestIsAlwaysKept) {
  TP now = kMidnight + hours(24 * 365);
  auto all = revs({kMidnight, kMidnight + hours(1), kMidnight + hours(2)});
  auto k = kept(all, now);
  EXPECT_EQ(k, std::set<std::int64_t>{3});
}

TEST(RevisionPolicy, PruningIsStableAsTimePasses) {
  // What survives a prune at t survives a later prune as long as it is in
  // the same tier: buckets are clock hours and days, not relative windows.
  std::vector<TP> times;
  TP start = kMidnight;
  for (int m = 0; m < 48 * 60; m += 7) times.push_back(start + minutes(m));
  auto all = revs(times);
  TP now = start + hours(48);
  auto first = kept(all, now);
  std::vector<RevisionInfo> survivors;
  for (auto& r : all)
    if (first.count(r.id)) survivors.push_back(r);
  auto second = kept(survivors, now + minutes(5));
  for (auto& r : survivors) {
    auto age = now + minutes(5) - r.created;
    if (age >= hours(2) && age < hours(23)) {
      EXPECT_TRUE(second.count(r.id)) << r.id;
    }
  }
}

}  // namespace skylab::drive
