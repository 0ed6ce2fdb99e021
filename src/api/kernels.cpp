// /api/kernels: list, start, get, delete, interrupt, restart.
#include <nlohmann/json.hpp>

#include "api/api.hpp"
#include "common/util.hpp"
#include "runtime/service.hpp"

namespace skylab::api {

using http::Request;
using http::Responder;
using http::Response;
using nlohmann::json;

json kernel_json(const kernel::KernelModel& k) {
  return {{"id", k.id},
          {"name", k.name},
          {"last_activity", util::iso_time(k.last_activity)},
          {"execution_state", kernel::to_string(k.execution_state)},
          {"connections", k.connections}};
}

namespace {

// The kernel if it exists and `user` may see it; another user's kernel is
// reported exactly like a missing one.
Result<kernel::KernelModel> visible_kernel(const Context& ctx, const auth::Identity& user,
                                           const std::string& id) {
  auto k = ctx.kernels->get(id);
  if (!k.ok() || !may_access(user, k->owner))
    return Error::not_found("Kernel does not exist: " + id);
  return k;
}

}  // namespace

void add_kernel_routes(http::Router& r, std::shared_ptr<const Context> ctx) {
  const std::string id = "/api/kernels/([0-9a-fA-F-]{1,64})";

  r.add("GET", "/api/kernels/?", [ctx](Request& req, Responder done) {
    json out = json::array();
    for (auto& k : ctx->kernels->list())
      if (may_access(req.user, k.owner)) out.push_back(kernel_json(k));
    done(Response::json(200, out));
  });

  r.add("POST", "/api/kernels/?", [ctx](Request& req, Responder done) {
    auto body = parse_json_body(req.body);
    if (!body.ok()) return done(Response::from_error(body.error()));
    std::string name = ctx->specs->default_name();
    if (auto n = body->find("name"); n != body->end() && !n->is_null()) {
      if (!n->is_string()) return done(Response::error(400, "'name' must be a string"));
      name = n->get<std::string>();
      if (name.empty()) name = ctx->specs->default_name();
    }
    // Admission now; the start on the runtime service's threads, the reply
    // from there.
    runtime::RuntimeRequest rr;
    rr.user = req.user.username;
    rr.admin = req.user.admin;
    rr.spec = name;
    auto ticket = ctx->runtimes->acquire(std::move(rr), [done](Result<kernel::KernelModel> k) {
      if (!k.ok()) return done(Response::from_error(k.error()));
      auto res = Response::json(201, kernel_json(k.value()));
      res.set_header("Location", "/api/kernels/" + k->id);
      done(std::move(res));
    });
    if (!ticket.ok()) done(Response::from_error(ticket.error()));
  });

  r.add("GET", id + "/?", [ctx](Request& req, Responder done) {
    auto k = visible_kernel(*ctx, req.user, req.params[0]);
    done(k.ok() ? Response::json(200, kernel_json(k.value())) : Response::from_error(k.error()));
  });

  r.add("DELETE", id + "/?", [ctx](Request& req, Responder done) {
    auto k = visible_kernel(*ctx, req.user, req.params[0]);
    if (!k.ok()) return done(Response::from_error(k.error()));
    // Someone else's runtime (an administrator's stop): its notebook says so.
    if (k->owner != req.user.username)
      (void)ctx->kernels->notify(k->id, "skylab_runtime_event",
                                 {{"event", "stopped"}, {"reason", "operator"}});
    ctx->runtimes->release(k->id, [done](const Status& st) {
      done(st.ok() ? Response::empty(204) : Response::from_error(st.error()));
    });
  });

  r.add("POST", id + "/interrupt/?", [ctx](Request& req, Responder done) {
    auto k = visible_kernel(*ctx, req.user, req.params[0]);
    if (!k.ok()) return done(Response::from_error(k.error()));
    auto st = ctx->kernels->interrupt(k->id);
    done(st.ok() ? Response::empty(204) : Response::from_error(st.error()));
  });

  r.add("POST", id + "/restart/?", [ctx](Request& req, Responder done) {
    auto k = visible_kernel(*ctx, req.user, req.params[0]);
    if (!k.ok()) return done(Response::from_error(k.error()));
    ctx->kernels->restart(k->id, [done](Result<kernel::KernelModel> m) {
      if (!m.ok()) return done(Response::error(500, "Restart failed: " + m.error().message));
      done(Response::json(200, kernel_json(m.value())));
    });
  });
}

}  // namespace skylab::api
