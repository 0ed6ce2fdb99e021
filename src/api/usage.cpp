// /api/skylab/usage (the caller's use this week and their limits) and the
// administrators' REST API under /api/skylab/admin/: running runtimes (stop
// one), the GPU queue, every user's use, the audit log. Every admin route
// answers 403 to anyone but an administrator, before it looks at anything.
#include <chrono>
#include <cmath>

#include <nlohmann/json.hpp>

#include "api/api.hpp"
#include "api/work_queue.hpp"
#include "auth/account_store.hpp"
#include "auth/audit_log.hpp"
#include "auth/auth.hpp"
#include "common/log.hpp"
#include "common/util.hpp"
#include "drive/drive.hpp"
#include "http/router.hpp"
#include "runtime/config.hpp"
#include "runtime/gpu.hpp"
#include "runtime/launch.hpp"
#include "runtime/service.hpp"
#include "runtime/usage_ledger.hpp"

namespace skylab::api {

namespace {

using http::Request;
using http::Responder;
using http::Response;
using json = nlohmann::json;

double hours(double seconds) {
  return std::round(seconds / 3600.0 * 10000.0) / 10000.0;
}

json totals_json(const runtime::UsageTotals& t) {
  json by = json::object();
  for (auto& [type, s] : t.runtime_seconds_by_type) {
    auto g = t.gpu_seconds_by_type.find(type);
    by[type] = {{"runtime_hours", hours(s)},
                {"gpu_hours", hours(g == t.gpu_seconds_by_type.end() ? 0 : g->second)}};
  }
  return {{"runtime_seconds", t.runtime_seconds},
          {"gpu_seconds", t.gpu_seconds},
          {"runtime_hours", hours(t.runtime_seconds)},
          {"gpu_hours", hours(t.gpu_seconds)},
          {"by_type", by},
          {"running", t.running}};
}

json limit_or_null(std::optional<double> v) {
  return v ? json(*v) : json(nullptr);
}

//! Runs `work` on the work queue; one catch-all; 503 when the queue is full.
void on_queue(const Context& ctx, Responder done, std::function<Response()> work) {
  respond_on_queue(ctx.work.get(), std::move(done), std::move(work), "usage handler");
}

std::optional<Response> admins_only(const Request& req) {
  if (!req.user.admin) return Response::error(403, "Forbidden: administrators only");
  return std::nullopt;
}

}  // namespace

void audit(const Context& ctx, const std::string& actor, const std::string& action,
           const std::string& target, const std::string& detail) {
  if (ctx.audit) ctx.audit->record(actor, action, target, detail);
}

void add_usage_routes(http::Router& r, std::shared_ptr<const Context> ctx) {
  auto ledger = ctx->ledger;
  auto config = ctx->runtime_config;

  r.add("GET", "/api/skylab/usage/?", [ctx, ledger, config](Request& req, Responder done) {
    auto me = req.user;
    on_queue(*ctx, done, [ctx, ledger, config, me]() -> Response {
      const auto& c = *config;
      auto now = ledger ? ledger->now() : std::chrono::system_clock::now();
      auto ws = runtime::week_start(now);
      json out = totals_json(ledger ? ledger->week(me.username) : runtime::UsageTotals{});
      out["user"] = me.username;
      out["week"] = {{"start", util::iso_time(ws)},
                     {"end", util::iso_time(ws + std::chrono::days(7))}};
      json storage = {
          {"used_bytes", nullptr},
          {"quota_bytes", c.drive.quota_bytes ? json(c.drive.quota_bytes) : json(nullptr)}};
      if (ctx->drive) {
        if (auto s = ctx->drive->storage(me); s.ok()) {
          storage["used_bytes"] = s->used;
          storage["quota_bytes"] = s->quota ? json(s->quota) : json(nullptr);
        }
      }
      out["storage"] = storage;
      out["limits"] = {
          {"gpu_hours_per_week",
           limit_or_null(runtime::gpu_hours_limit(c.quotas, me.username, me.admin))},
          {"max_runtimes", c.runtimes.max_per_user ? json(c.runtimes.max_per_user) : json(nullptr)},
          {"max_gpu_runtimes", c.runtimes.max_gpu_per_user},
          {"storage_bytes", storage["quota_bytes"]},
          {"max_lifetime_seconds", c.runtimes.max_lifetime.count()},
      };
      out["quota_refills"] = util::iso_time(ws + std::chrono::days(7));
      return Response::json(200, out);
    });
  });

  // ---- administration
  auto service = ctx->runtimes;
  r.add("GET", "/api/skylab/admin/runtimes/?", [ctx, service](Request& req, Responder done) {
    if (auto no = admins_only(req)) return done(*no);
    on_queue(*ctx, done, [ctx, service]() -> Response {
      auto now = std::chrono::system_clock::now();
      json running = json::array();
      for (auto& k : service->backend().list()) {
        auto u = service->backend().usage(k.id);  // cgroup files: off the Asio thread
        running.push_back(
            {{"id", k.id},
             {"owner", k.owner},
             {"type", service->config()->type_name(k.runtime_type)},
             {"kernel", k.name},
             {"state", kernel::to_string(k.execution_state)},
             {"started", util::iso_time(k.started)},
             {"age_seconds",
              std::chrono::duration_cast<std::chrono::seconds>(now - k.started).count()},
             {"gpus", runtime::gpus_of(k)},
             {"memory_bytes", u.known ? json(u.memory_used) : json(nullptr)},
             {"memory_limit_bytes",
              u.known && u.memory_limit ? json(u.memory_limit) : json(nullptr)},
             {"lease", service->lease_of(k.id)}});
      }
      json queue = json::array();
      for (auto& p : service->pending("")) {
        queue.push_back({{"id", p.id},
                         {"owner", p.user},
                         {"type", p.type},
                         {"state", p.state},
                         {"position", p.position},
                         {"reason", p.reason},
                         {"created", util::iso_time(p.created)},
                         {"gpus", p.gpus}});
      }
      int total = static_cast<int>(service->gpus()->gpus().size());
      return Response::json(
          200, {{"runtimes", running}, {"queue", queue}, {"gpus", {{"total", total}}}});
    });
  });

  r.add(
      "DELETE", "/api/skylab/admin/runtimes/([0-9a-fA-F-]{1,64})/?",
      [ctx, service](Request& req, Responder done) {
        if (auto no = admins_only(req)) return done(*no);
        const std::string id = req.params[0];
        std::string owner;
        if (auto p = service->pending_one(id))
          owner = p->user;
        else if (auto k = service->backend().get(id); k.ok())
          owner = k->owner;
        else
          return done(Response::error(404, "No such runtime: " + id));
        const std::string actor = req.user.username;
        service->release(id, [ctx, done, id, owner, actor](const Status& st) {
          if (!st.ok()) return done(Response::from_error(st.error()));
          log::info("administrator '" + actor + "' stopped runtime " + id + " of '" + owner + "'");
          if (!ctx->audit) return done(Response::empty(204));
          // The audit write blocks on SQLite: on the work queue, then the answer.
          on_queue(*ctx, done, [ctx, id, owner, actor]() -> Response {
            audit(*ctx, actor, "runtime.stop", owner, "runtime " + id);
            return Response::empty(204);
          });
        });
      });

  r.add("GET", "/api/skylab/admin/usage/?", [ctx, ledger, config](Request& req, Responder done) {
    if (auto no = admins_only(req)) return done(*no);
    on_queue(*ctx, done, [ctx, ledger, config]() -> Response {
      std::map<std::string, bool> admins;
      if (ctx->accounts)
        if (auto users = ctx->accounts->list_users(); users.ok())
          for (auto& u : users.value()) admins[u.username] = u.admin;
      auto all = ledger ? ledger->week_all() : std::map<std::string, runtime::UsageTotals>{};
      for (auto& [name, admin] : admins) all.try_emplace(name);
      json out = json::array();
      for (auto& [user, t] : all) {
        json j = totals_json(t);
        j["user"] = user;
        j["gpu_hours_per_week"] =
            limit_or_null(runtime::gpu_hours_limit(config->quotas, user, admins[user]));
        out.push_back(j);
      }
      auto ws = runtime::week_start(ledger ? ledger->now() : std::chrono::system_clock::now());
      return Response::json(
          200,
          {{"week",
            {{"start", util::iso_time(ws)}, {"end", util::iso_time(ws + std::chrono::days(7))}}},
           {"users", out}});
    });
  });

  r.add("GET", "/api/skylab/admin/audit/?", [ctx](Request& req, Responder done) {
    if (auto no = admins_only(req)) return done(*no);
    std::int64_t before = 0;
    std::size_t limit = 200;
    try {
      if (auto b = req.query_param("before")) before = std::stoll(b->substr(0, 20));
      if (auto l = req.query_param("limit"))
        limit = static_cast<std::size_t>(std::stoul(l->substr(0, 6)));
    } catch (...) {
      return done(Response::error(400, "'before' and 'limit' must be numbers"));
    }
    if (!ctx->audit) return done(Response::json(200, json::array()));
    on_queue(*ctx, done, [ctx, before, limit]() -> Response {
      auto entries = ctx->audit->recent(limit, before);
      if (!entries.ok()) return Response::from_error(entries.error());
      json out = json::array();
      for (auto& e : entries.value())
        out.push_back({{"id", e.id},
                       {"time", util::iso_time(std::chrono::system_clock::time_point(
                                    std::chrono::seconds(e.time)))},
                       {"actor", e.actor},
                       {"action", e.action},
                       {"target", e.target},
                       {"detail", e.detail}});
      return Response::json(200, out);
    });
  });
}

}  // namespace skylab::api
