// /api/skylab/runtimes and /api/skylab/runtime_types: runtimes of a chosen
// type, GPU queue positions, per-user limits; /api/skylab/resources.
#include <sys/statvfs.h>

#include <atomic>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "api/api.hpp"
#include "api/work_queue.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/util.hpp"
#include "runtime/config.hpp"
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

// `waiting`: why a started kernel is not ready yet (a cluster job in the queue), if known.
json runtime_json(const kernel::KernelModel& k, const runtime::Config& c,
                  const std::string& waiting = "") {
  const runtime::RuntimeType* t = c.find_type(k.runtime_type);
  json j = {{"id", k.id},
            {"type", c.type_name(k.runtime_type)},
            {"state", kernel::to_string(k.execution_state)},
            {"started", util::iso_time(k.started)},
            {"last_activity", util::iso_time(k.last_activity)},
            {"gpus", runtime::gpus_of(k)},
            {"warm", k.claimed},
            {"kernel", kernel_json(k)}};
  if (t) {
    j["lifetime_deadline"] = util::iso_time(k.started + c.max_lifetime(*t));
    j["idle_timeout_seconds"] = c.idle_timeout(*t).count();
  }
  if (!k.reason.empty()) j["reason"] = k.reason;
  if (!waiting.empty() && k.execution_state == kernel::KernelState::kStarting)
    j["reason"] = waiting;
  return j;
}

// A runtime not running yet: "queued" for GPUs (with its position) or
// "starting" (with the backend's reason, when it gave one).
json pending_json(const runtime::PendingRuntime& p) {
  json j = {{"id", p.id},
            {"type", p.type},
            {"state", p.state},
            {"position", p.position},
            {"created", util::iso_time(p.created)},
            {"gpus", p.gpus}};
  if (!p.reason.empty()) j["reason"] = p.reason;
  return j;
}

std::uint64_t meminfo(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string k;
  std::uint64_t v;
  std::string unit;
  while (in >> k >> v) {
    std::getline(in, unit);
    if (k == key + ":") return v * 1024;
  }
  return 0;
}

// CPU time samples per runtime, for a utilisation figure between two reads.
class CpuSampler {
 public:
  //! Percent of one CPU used since the previous sample of `id` (within
  //! 5 min), or a negative number when there is none yet.
  double percent(const std::string& id, double cpu_seconds) {
    auto now = std::chrono::steady_clock::now();
    MutexLock lock(mutex_);
    double pct = -1;
    if (auto it = last_.find(id); it != last_.end()) {
      double wall = std::chrono::duration<double>(now - it->second.first).count();
      if (wall > 0.05 && wall < 300 && cpu_seconds >= it->second.second)
        pct = 100.0 * (cpu_seconds - it->second.second) / wall;
    }
    if (last_.size() > 10000) last_.clear();
    last_[id] = {now, cpu_seconds};
    return pct;
  }

 private:
  Mutex mutex_;
  std::map<std::string, std::pair<std::chrono::steady_clock::time_point, double>> last_
      GUARDED_BY(mutex_);
};

json usage_json(const Context& ctx, const kernel::KernelModel& k, CpuSampler& cpu,
                const std::map<int, runtime::GpuUsage>& gpu_by_index) {
  json j = {{"id", k.id},
            {"type", ctx.runtime_config->type_name(k.runtime_type)},
            {"state", kernel::to_string(k.execution_state)}};
  kernel::Usage u = ctx.runtimes->backend().usage(k.id);
  const runtime::RuntimeType* t = ctx.runtime_config->find_type(k.runtime_type);
  auto or_null = [](std::uint64_t v) { return v ? json(v) : json(nullptr); };
  if (u.known) {
    j["memory"] = {{"used", u.memory_used}, {"limit", or_null(u.memory_limit)}};
    double pct = u.cpu_seconds >= 0 ? cpu.percent(k.id, u.cpu_seconds) : -1;
    j["cpu"] = {{"seconds", u.cpu_seconds >= 0 ? json(u.cpu_seconds) : json(nullptr)},
                {"percent", pct >= 0 ? json(pct) : json(nullptr)},
                {"limit", u.cpu_limit > 0 ? json(u.cpu_limit) : json(nullptr)}};
    j["disk"] = {{"used", u.disk_used}, {"limit", or_null(u.disk_limit)}};
  } else {
    // Unsandboxed kernels: only what the configuration says.
    std::uint64_t mem = t ? t->memory_bytes : 0;
    j["memory"] = {{"used", nullptr}, {"limit", or_null(mem)}};
    j["cpu"] = {{"seconds", nullptr}, {"percent", nullptr}, {"limit", nullptr}};
    j["disk"] = {{"used", nullptr}, {"limit", nullptr}};
  }
  json gpus = json::array();
  for (int g : runtime::gpus_of(k)) {
    json one = {{"index", g},
                {"memory_used", nullptr},
                {"memory_total", nullptr},
                {"utilization", nullptr}};
    if (auto it = gpu_by_index.find(g); it != gpu_by_index.end()) {
      one["memory_used"] = it->second.memory_used;
      one["memory_total"] = it->second.memory_total;
      one["utilization"] = it->second.utilization;
    }
    gpus.push_back(std::move(one));
  }
  j["gpus"] = std::move(gpus);
  return j;
}

}  // namespace

void add_runtime_routes(http::Router& r, std::shared_ptr<const Context> ctx) {
  auto service = ctx->runtimes;
  auto gpus = service->gpus();
  const std::string id_re = "/api/skylab/runtimes/([0-9a-fA-F-]{1,64})/?";

  r.add("GET", "/api/skylab/runtime_types/?", [ctx, service, gpus](Request& req, Responder done) {
    const auto& c = *ctx->runtime_config;
    json types = json::array();
    for (auto& [name, t] : c.types) {
      types.push_back(
          {{"name", name},
           {"display_name", t.display_name},
           {"memory", t.memory_bytes},
           {"cpus", t.cpus},
           {"gpus", t.gpus},
           {"disk", t.disk_bytes ? json(t.disk_bytes) : json(nullptr)},
           {"idle_timeout_seconds", c.idle_timeout(t).count()},
           {"max_lifetime_seconds", c.max_lifetime(t).count()},
           {"default", name == c.runtimes.default_type},
           {"warm_ready", service->pool() ? service->pool()->ready(req.user.username, name) : 0},
           // Started for anyone, handed to the first user who connects.
           {"instant_ready",
            service->pool() ? service->pool()->ready(runtime::kAnyone, name) : 0}});
    }
    done(Response::json(200, {{"types", types},
                              {"gpus",
                               {{"total", gpus->gpus().size()},
                                {"free", gpus->free_count()},
                                {"queued", gpus->queue().size()}}}}));
  });

  r.add("GET", "/api/skylab/runtimes/?", [ctx, service](Request& req, Responder done) {
    json out = json::array();
    for (auto& k : ctx->kernels->list()) {
      if (!may_access(req.user, k.owner)) continue;
      // A cluster runtime waiting for its job: the pending view, with the reason.
      if (auto p = service->pending_one(k.id))
        out.push_back(pending_json(*p));
      else
        out.push_back(
            runtime_json(k, *ctx->runtime_config, service->backend().waiting_reason(k.id)));
    }
    for (auto& p : service->pending(req.user.username))
      if (p.state == "queued") out.push_back(pending_json(p));
    done(Response::json(200, out));
  });

  r.add("POST", "/api/skylab/runtimes/?", [ctx, service](Request& req, Responder done) {
    auto body = parse_json_body(req.body);
    if (!body.ok()) return done(Response::from_error(body.error()));
    const auto& c = *ctx->runtime_config;
    for (auto& [k, _] : body->items())
      if (k != "type" && k != "kernel_name")
        return done(Response::error(400, "Unknown field '" + k + "'"));
    std::string type = c.runtimes.default_type, kernel_name = ctx->specs->default_name();
    if (auto t = body->find("type"); t != body->end()) {
      if (!t->is_string()) return done(Response::error(400, "'type' must be a string"));
      type = t->get<std::string>();
    }
    if (auto n = body->find("kernel_name"); n != body->end()) {
      if (!n->is_string()) return done(Response::error(400, "'kernel_name' must be a string"));
      kernel_name = n->get<std::string>();
    }
    if (!c.types.count(type))
      return done(Response::error(400, "Unknown runtime type '" + type + "'"));
    if (!ctx->specs->find(kernel_name).ok())
      return done(Response::error(404, "No such kernel spec: " + kernel_name));

    // The service admits (limits, GPU queue) now; a runtime that starts now
    // answers 201 from the service's thread once started, a queued one 202
    // at once (the start then happens when its GPUs are granted).
    runtime::RuntimeRequest rr;
    rr.user = req.user.username;
    rr.admin = req.user.admin;
    rr.spec = kernel_name;
    rr.type = type;
    rr.may_queue = true;
    auto answered = std::make_shared<std::atomic<bool>>(false);
    auto ticket =
        service->acquire(std::move(rr), [ctx, done, answered](Result<kernel::KernelModel> k) {
          if (answered->exchange(true)) return;  // queued: the 202 was the answer
          if (!k.ok()) return done(Response::from_error(k.error()));
          done(Response::json(201, runtime_json(k.value(), *ctx->runtime_config)));
        });
    if (!ticket.ok()) return done(Response::from_error(ticket.error()));
    // A cluster runtime may wait long for a machine: it answers 202 at once
    // too, and GET shows why it waits ("Waiting for a machine ...").
    bool remote = c.types.at(type).backend != runtime::Backend::kLocal;
    if (ticket->position == 0 && !remote) return;
    // Queued. (A grant racing with this reply: whichever comes first answers.)
    if (answered->exchange(true)) return;
    runtime::PendingRuntime p{ticket->id, req.user.username, type, kernel_name,
                              "queued",   ticket->position,  "",   std::chrono::system_clock::now(),
                              {}};
    if (auto now = service->pending_one(ticket->id)) p = *now;
    p.state = ticket->position > 0 ? "queued" : "starting";
    auto res = Response::json(202, pending_json(p));
    res.set_header("Location", "/api/skylab/runtimes/" + ticket->id);
    done(std::move(res));
  });

  r.add("GET", id_re, [ctx, service](Request& req, Responder done) {
    const std::string& id = req.params[0];
    if (auto p = service->pending_one(id); p && may_access(req.user, p->user))
      return done(Response::json(200, pending_json(*p)));
    auto k = ctx->kernels->get(id);
    if (!k.ok() || !may_access(req.user, k->owner))
      return done(Response::error(404, "No such runtime: " + id));
    done(Response::json(
        200, runtime_json(k.value(), *ctx->runtime_config, service->backend().waiting_reason(id))));
  });

  r.add("DELETE", id_re, [ctx, service](Request& req, Responder done) {
    const std::string& id = req.params[0];
    auto p = service->pending_one(id);
    auto k = ctx->kernels->get(id);
    bool mine = p ? may_access(req.user, p->user) : k.ok() && may_access(req.user, k->owner);
    if (!mine) return done(Response::error(404, "No such runtime: " + id));
    // Someone else's runtime (an administrator's stop): its notebook says so.
    if (k.ok() && k->owner != req.user.username)
      (void)ctx->kernels->notify(id, "skylab_runtime_event",
                                 {{"event", "stopped"}, {"reason", "operator"}});
    service->release(id, [done](const Status& st) {
      done(st.ok() ? Response::empty(204) : Response::from_error(st.error()));
    });
  });

  auto cpu = std::make_shared<CpuSampler>();
  r.add("GET", "/api/skylab/resources/?",
        [ctx, cpu, allocator = gpus](Request& req, Responder done) {
          // Reads cgroup files and may walk /content: off the network thread.
          auto user = req.user;
          respond_on_queue(
              ctx->work.get(), done,
              [ctx, cpu, allocator, user]() {
                json gpus = json::array();
                std::map<int, runtime::GpuUsage> by_index;
                for (auto& u : runtime::gpu_usage()) {
                  by_index[u.index] = u;
                  gpus.push_back({{"index", u.index},
                                  {"utilization", u.utilization},
                                  {"memory_used", u.memory_used},
                                  {"memory_total", u.memory_total}});
                }
                struct statvfs vfs {};
                json disk = json::object();
                if (::statvfs(".", &vfs) == 0)
                  disk = {{"total", static_cast<std::uint64_t>(vfs.f_blocks) * vfs.f_frsize},
                          {"free", static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize}};
                json runtimes = json::array();
                for (auto& k : ctx->kernels->list())
                  if (may_access(user, k.owner))
                    runtimes.push_back(usage_json(*ctx, k, *cpu, by_index));
                return Response::json(200, {{"host",
                                             {{"memory_total", meminfo("MemTotal")},
                                              {"memory_available", meminfo("MemAvailable")},
                                              {"disk", disk},
                                              {"gpus", gpus},
                                              {"gpu_count", allocator->gpus().size()}}},
                                            {"runtimes", runtimes}});
              },
              "resources");
        });
}

}  // namespace skylab::api
