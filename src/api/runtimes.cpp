// /api/skylab/runtimes and /api/skylab/runtime_types: runtimes of a chosen
// type, GPU queue positions, per-user limits; /api/skylab/resources.
#include <sys/statvfs.h>

#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "api/api.hpp"
#include "api/work_queue.hpp"
#include "common/log.hpp"
#include "common/util.hpp"
#include "runtime/config.hpp"
#include "runtime/gpu.hpp"
#include "runtime/pool.hpp"

namespace skylab::api {

using http::Request;
using http::Responder;
using http::Response;
using nlohmann::json;

namespace {

struct Queued {
  std::string owner, type, kernel_name;
  std::chrono::system_clock::time_point created;
};

// Runtimes waiting for GPUs. Thread-safe.
class RuntimeQueue {
 public:
  void add(const std::string& id, Queued q) {
    std::lock_guard lock(mutex_);
    queued_[id] = std::move(q);
  }
  std::optional<Queued> take(const std::string& id) {
    std::lock_guard lock(mutex_);
    auto it = queued_.find(id);
    if (it == queued_.end()) return std::nullopt;
    Queued q = std::move(it->second);
    queued_.erase(it);
    return q;
  }
  std::optional<Queued> get(const std::string& id) {
    std::lock_guard lock(mutex_);
    auto it = queued_.find(id);
    if (it == queued_.end()) return std::nullopt;
    return it->second;
  }
  std::vector<std::pair<std::string, Queued>> of(const std::string& owner) {
    std::lock_guard lock(mutex_);
    std::vector<std::pair<std::string, Queued>> out;
    for (auto& [id, q] : queued_)
      if (q.owner == owner) out.emplace_back(id, q);
    return out;
  }

 private:
  std::mutex mutex_;
  std::map<std::string, Queued> queued_;
};

std::string type_of(const kernel::KernelModel& k, const runtime::Config& c) {
  return k.runtime_type.empty() ? c.runtimes.default_type : k.runtime_type;
}

json runtime_json(const kernel::KernelModel& k, const runtime::Config& c) {
  auto t = c.types.find(type_of(k, c));
  json j = {{"id", k.id},
            {"type", type_of(k, c)},
            {"state", k.execution_state},
            {"started", util::iso_time(k.started)},
            {"last_activity", util::iso_time(k.last_activity)},
            {"gpus", k.gpus},
            {"warm", k.warm},
            {"kernel", kernel_json(k)}};
  if (t != c.types.end()) {
    j["lifetime_deadline"] = util::iso_time(k.started + c.max_lifetime(t->second));
    j["idle_timeout_seconds"] = c.idle_timeout(t->second).count();
  }
  if (!k.reason.empty()) j["reason"] = k.reason;
  return j;
}

json queued_json(const std::string& id, const Queued& q, int position) {
  return {{"id", id}, {"type", q.type}, {"state", "queued"}, {"position", position},
          {"created", util::iso_time(q.created)}, {"gpus", json::array()}};
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
    std::lock_guard lock(mutex_);
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
  std::mutex mutex_;
  std::map<std::string, std::pair<std::chrono::steady_clock::time_point, double>> last_;
};

json usage_json(Context& ctx, const kernel::KernelModel& k, CpuSampler& cpu,
                const std::map<int, runtime::GpuUsage>& gpu_by_index) {
  json j = {{"id", k.id}, {"type", type_of(k, *ctx.runtime_config)}, {"state", k.execution_state}};
  kernel::Usage u;
  if (ctx.launcher) u = ctx.launcher->usage(k.id);
  auto t = ctx.runtime_config->types.find(type_of(k, *ctx.runtime_config));
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
    std::uint64_t mem = t != ctx.runtime_config->types.end() ? t->second.memory_bytes : 0;
    j["memory"] = {{"used", nullptr}, {"limit", or_null(mem)}};
    j["cpu"] = {{"seconds", nullptr}, {"percent", nullptr}, {"limit", nullptr}};
    j["disk"] = {{"used", nullptr}, {"limit", nullptr}};
  }
  json gpus = json::array();
  for (int g : k.gpus) {
    json one = {{"index", g}, {"memory_used", nullptr}, {"memory_total", nullptr}, {"utilization", nullptr}};
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

Result<kernel::KernelModel> start_runtime(Context& ctx, const std::string& spec, const std::string& user,
                                          const kernel::StartOptions& options) {
  if (ctx.pool && options.gpus.empty() && options.kernel_id.empty() && ctx.specs->find(spec).ok()) {
    if (auto m = ctx.pool->take(user, options.runtime_type, spec)) return *m;
  }
  return ctx.kernels->start(spec, user, options);
}

void add_runtime_routes(http::Router& r, std::shared_ptr<Context> ctx) {
  if (!ctx->runtime_config) ctx->runtime_config = std::make_shared<runtime::Config>(runtime::default_config());
  if (!ctx->gpus) ctx->gpus = std::make_shared<runtime::GpuAllocator>(std::vector<runtime::Gpu>{});
  auto queue = std::make_shared<RuntimeQueue>();
  const std::string id_re = "/api/skylab/runtimes/([0-9a-fA-F-]{1,64})/?";

  r.add("GET", "/api/skylab/runtime_types/?", [ctx](Request& req, Responder done) {
    const auto& c = *ctx->runtime_config;
    json types = json::array();
    for (auto& [name, t] : c.types) {
      types.push_back({{"name", name}, {"display_name", t.display_name}, {"memory", t.memory_bytes},
                       {"cpus", t.cpus}, {"gpus", t.gpus}, {"disk", t.disk_bytes ? json(t.disk_bytes) : json(nullptr)},
                       {"idle_timeout_seconds", c.idle_timeout(t).count()},
                       {"max_lifetime_seconds", c.max_lifetime(t).count()}, {"default", name == c.runtimes.default_type},
                       {"warm_ready", ctx->pool ? ctx->pool->ready(req.user.username, name) : 0}});
    }
    done(Response::json(200, {{"types", types},
                              {"gpus", {{"total", ctx->gpus->gpus().size()}, {"free", ctx->gpus->free_count()},
                                        {"queued", ctx->gpus->queue().size()}}}}));
  });

  r.add("GET", "/api/skylab/runtimes/?", [ctx, queue](Request& req, Responder done) {
    json out = json::array();
    for (auto& k : ctx->kernels->list())
      if (may_access(req.user, k.owner)) out.push_back(runtime_json(k, *ctx->runtime_config));
    for (auto& [id, q] : queue->of(req.user.username)) out.push_back(queued_json(id, q, ctx->gpus->position(id)));
    done(Response::json(200, out));
  });

  r.add("POST", "/api/skylab/runtimes/?", [ctx, queue](Request& req, Responder done) {
    auto body = parse_json_body(req.body);
    if (!body.ok()) return done(Response::from_error(body.error()));
    const auto& c = *ctx->runtime_config;
    for (auto& [k, _] : body->items())
      if (k != "type" && k != "kernel_name") return done(Response::error(400, "Unknown field '" + k + "'"));
    std::string type = c.runtimes.default_type, kernel_name = ctx->specs->default_name();
    if (auto t = body->find("type"); t != body->end()) {
      if (!t->is_string()) return done(Response::error(400, "'type' must be a string"));
      type = t->get<std::string>();
    }
    if (auto n = body->find("kernel_name"); n != body->end()) {
      if (!n->is_string()) return done(Response::error(400, "'kernel_name' must be a string"));
      kernel_name = n->get<std::string>();
    }
    auto t = c.types.find(type);
    if (t == c.types.end()) return done(Response::error(400, "Unknown runtime type '" + type + "'"));
    if (!ctx->specs->find(kernel_name).ok()) return done(Response::error(404, "No such kernel spec: " + kernel_name));

    // Per-user limits count running and queued runtimes.
    int mine = 0, mine_gpu = 0;
    for (auto& k : ctx->kernels->list())
      if (k.owner == req.user.username) {
        ++mine;
        mine_gpu += !k.gpus.empty();
      }
    int queued = static_cast<int>(queue->of(req.user.username).size());  // only GPU runtimes queue
    mine += queued;
    mine_gpu += queued;
    if (c.runtimes.max_per_user && mine >= c.runtimes.max_per_user)
      return done(Response::error(409, "You have " + std::to_string(mine) + " runtimes, the most allowed; delete one first"));
    if (t->second.gpus > 0 && mine_gpu >= c.runtimes.max_gpu_per_user)
      return done(Response::error(409, "You already have " + std::to_string(mine_gpu) + " GPU runtime(s), the most allowed"));

    kernel::StartOptions so;
    so.runtime_type = type;
    if (t->second.gpus == 0) {
      auto k = start_runtime(*ctx, kernel_name, req.user.username, so);
      if (!k.ok()) return done(Response::from_error(k.error()));
      return done(Response::json(201, runtime_json(k.value(), c)));
    }
    so.kernel_id = util::uuid4();
    std::string id = so.kernel_id;
    queue->add(id, Queued{req.user.username, type, kernel_name, std::chrono::system_clock::now()});
    std::string owner = req.user.username;
    auto start_error = std::make_shared<std::optional<Error>>();
    int pos = ctx->gpus->request(id, t->second.gpus, [ctx, queue, id, so, kernel_name, owner, start_error](std::vector<int> g) mutable {
      if (!queue->take(id)) {  // cancelled meanwhile
        ctx->gpus->release(id);
        return;
      }
      so.gpus = std::move(g);
      auto k = ctx->kernels->start(kernel_name, owner, so);
      if (!k.ok()) {
        log::warn("runtime " + id + ": could not start: " + k.error().message);
        *start_error = k.error();
        ctx->gpus->release(id);
      }
    });
    if (pos < 0) {
      queue->take(id);
      return done(Response::error(400, "Runtime type '" + type + "' needs " + std::to_string(t->second.gpus) +
                                           " GPUs; this server has " + std::to_string(ctx->gpus->gpus().size())));
    }
    if (pos == 0) {
      if (*start_error) return done(Response::from_error(**start_error));
      auto k = ctx->kernels->get(id);
      if (!k.ok()) return done(Response::from_error(k.error()));
      return done(Response::json(201, runtime_json(k.value(), c)));
    }
    auto q = queue->get(id);
    auto res = Response::json(202, queued_json(id, q ? *q : Queued{owner, type, kernel_name, {}}, pos));
    res.set_header("Location", "/api/skylab/runtimes/" + id);
    done(std::move(res));
  });

  r.add("GET", id_re, [ctx, queue](Request& req, Responder done) {
    const std::string& id = req.params[0];
    if (auto q = queue->get(id); q && may_access(req.user, q->owner))
      return done(Response::json(200, queued_json(id, *q, ctx->gpus->position(id))));
    auto k = ctx->kernels->get(id);
    if (!k.ok() || !may_access(req.user, k->owner)) return done(Response::error(404, "No such runtime: " + id));
    done(Response::json(200, runtime_json(k.value(), *ctx->runtime_config)));
  });

  r.add("DELETE", id_re, [ctx, queue](Request& req, Responder done) {
    const std::string& id = req.params[0];
    if (auto q = queue->get(id); q && may_access(req.user, q->owner)) {
      queue->take(id);
      ctx->gpus->cancel(id);
      return done(Response::empty(204));
    }
    auto k = ctx->kernels->get(id);
    if (!k.ok() || !may_access(req.user, k->owner)) return done(Response::error(404, "No such runtime: " + id));
    ctx->kernels->shutdown(id, [done](Status st) {
      done(st.ok() ? Response::empty(204) : Response::from_error(st.error()));
    });
  });

  auto cpu = std::make_shared<CpuSampler>();
  r.add("GET", "/api/skylab/resources/?", [ctx, cpu](Request& req, Responder done) {
    // Reads cgroup files and may walk /content: off the network thread.
    auto user = req.user;
    auto work = [ctx, cpu, user, done]() mutable {
      json gpus = json::array();
      std::map<int, runtime::GpuUsage> by_index;
      for (auto& u : runtime::gpu_usage()) {
        by_index[u.index] = u;
        gpus.push_back({{"index", u.index}, {"utilization", u.utilization}, {"memory_used", u.memory_used},
                        {"memory_total", u.memory_total}});
      }
      struct statvfs vfs{};
      json disk = json::object();
      if (::statvfs(".", &vfs) == 0)
        disk = {{"total", static_cast<std::uint64_t>(vfs.f_blocks) * vfs.f_frsize},
                {"free", static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize}};
      json runtimes = json::array();
      for (auto& k : ctx->kernels->list())
        if (may_access(user, k.owner)) runtimes.push_back(usage_json(*ctx, k, *cpu, by_index));
      done(Response::json(200, {{"host", {{"memory_total", meminfo("MemTotal")}, {"memory_available", meminfo("MemAvailable")},
                                          {"disk", disk}, {"gpus", gpus}, {"gpu_count", ctx->gpus->gpus().size()}}},
                                {"runtimes", runtimes}}));
    };
    if (!ctx->work || !ctx->work->post(work)) work();
  });
}

}  // namespace skylab::api
