#include "api/ops.hpp"

#include <sqlite3.h>

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "api/work_queue.hpp"
#include "auth/account_store.hpp"
#include "common/log.hpp"
#include "drive/drive.hpp"
#include "metrics/metrics.hpp"
#include "runtime/gpu.hpp"
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

// Answers pending health checks with 503 once their deadline passes
// (a stuck worker or disk cannot hang the check). One thread, bounded list.
class HealthWatchdog {
 public:
  struct Pending {
    std::atomic<bool> answered{false};
    Responder done;
    std::chrono::steady_clock::time_point deadline;
  };
  static constexpr std::size_t kMaxPending = 64;

  HealthWatchdog() : thread_([this] { run(); }) {}
  ~HealthWatchdog() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  //! False when too many checks are pending.
  bool watch(std::shared_ptr<Pending> p) {
    std::lock_guard lock(mu_);
    if (list_.size() >= kMaxPending) return false;
    list_.push_back(std::move(p));
    cv_.notify_all();
    return true;
  }

 private:
  void run() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      auto now = std::chrono::steady_clock::now();
      auto next = now + std::chrono::hours(1);
      for (auto it = list_.begin(); it != list_.end();) {
        auto& p = *it;
        if (p->answered.load()) {
          it = list_.erase(it);
        } else if (p->deadline <= now) {
          if (!p->answered.exchange(true))
            p->done(Response::json(503, {{"status", "unavailable"}, {"checks", {{"timeout", true}}}}));
          it = list_.erase(it);
        } else {
          next = std::min(next, p->deadline);
          ++it;
        }
      }
      cv_.wait_until(lock, next);
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Pending>> list_;  // GUARDED_BY(mu_)
  bool stop_ = false;                          // GUARDED_BY(mu_)
  std::thread thread_;
};

void add_collectors(std::shared_ptr<Context> ctx, std::shared_ptr<runtime::GpuAllocator> gpus) {
  std::weak_ptr<Context> weak = ctx;
  metrics::add_collector([weak](std::string& out) {
    auto c = weak.lock();
    if (!c) return;
    std::map<std::string, int> by_type;
    if (c->runtime_config)
      for (auto& [name, _] : c->runtime_config->types) by_type[name] = 0;
    if (c->kernels)
      for (auto& k : c->kernels->list())
        if (k.execution_state != "dead") ++by_type[k.runtime_type.empty() ? "default" : k.runtime_type];
    metrics::write_header(out, "skylab_runtimes_running", "gauge", "Runtimes (kernels) alive, by runtime type.");
    for (auto& [type, n] : by_type) metrics::write_sample(out, "skylab_runtimes_running", {{"type", type}}, n);
    metrics::write_header(out, "skylab_runtimes_pending", "gauge",
                          "Runtimes waiting for GPUs or still starting.");
    metrics::write_sample(out, "skylab_runtimes_pending", {},
                          c->runtimes ? static_cast<double>(c->runtimes->pending("").size()) : 0.0);
  });
  metrics::add_collector([gpus](std::string& out) {
    int total = gpus ? static_cast<int>(gpus->gpus().size()) : 0;
    int free = gpus ? gpus->free_count() : 0;
    metrics::write_header(out, "skylab_gpus_total", "gauge", "GPUs this server hands to runtimes.");
    metrics::write_sample(out, "skylab_gpus_total", {}, total);
    metrics::write_header(out, "skylab_gpus_allocated", "gauge", "GPUs held by runtimes.");
    metrics::write_sample(out, "skylab_gpus_allocated", {}, total - free);
  });
  metrics::add_collector([weak](std::string& out) {
    auto c = weak.lock();
    metrics::write_header(out, "skylab_drive_bytes", "gauge", "Bytes of each user's Drive and caches.");
    if (!c || !c->drive || !c->accounts) return;
    auto users = c->accounts->list_users();
    if (!users.ok()) return;
    for (auto& u : *users) {
      auth::Identity who;
      who.username = u.username;
      auto st = c->drive->storage(who);
      if (st.ok()) metrics::write_sample(out, "skylab_drive_bytes", {{"user", u.username}}, static_cast<double>(st->used));
    }
  });
}

}  // namespace

void add_ops_routes(http::Router& r, std::shared_ptr<Context> ctx, OpsOptions options) {
  auto opts = std::make_shared<const OpsOptions>(std::move(options));
  auto watchdog = std::make_shared<HealthWatchdog>();
  add_collectors(ctx, opts->gpus);
  http::RouteOptions pub;
  pub.public_route = true;
  pub.body_limit = 0;

  r.add("GET", "/api/health", [ctx, opts, watchdog](Request&, Responder done) {
    auto p = std::make_shared<HealthWatchdog::Pending>();
    p->done = done;
    p->deadline = std::chrono::steady_clock::now() + opts->health_timeout;
    if (!watchdog->watch(p)) return done(Response::json(503, {{"status", "unavailable"}, {"checks", {{"busy", true}}}}));
    auto answer = [p](Response r) {
      if (!p->answered.exchange(true)) p->done(std::move(r));
    };
    bool posted = ctx->work->post([ctx, opts, answer] {
      json checks = json::object();
      bool ok = true;
      std::string db_error = opts->database.empty() ? "" : check_database(opts->database);
      checks["database"] = db_error.empty();
      if (!db_error.empty()) {
        ok = false;
        log::warn("health: the database does not answer: " + db_error);
      }
      // The runtime backend answers: the kernel manager and the runtime service list.
      bool runtimes_ok = ctx->kernels != nullptr && ctx->runtimes != nullptr;
      if (runtimes_ok) {
        (void)ctx->kernels->count();
        (void)ctx->runtimes->pending("");
      }
      checks["runtimes"] = runtimes_ok;
      ok = ok && runtimes_ok;
      answer(Response::json(ok ? 200 : 503, {{"status", ok ? "ok" : "unavailable"}, {"checks", checks}}));
    });
    if (!posted) answer(Response::json(503, {{"status", "unavailable"}, {"checks", {{"busy", true}}}}));
  }, pub);

  r.add("GET", "/metrics", [ctx, opts](Request& req, Responder done) {
    if (!metrics_authorized(req, *opts)) {
      auto res = Response::error(401, "Unauthorized: /metrics needs the admin token or [metrics] token as a Bearer token");
      res.set_header("WWW-Authenticate", "Bearer realm=\"skylab metrics\"");
      return done(std::move(res));
    }
    bool posted = ctx->work->post([done] {
      Response res;
      res.status = 200;
      res.body = metrics::render();
      res.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
      res.set_header("Cache-Control", "no-store");
      done(std::move(res));
    });
    if (!posted) done(Response::error(503, "Server busy"));
  }, pub);
}

}  // namespace skylab::api
