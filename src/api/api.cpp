#include "api/api.hpp"
#include "live/live.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "api/channels.hpp"
#include "api/collab.hpp"
#include "api/secrets.hpp"
#include "api/sessions.hpp"
#include "api/terminals.hpp"
#include "api/work_queue.hpp"
#include "common/json_limits.hpp"
#include "common/util.hpp"
#include "drive/drive.hpp"
#include "runtime/config.hpp"
#include "runtime/service.hpp"

namespace skylab::api {

using http::Request;
using http::Responder;
using http::Response;
using nlohmann::json;

Result<json> parse_json_body(const std::string& body) {
  if (body.empty()) return json::object();
  auto parsed = json_limits::parse(body);
  if (!parsed.ok()) {
    if (parsed.error().code == Error::Code::kTooLarge) return parsed.error();
    return Error::bad_request("Malformed JSON in request body: " + parsed.error().message);
  }
  json j = std::move(parsed).value();
  if (!j.is_object()) return Error::bad_request("Request body must be a JSON object");
  return j;
}

bool may_access(const auth::Identity& user, const std::string& owner) {
  return user.admin || user.username == owner;
}

std::shared_ptr<ChannelsRegistry> make_channels(std::shared_ptr<kernel::KernelService> kernels,
                                                std::shared_ptr<live::LiveNotebooks> live,
                                                std::shared_ptr<SecretsBroker> secret_broker) {
  ClientMessageHook hook;
  if (live || secret_broker)
    hook = [live, secret_broker](const std::string& kernel_id, kernel::Channel ch,
                                 const kernel::Message& msg) {
      if (live) live->on_client_message(kernel_id, ch, msg);
      // Code a client runs may ask for secrets: the kernel's stdin is heard from then on.
      if (secret_broker && ch == kernel::Channel::kShell) secret_broker->watch(kernel_id);
    };
  return std::make_shared<ChannelsRegistry>(std::move(kernels), std::move(hook));
}

namespace {

json kernelspec_model(const kernel::KernelSpec& k) {
  json resources = json::object();
  if (!k.resource_dir.empty()) {
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator(k.resource_dir, ec)) {
      std::string f = e.path().filename().string();
      if (f.rfind("logo-", 0) == 0)
        resources[e.path().stem().string()] = "/kernelspecs/" + k.name + "/" + f;
      else if (f == "kernel.js" || f == "kernel.css")
        resources[f] = "/kernelspecs/" + k.name + "/" + f;
    }
  }
  return {{"name", k.name}, {"spec", k.spec}, {"resources", resources}};
}

std::string mime_for(const std::string& path) {
  auto ends = [&](const char* s) {
    std::string suf(s);
    return path.size() >= suf.size() &&
           path.compare(path.size() - suf.size(), suf.size(), suf) == 0;
  };
  if (ends(".png")) return "image/png";
  if (ends(".svg")) return "image/svg+xml";
  if (ends(".js")) return "application/javascript";
  if (ends(".css")) return "text/css";
  if (ends(".json")) return "application/json";
  return "application/octet-stream";
}

}  // namespace

void add_routes(http::Router& router, std::shared_ptr<const Context> ctx) {
  http::Router* r = &router;
  http::RouteOptions pub;
  pub.public_route = true;

  r->add(
      "GET", "/api/?",
      [ctx](Request&, Responder done) {
        done(Response::json(200, {{"version", "2.0.0"}, {"skylab_version", ctx->version}}));
      },
      pub);

  r->add("GET", "/api/status", [ctx](Request& req, Responder done) {
    // Counts only what the user may see: others' activity is not theirs to know.
    int connections = 0, count = 0;
    auto last = ctx->started;
    for (auto& k : ctx->kernels->list()) {
      if (!may_access(req.user, k.owner)) continue;
      connections += k.connections;
      ++count;
      last = std::max(last, k.last_activity);
    }
    if (req.user.admin) last = ctx->kernels->last_activity();
    done(Response::json(200, {{"started", util::iso_time(ctx->started)},
                              {"last_activity", util::iso_time(last)},
                              {"connections", connections},
                              {"kernels", count}}));
  });

  r->add("GET", "/api/me", [ctx](Request& req, Responder done) {
    const auto& u = req.user.username;
    json me = {{"identity",
                {{"username", u},
                 {"name", u},
                 {"display_name", u},
                 {"initials", u.empty() ? "" : u.substr(0, 1)},
                 {"avatar_url", nullptr},
                 {"color", nullptr}}},
               {"permissions", json::object()},
               {"skylab",
                {{"admin", req.user.admin},
                 {"auth", req.user.via == auth::Via::kSession    ? "session"
                          : req.user.via == auth::Via::kApiToken ? "token"
                                                                 : "admin-token"},
                 {"output_origin", ctx->output_origin}}}};
    if (!ctx->drive || !ctx->work) return done(Response::json(200, me));
    // Storage use: a filesystem query or a (bounded) walk, off the Asio thread.
    auto user = req.user;
    respond_on_queue(
        ctx->work.get(), done,
        [ctx, user, me]() mutable {
          auto st = ctx->drive->storage(user);
          if (st.ok()) me["storage"] = {{"used", st->used}, {"quota", st->quota}};
          return Response::json(200, me);
        },
        "me");
  });

  r->add("GET", "/api/kernelspecs/?", [ctx](Request&, Responder done) {
    json specs = json::object();
    for (auto& k : ctx->specs->list()) specs[k.name] = kernelspec_model(k);
    done(Response::json(200, {{"default", ctx->specs->default_name()}, {"kernelspecs", specs}}));
  });

  r->add("GET", "/api/kernelspecs/([^/]+)/?", [ctx](Request& req, Responder done) {
    auto k = ctx->specs->find(req.params[0]);
    if (!k.ok()) return done(Response::from_error(k.error()));
    done(Response::json(200, kernelspec_model(k.value())));
  });

  r->add("GET", "/kernelspecs/([^/]+)/([^/]+)", [ctx](Request& req, Responder done) {
    auto path = ctx->specs->resource_path(req.params[0], req.params[1]);
    if (!path.ok()) return done(Response::from_error(path.error()));
    std::ifstream in(path.value(), std::ios::binary);
    if (!in) return done(Response::error(404, "No such resource"));
    Response res;
    res.body.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    res.set_header("Content-Type", mime_for(path.value()));
    res.set_header("Cache-Control", "max-age=3600");
    done(std::move(res));
  });

  add_kernel_routes(*r, ctx);
  add_runtime_routes(*r, ctx);
  add_channel_routes(*r, ctx);
  add_account_routes(*r, ctx);
  add_share_routes(*r, ctx);
  add_collab_routes(*r, ctx);
  add_contents_routes(*r, ctx);
  add_session_routes(*r, ctx);
  add_secret_routes(*r, ctx);
  add_job_routes(*r, ctx);
  add_web_routes(*r, ctx);
  add_runtime_file_routes(*r, ctx);
  add_example_routes(*r, ctx);
  add_terminal_routes(*r, ctx);
  add_usage_routes(*r, ctx);
}

}  // namespace skylab::api
