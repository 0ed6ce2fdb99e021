#include "api/ops.hpp"

#include <sqlite3.h>

#include <deque>
#include <map>
#include <optional>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/work_queue.hpp"
#include "auth/account_store.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "drive/drive.hpp"
#include "metrics/metrics.hpp"
#include "runtime/gpu.hpp"
#include "runtime/launch.hpp"
#include "runtime/pool.hpp"
#include "runtime/service.hpp"

namespace skylab::api {

using http::Request;
using http::Responder;
using http::Response;
using nlohmann::json;

namespace {

bool equal_ct(std::string_view a, std::string_view b) {
  if (a.size() != b.size() || a.empty()) return false;
  unsigned char d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d |= static_cast<unsigned char>(a[i] ^ b[i]);
  return d == 0;
}

// "Bearer T" or "token T" equal to one of the accepted tokens.
bool metrics_authorized(const Request& req, const OpsOptions& o) {
  auto h = req.header("authorization");
  std::string_view t;
  for (std::string_view scheme : {"Bearer ", "bearer ", "token ", "Token "})
    if (h.substr(0, scheme.size()) == scheme) t = h.substr(scheme.size());
  if (t.empty()) return false;
  bool ok = false;
  ok |= equal_ct(t, o.admin_token);
  ok |= equal_ct(t, o.metrics_token);
  return ok;
}

// The database answers: a fresh read-only connection reads the schema.
std::string check_database(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  std::string err;
  if (rc == SQLITE_OK) {
    static int busy_ms = 1000;
    sqlite3_busy_handler(db, metrics::counting_busy_handler, &busy_ms);
    sqlite3_stmt* st = nullptr;
    rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &st, nullptr);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) err = sqlite3_errmsg(db);
    sqlite3_finalize(st);
  } else {
    err = db ? sqlite3_errmsg(db) : "cannot open";
  }
  sqlite3_close(db);
  return err;
}

// One health check at a time, its answer shared: callers that arrive while
// it runs wait for it, callers within kFresh of the last answer get that
// answer without work (an unauthenticated flood costs no worker time).
// Callers still waiting at their deadline get 503 (a stuck worker or disk
// cannot hang the probe). Bounded: kMaxWaiting callers, then 503.
class HealthProbe {
 public:
  using Check = std::function<Response()>;
  using Post = std::function<bool(std::function<void()>)>;
  static constexpr std::size_t kMaxWaiting = 64;
  static constexpr auto kFresh = std::chrono::seconds(1);

  HealthProbe(Check check, Post post, std::chrono::milliseconds timeout)
      : check_(std::move(check)),
        post_(std::move(post)),
        timeout_(timeout),
        thread_([this] { run(); }) {}
  ~HealthProbe() {
    {
      MutexLock lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  void request(Responder done) {
    auto now = std::chrono::steady_clock::now();
    bool start = false;
    {
      MutexLock lock(mu_);
      if (cached_ && now - cached_at_ < kFresh) {
        Response r = *cached_;
        lock.unlock();
        return done(std::move(r));
      }
      if (waiting_.size() >= kMaxWaiting) {
        lock.unlock();
        return done(unavailable("busy"));
      }
      waiting_.push_back(Waiter{std::move(done), now + timeout_});
      if (!in_flight_) in_flight_ = start = true;
    }
    cv_.notify_all();
    if (!start) return;
    if (!post_([this] { finish(check_()); })) finish(unavailable("busy"), false);
  }

 private:
  struct Waiter {
    Responder done;
    std::chrono::steady_clock::time_point deadline;
  };

  static Response unavailable(const char* why) {
    return Response::json(503, {{"status", "unavailable"}, {"checks", {{why, true}}}});
  }

  void finish(const Response& r, bool cache = true) {
    std::deque<Waiter> answer;
    {
      MutexLock lock(mu_);
      in_flight_ = false;
      if (cache) {
        cached_ = r;
        cached_at_ = std::chrono::steady_clock::now();
      }
      answer.swap(waiting_);
    }
    for (auto& w : answer) w.done(r);
  }

  void run() {
    MutexLock lock(mu_);
    while (!stop_) {
      auto now = std::chrono::steady_clock::now();
      auto next = now + std::chrono::hours(1);
      std::deque<Waiter> late;
      for (auto it = waiting_.begin(); it != waiting_.end();) {
        if (it->deadline <= now) {
          late.push_back(std::move(*it));
          it = waiting_.erase(it);
        } else {
          next = std::min(next, it->deadline);
          ++it;
        }
      }
      if (!late.empty()) {
        lock.unlock();
        for (auto& w : late) w.done(unavailable("timeout"));
        lock.lock();
        continue;
      }
      cv_.wait_until(lock, next);
    }
  }

  const Check check_;
  const Post post_;
  const std::chrono::milliseconds timeout_;
  Mutex mu_;
  CondVar cv_;
  std::deque<Waiter> waiting_ GUARDED_BY(mu_);
  std::optional<Response> cached_ GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point cached_at_ GUARDED_BY(mu_);
  bool in_flight_ GUARDED_BY(mu_) = false;
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

Response run_health_checks(const Context& ctx, const OpsOptions& opts) {
  json checks = json::object();
  std::string db_error = opts.database.empty() ? "" : check_database(opts.database);
  checks["database"] = db_error.empty();
  if (!db_error.empty()) log::warn("health: the database does not answer: " + db_error);
  // The runtime backend answers: the kernel manager and the runtime service list.
  bool runtimes_ok = ctx.kernels != nullptr && ctx.runtimes != nullptr;
  if (runtimes_ok) {
    (void)ctx.kernels->last_activity();
    (void)ctx.runtimes->pending("");
  }
  checks["runtimes"] = runtimes_ok;
  bool ok = db_error.empty() && runtimes_ok;
  return Response::json(ok ? 200 : 503,
                        {{"status", ok ? "ok" : "unavailable"}, {"checks", checks}});
}

void add_collectors(std::shared_ptr<const Context> ctx,
                    std::shared_ptr<runtime::GpuAllocator> gpus) {
  std::weak_ptr<const Context> weak = ctx;
  metrics::add_collector([weak](std::string& out) {
    auto c = weak.lock();
    if (!c) return;
    std::map<std::string, int> by_type;
    if (c->runtime_config)
      for (auto& [name, _] : c->runtime_config->types) by_type[name] = 0;
    if (c->kernels)
      for (auto& k : c->kernels->list())
        if (k.execution_state != kernel::KernelState::kDead)
          ++by_type[c->runtime_config ? c->runtime_config->type_name(k.runtime_type)
                                      : k.runtime_type];
    metrics::write_header(out, "skylab_runtimes_running", "gauge",
                          "Runtimes (kernels) alive, by runtime type.");
    for (auto& [type, n] : by_type)
      metrics::write_sample(out, "skylab_runtimes_running", {{"type", type}}, n);
    metrics::write_header(out, "skylab_runtimes_pending", "gauge",
                          "Runtimes waiting for GPUs or still starting.");
    metrics::write_sample(out, "skylab_runtimes_pending", {},
                          c->runtimes ? static_cast<double>(c->runtimes->pending("").size()) : 0.0);
    auto pool = c->runtimes ? c->runtimes->pool() : nullptr;
    if (pool && pool->instant() > 0 && c->runtime_config) {
      metrics::write_header(out, "skylab_runtimes_instant_ready", "gauge",
                            "Runtimes started for anyone and ready for the next user, by type.");
      for (auto& [name, _] : c->runtime_config->types)
        metrics::write_sample(out, "skylab_runtimes_instant_ready", {{"type", name}},
                              pool->ready(runtime::kAnyone, name));
    }
  });
  metrics::add_collector([gpus](std::string& out) {
    int total = gpus ? static_cast<int>(gpus->gpus().size()) : 0;
    int free = gpus ? gpus->free_count() : 0;
    metrics::write_header(out, "skylab_gpus_total", "gauge", "GPUs this server hands to runtimes.");
    metrics::write_sample(out, "skylab_gpus_total", {}, total);
    metrics::write_header(out, "skylab_gpus_allocated", "gauge", "GPUs held by runtimes.");
    metrics::write_sample(out, "skylab_gpus_allocated", {}, total - free);
  });
  // Counting a Drive without a volume of its own walks it: each user's
  // number is recounted at most once a minute, whatever the scrape interval.
  struct DriveBytes {
    Mutex mu;
    std::map<std::string, std::pair<std::chrono::steady_clock::time_point, double>> users
        GUARDED_BY(mu);
  };
  auto cache = std::make_shared<DriveBytes>();
  metrics::add_collector([weak, cache](std::string& out) {
    metrics::write_header(out, "skylab_drive_bytes", "gauge",
                          "Bytes of each user's Drive and caches.");
    auto c = weak.lock();
    if (!c || !c->drive || !c->accounts) return;
    auto users = c->accounts->list_users();
    if (!users.ok()) return;
    MutexLock lock(cache->mu);  // one recount at a time
    auto now = std::chrono::steady_clock::now();
    std::map<std::string, std::pair<std::chrono::steady_clock::time_point, double>>
        next;  // gone users drop out
    for (auto& u : *users) {
      auto it = cache->users.find(u.username);
      if (it != cache->users.end() && now - it->second.first < std::chrono::minutes(1)) {
        next.emplace(u.username, it->second);
        continue;
      }
      auth::Identity who;
      who.username = u.username;
      if (auto st = c->drive->storage(who); st.ok())
        next[u.username] = {now, static_cast<double>(st->used)};
    }
    cache->users = std::move(next);
    for (auto& [user, v] : cache->users)
      metrics::write_sample(out, "skylab_drive_bytes", {{"user", user}}, v.second);
  });
}

}  // namespace

void add_ops_routes(http::Router& r, std::shared_ptr<const Context> ctx, OpsOptions options) {
  auto opts = std::make_shared<const OpsOptions>(std::move(options));
  std::weak_ptr<const Context> weak = ctx;
  auto probe = std::make_shared<HealthProbe>(
      [weak, opts] {
        auto c = weak.lock();
        return c ? run_health_checks(*c, *opts) : Response::json(503, {{"status", "unavailable"}});
      },
      [weak](std::function<void()> task) {
        auto c = weak.lock();
        return c && c->work && c->work->post(std::move(task));
      },
      opts->health_timeout);
  add_collectors(ctx, opts->gpus);
  http::RouteOptions pub;
  pub.public_route = true;
  pub.body_limit = 0;

  r.add(
      "GET", "/api/health", [probe](Request&, Responder done) { probe->request(std::move(done)); },
      pub);

  r.add(
      "GET", "/metrics",
      [ctx, opts](Request& req, Responder done) {
        if (!metrics_authorized(req, *opts)) {
          auto res = Response::error(
              401,
              "Unauthorized: /metrics needs the admin token or [metrics] token as a Bearer token");
          res.set_header("WWW-Authenticate", "Bearer realm=\"skylab metrics\"");
          return done(std::move(res));
        }
        respond_on_queue(
            ctx->work.get(), done,
            [] {
              Response res;
              res.status = 200;
              res.body = metrics::render();
              res.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
              res.set_header("Cache-Control", "no-store");
              return res;
            },
            "metrics");
      },
      pub);
}

}  // namespace skylab::api
