// /api/skylab/secrets: the user's secrets (names and notebook grants; values
// go in, never out), and the broker that hands values to granted kernels.
#include "api/secrets.hpp"

#include <atomic>

#include <nlohmann/json.hpp>

#include "api/api.hpp"
#include "api/sessions.hpp"
#include "api/work_queue.hpp"
#include "auth/secret_store.hpp"
#include "common/json_limits.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/util.hpp"
#include "kernel/manager.hpp"

namespace skylab::api {

using http::Request;
using http::Responder;
using http::Response;
using nlohmann::json;

// ---- broker ----

class SecretsBroker::Observer : public kernel::KernelObserver,
                                public std::enable_shared_from_this<Observer> {
 public:
  Observer(std::weak_ptr<SecretsBroker> broker, std::string kernel_id)
      : broker_(std::move(broker)), kernel_id_(std::move(kernel_id)) {}

  void on_kernel_message(kernel::Channel ch, const std::shared_ptr<const kernel::Message>& msg,
                         const kernel::MessageInfo& info) override {
    if (ch != kernel::Channel::kStdin || info.msg_type != kSecretRequest) return;
    if (msg->content.size() > 4096) return;
    auto broker = broker_.lock();
    if (!broker) return;
    // A kernel has one request at a time (userdata.get blocks); a few in
    // flight allow for abandoned ones. More are dropped, unanswered.
    if (in_flight_.fetch_add(1) >= kMaxInFlight) {
      in_flight_.fetch_sub(1);
      return;
    }
    auto content = json_limits::parse(msg->content);
    std::string name, request_id;
    if (content.ok() && content->is_object()) {
      auto& c = content.value();
      if (c.contains("name") && c["name"].is_string()) name = c["name"].get<std::string>();
      if (c.contains("request_id") && c["request_id"].is_string())
        request_id = c["request_id"].get<std::string>();
    }
    if (request_id.size() > 128) request_id.resize(128);
    log::debug("kernel " + kernel_id_ + " asks for secret " +
               (auth::SecretStore::valid_name(name) ? "'" + name + "'" : "(a malformed name)"));
    std::weak_ptr<Observer> self = weak_from_this();
    bool queued = broker->work_->post(
        [broker, self, id = kernel_id_, name, request_id, parent = msg->header] {
          broker->answer(id, name, request_id, parent);
          if (auto o = self.lock()) o->in_flight_.fetch_sub(1);
        });
    if (!queued) in_flight_.fetch_sub(1);
  }

  void on_kernel_removed() override {
    if (auto broker = broker_.lock()) broker->forget(kernel_id_);
  }

 private:
  static constexpr int kMaxInFlight = 4;
  std::weak_ptr<SecretsBroker> broker_;
  std::string kernel_id_;
  std::atomic<int> in_flight_{0};
};

SecretsBroker::SecretsBroker(std::shared_ptr<kernel::KernelService> kernels,
                             std::shared_ptr<auth::SecretStore> store,
                             std::shared_ptr<SessionStore> sessions,
                             std::shared_ptr<WorkQueue> work)
    : kernels_(std::move(kernels)),
      store_(std::move(store)),
      sessions_(std::move(sessions)),
      work_(std::move(work)) {}

void SecretsBroker::watch(const std::string& kernel_id) {
  MutexLock lock(mu_);
  if (observers_.count(kernel_id)) return;
  auto o = std::make_shared<Observer>(weak_from_this(), kernel_id);
  if (!kernels_->add_observer(kernel_id, o).ok()) return;
  observers_[kernel_id] = std::move(o);
}

void SecretsBroker::bind_job(const std::string& kernel_id, const std::string& path) {
  {
    MutexLock lock(mu_);
    job_paths_[kernel_id] = path;
  }
  watch(kernel_id);
}

void SecretsBroker::forget(const std::string& kernel_id) {
  MutexLock lock(mu_);
  observers_.erase(kernel_id);
  job_paths_.erase(kernel_id);
}

void SecretsBroker::answer(const std::string& kernel_id, const std::string& name,
                           const std::string& request_id, const std::string& parent_header) {
  json reply = {{"request_id", request_id}};
  auto fail = [&](const char* ename, const std::string& message) {
    reply["status"] = "error";
    reply["ename"] = ename;
    reply["evalue"] = message;
  };
  auto k = kernels_->get(kernel_id);
  if (!k.ok()) return;
  // The notebooks this kernel works on, as bound now (Sessions API). Every
  // one of them must have access: code of each can read what the kernel gets.
  std::vector<std::string> paths;
  bool foreign = false;
  {
    MutexLock lock(mu_);
    if (auto j = job_paths_.find(kernel_id); j != job_paths_.end()) paths.push_back(j->second);
  }
  for (auto& s : sessions_->list()) {
    if (s.kernel_id != kernel_id) continue;
    if (s.owner != k->owner) foreign = true;
    paths.push_back(s.path);
  }
  if (foreign) paths.clear();
  std::string shown = name.substr(0, 128);
  if (!auth::SecretStore::valid_name(name)) {
    fail("SecretNotFoundError", "Secret " + shown + " does not exist.");
  } else {
    auto r = store_->read(k->owner, name, paths);
    if (!r.ok()) {
      log::error("kernel " + kernel_id + ": secret '" + name + "' of '" + k->owner +
                 "': " + r.error().message);
      fail("Error", "The server could not read secret " + shown);
    } else if (r->access == auth::SecretStore::Access::kNotFound) {
      fail("SecretNotFoundError", "Secret " + shown + " does not exist.");
    } else if (r->access == auth::SecretStore::Access::kNoAccess) {
      log::info("kernel " + kernel_id + " of '" + k->owner +
                "': notebook has no access to secret '" + name + "'");
      fail("NotebookAccessError", "Notebook does not have access to secret " + shown);
    } else {
      reply["status"] = "ok";
      reply["value"] = std::move(r->value);
    }
  }
  auto msg = kernel::make_message(kSecretReply, reply, "skylab-secrets", "skylab", parent_header);
  if (reply.contains("value")) {
    std::string& v = reply["value"].get_ref<std::string&>();
    std::fill(v.begin(), v.end(), '\0');
  }
  auto st = kernels_->send(kernel_id, kernel::Channel::kStdin, std::move(msg));
  (void)st;  // the kernel is gone: nobody to tell
}

// ---- routes ----

namespace {

void on_work(const Context& ctx, Responder done, std::function<Response()> work) {
  respond_on_queue(ctx.work.get(), std::move(done), std::move(work), "secrets handler");
}

json info_json(const auth::SecretInfo& s) {
  return {{"name", s.name},
          {"grants", s.grants},
          {"updated",
           util::iso_time(std::chrono::system_clock::time_point(std::chrono::seconds(s.updated)))}};
}

const std::string kName = "([A-Za-z_][A-Za-z0-9_]{0,127})";

}  // namespace

void add_secret_routes(http::Router& r, std::shared_ptr<const Context> ctx) {
  if (!ctx->secrets) return;

  r.add("GET", "/api/skylab/secrets/?", [ctx](Request& req, Responder done) {
    on_work(*ctx, done, [ctx, me = req.user.username]() -> Response {
      auto list = ctx->secrets->list(me);
      if (!list.ok()) return Response::from_error(list.error());
      json out = json::array();
      for (auto& s : list.value()) out.push_back(info_json(s));
      return Response::json(200, out);
    });
  });

  http::RouteOptions put_opts;
  put_opts.body_limit =
      auth::SecretStore::kMaxValueBytes * 6 + 4096;  // JSON escapes (\u00XX) of 64 KiB
  r.add(
      "PUT", "/api/skylab/secrets/" + kName + "/?",
      [ctx](Request& req, Responder done) {
        auto body = parse_json_body(req.body);
        if (!body.ok()) return done(Response::from_error(body.error()));
        auto v = body->find("value");
        if (v == body->end() || !v->is_string())
          return done(Response::error(400, "Give the secret's \"value\" as a string"));
        auto value = std::make_shared<std::string>(v->get<std::string>());
        std::fill(req.body.begin(), req.body.end(), '\0');
        on_work(*ctx, done,
                [ctx, me = req.user.username, name = req.params[0], value]() -> Response {
                  auto st = ctx->secrets->put(me, name, *value);
                  std::fill(value->begin(), value->end(), '\0');
                  if (!st.ok()) return Response::from_error(st.error());
                  log::info("user '" + me + "' stored secret '" + name + "'");
                  return Response::json(200, {{"name", name}});
                });
      },
      put_opts);

  r.add("DELETE", "/api/skylab/secrets/" + kName + "/?", [ctx](Request& req, Responder done) {
    on_work(*ctx, done, [ctx, me = req.user.username, name = req.params[0]]() -> Response {
      auto st = ctx->secrets->remove(me, name);
      if (!st.ok()) return Response::from_error(st.error());
      log::info("user '" + me + "' deleted secret '" + name + "'");
      return Response::empty(204);
    });
  });

  auto grant = [ctx](bool granted) {
    return [ctx, granted](Request& req, Responder done) {
      auto body = parse_json_body(req.body);
      if (!body.ok()) return done(Response::from_error(body.error()));
      auto p = body->find("path");
      if (p == body->end() || !p->is_string())
        return done(Response::error(400, "Give the notebook's \"path\""));
      auto path = auth::SecretStore::normalize_path(p->get<std::string>());
      if (!path.ok()) return done(Response::from_error(path.error()));
      on_work(*ctx, done,
              [ctx, granted, me = req.user.username, name = req.params[0],
               path = path.value()]() -> Response {
                auto st = ctx->secrets->set_grant(me, name, path, granted);
                if (!st.ok()) return Response::from_error(st.error());
                return Response::json(200, {{"name", name}, {"path", path}, {"access", granted}});
              });
    };
  };
  r.add("PUT", "/api/skylab/secrets/" + kName + "/grants/?", grant(true));
  r.add("DELETE", "/api/skylab/secrets/" + kName + "/grants/?", grant(false));
}

}  // namespace skylab::api
