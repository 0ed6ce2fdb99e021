// /api/skylab/runtimes and /api/skylab/runtime_types: runtimes of a chosen
// type, GPU queue positions, per-user limits; /api/skylab/resources.
#include <sys/statvfs.h>

#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "api/api.hpp"
#include "common/log.hpp"
#include "common/util.hpp"
#include "runtime/config.hpp"
#include "runtime/gpu.hpp"

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

}  // namespace

void add_runtime_routes(http::Router& r, std::shared_ptr<Context> ctx) {
  if (!ctx->runtime_config) ctx->runtime_config = std::make_shared<runtime::Config>(runtime::default_config());
  if (!ctx->gpus) ctx->gpus = std::make_shared<runtime::GpuAllocator>(std::vector<runtime::Gpu>{});
  auto queue = std::make_shared<RuntimeQueue>();
  const std::string id_re = "/api/skylab/runtimes/([0-9a-fA-F-]{1,64})/?";

  r.add("GET", "/api/skylab/runtime_types/?", [ctx](Request&, Responder done) {
    const auto& c = *ctx->runtime_config;
    json types = json::array();
    for (auto& [name, t] : c.types) {
      types.push_back({{"name", name}, {"display_name", t.display_name}, {"memory", t.memory_bytes},
                       {"cpus", t.cpus}, {"gpus", t.gpus}, {"idle_timeout_seconds", c.idle_timeout(t).count()},
                       {"max_lifetime_seconds", c.max_lifetime(t).count()}, {"default", name == c.runtimes.default_type}});
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
      auto k = ctx->kernels->start(kernel_name, req.user.username, so);
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

  r.add("GET", "/api/skylab/resources/?", [ctx](Request& req, Responder done) {
    json gpus = json::array();
    for (auto& u : runtime::gpu_usage())
      gpus.push_back({{"index", u.index}, {"utilization", u.utilization}, {"memory_used", u.memory_used},
                      {"memory_total", u.memory_total}});
    struct statvfs vfs{};
    json disk = json::object();
    if (::statvfs(".", &vfs) == 0)
      disk = {{"total", static_cast<std::uint64_t>(vfs.f_blocks) * vfs.f_frsize},
              {"free", static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize}};
    json runtimes = json::array();
    for (auto& k : ctx->kernels->list())
      if (may_access(req.user, k.owner)) runtimes.push_back({{"id", k.id}, {"gpus", k.gpus}});
    done(Response::json(200, {{"host", {{"memory_total", meminfo("MemTotal")}, {"memory_available", meminfo("MemAvailable")},
                                        {"disk", disk}, {"gpus", gpus}, {"gpu_count", ctx->gpus->gpus().size()}}},
                              {"runtimes", runtimes}}));
  });
}

}  // namespace skylab::api
