// /api/sessions: list, create, get, patch (rename, change kernel), delete.
#include "api/sessions.hpp"

#include <fstream>
#include <sstream>
#include <variant>

#include <nlohmann/json.hpp>

#include "api/api.hpp"
#include "common/json_limits.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/safe_fs.hpp"
#include "common/util.hpp"
#include "runtime/service.hpp"

namespace skylab::api {

using http::Request;
using http::Responder;
using http::Response;
using nlohmann::json;

namespace {

std::string norm(std::string_view p) {
  while (!p.empty() && p.front() == '/') p.remove_prefix(1);
  while (!p.empty() && p.back() == '/') p.remove_suffix(1);
  return std::string(p);
}

}  // namespace

// ------------------------------------------------------------------ store

SessionStore::SessionStore(std::string file) : file_(std::move(file)) {
  std::ifstream in(file_);
  if (!in) return;
  std::stringstream ss;
  ss << in.rdbuf();
  auto v = json_limits::parse_or_discarded(ss.str(), json_limits::kStoredLimits);
  if (!v.is_array()) {
    log::warn("sessions: ignoring " + file_ + " (not a JSON list)");
    return;
  }
  for (auto& e : v) {
    try {
      SessionRecord r{e.at("id").get<std::string>(),   e.at("owner").get<std::string>(),
                      e.at("path").get<std::string>(), e.at("name").get<std::string>(),
                      e.at("type").get<std::string>(), e.at("kernel_id").get<std::string>()};
      sessions_[r.id] = r;
    } catch (const json::exception&) {
      log::warn("sessions: skipping an unreadable entry of " + file_);
    }
  }
}

void SessionStore::save_locked() const {
  if (file_.empty()) return;
  json out = json::array();
  for (auto& [_, r] : sessions_)
    out.push_back({{"id", r.id},
                   {"owner", r.owner},
                   {"path", r.path},
                   {"name", r.name},
                   {"type", r.type},
                   {"kernel_id", r.kernel_id}});
  if (!safe_fs::write_file(file_, out.dump(), 0600, false).ok())
    log::warn("sessions: cannot write " + file_ + "; they will not survive a restart");
}

SessionRecord SessionStore::create(SessionRecord r) {
  MutexLock lock(mu_);
  do {
    r.id = util::uuid4();
  } while (sessions_.count(r.id));
  sessions_[r.id] = r;
  save_locked();
  return r;
}

std::optional<SessionRecord> SessionStore::get(const std::string& id) const {
  MutexLock lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::nullopt;
  return it->second;
}

std::optional<SessionRecord> SessionStore::find_by_path(const std::string& owner,
                                                        const std::string& path) const {
  MutexLock lock(mu_);
  std::string want = norm(path);
  for (auto& [_, s] : sessions_)
    if (s.owner == owner && norm(s.path) == want) return s;
  return std::nullopt;
}

std::vector<SessionRecord> SessionStore::list() const {
  MutexLock lock(mu_);
  std::vector<SessionRecord> out;
  for (auto& [_, s] : sessions_) out.push_back(s);
  return out;
}

bool SessionStore::update(const SessionRecord& r) {
  MutexLock lock(mu_);
  auto it = sessions_.find(r.id);
  if (it == sessions_.end()) return false;
  it->second = r;
  save_locked();
  return true;
}

bool SessionStore::remove(const std::string& id) {
  MutexLock lock(mu_);
  if (sessions_.erase(id) == 0) return false;
  save_locked();
  return true;
}

std::size_t SessionStore::rename_path(const std::string& owner, const std::string& from,
                                      const std::string& to) {
  MutexLock lock(mu_);
  std::string f = norm(from), t = norm(to);
  std::size_t changed = 0;
  if (f.empty() || f == t) return 0;
  for (auto& [_, s] : sessions_) {
    if (s.owner != owner) continue;
    std::string p = norm(s.path);
    if (p == f) {
      s.path = t;
    } else if (p.size() > f.size() && p.compare(0, f.size(), f) == 0 && p[f.size()] == '/') {
      s.path = t + p.substr(f.size());
    } else {
      continue;
    }
    // The name of a notebook session follows its file (JupyterLab does the same).
    if (s.type == "notebook") {
      auto slash = s.path.rfind('/');
      s.name = slash == std::string::npos ? s.path : s.path.substr(slash + 1);
    }
    ++changed;
  }
  if (changed) save_locked();
  return changed;
}

// ------------------------------------------------------------------ routes

namespace {

//! The session's model, or nullopt when its kernel is gone (the session is
//! then dropped, as Jupyter Server does).
std::optional<json> session_model(const Context& ctx, const SessionRecord& s) {
  auto k = ctx.kernels->get(s.kernel_id);
  if (!k.ok()) {
    ctx.sessions->remove(s.id);
    return std::nullopt;
  }
  json m = {{"id", s.id},
            {"path", s.path},
            {"name", s.name},
            {"type", s.type},
            {"kernel", kernel_json(k.value())}};
  if (s.type == "notebook") m["notebook"] = {{"path", s.path}, {"name", s.name}};
  return m;
}

Result<SessionRecord> visible_session(const Context& ctx, const auth::Identity& user,
                                      const std::string& id) {
  auto s = ctx.sessions->get(id);
  if (!s || !may_access(user, s->owner))
    return Error::not_found("Session not found: session_id='" + id + "'");
  return *s;
}

using KernelOrResponse = std::variant<kernel::KernelModel, Response>;

//! Starts a kernel of spec `name` (default if empty) through the runtime
//! service; `then` runs exactly once, on the service's thread (refusals: on
//! this one). Unknown spec: 501 as Jupyter.
void start_kernel(const Context& ctx, const auth::Identity& user, std::string name,
                  const std::function<void(KernelOrResponse)>& then) {
  if (name.empty()) name = ctx.specs->default_name();
  auto answer = [name](const Error& e) -> KernelOrResponse {
    if (e.code == Error::Code::kNotFound)
      return Response::json(
          501, {{"message", "The '" + name +
                                "' kernel is not available. Please pick another suitable "
                                "kernel instead, or install that kernel."},
                {"short_message", name + " not found"}});
    return Response::from_error(e);
  };
  runtime::RuntimeRequest rr;
  rr.user = user.username;
  rr.admin = user.admin;
  rr.spec = name;
  auto ticket = ctx.runtimes->acquire(std::move(rr), [then, answer](Result<kernel::KernelModel> k) {
    if (!k.ok()) return then(answer(k.error()));
    then(std::move(k.value()));
  });
  if (!ticket.ok()) then(answer(ticket.error()));
}

Result<std::string> string_field(const json& m, const char* key, bool required) {
  auto it = m.find(key);
  if (it == m.end() || it->is_null()) {
    if (required) return Error::bad_request(std::string("Missing field in JSON data: ") + key);
    return std::string();
  }
  if (!it->is_string()) return Error::bad_request(std::string("'") + key + "' must be a string");
  return it->get<std::string>();
}

}  // namespace

void add_session_routes(http::Router& r, std::shared_ptr<const Context> ctx) {
  const std::string id = "/api/sessions/([0-9a-fA-F-]{1,64})";

  r.add("GET", "/api/sessions/?", [ctx](Request& req, Responder done) {
    json out = json::array();
    for (auto& s : ctx->sessions->list()) {
      if (!may_access(req.user, s.owner)) continue;
      if (auto m = session_model(*ctx, s)) out.push_back(std::move(*m));
    }
    done(Response::json(200, out));
  });

  r.add("POST", "/api/sessions/?", [ctx](Request& req, Responder done) {
    if (req.body.empty()) return done(Response::error(400, "No JSON data provided"));
    auto body = parse_json_body(req.body);
    if (!body.ok()) return done(Response::from_error(body.error()));
    json m = std::move(body.value());
    if (auto nb = m.find("notebook"); nb != m.end() && nb->is_object() && nb->contains("path")) {
      m["path"] = (*nb)["path"];
      m["type"] = "notebook";
    }
    auto path = string_field(m, "path", true);
    if (!path.ok()) return done(Response::from_error(path.error()));
    auto type = string_field(m, "type", true);
    if (!type.ok()) return done(Response::from_error(type.error()));
    auto name = string_field(m, "name", false);
    if (!name.ok()) return done(Response::from_error(name.error()));
    std::string kernel_name, kernel_id;
    if (auto k = m.find("kernel"); k != m.end() && !k->is_null()) {
      if (!k->is_object()) return done(Response::error(400, "'kernel' must be an object"));
      auto kn = string_field(*k, "name", false);
      auto ki = string_field(*k, "id", false);
      if (!kn.ok()) return done(Response::from_error(kn.error()));
      if (!ki.ok()) return done(Response::from_error(ki.error()));
      kernel_name = kn.value();
      kernel_id = ki.value();
    }

    auto respond = [done](json model) {
      auto res = Response::json(201, model);
      res.set_header("Location", "/api/sessions/" + model["id"].get<std::string>());
      done(std::move(res));
    };
    if (auto existing = ctx->sessions->find_by_path(req.user.username, path.value())) {
      if (auto model = session_model(*ctx, *existing)) return respond(std::move(*model));
    }
    SessionRecord rec;
    rec.owner = req.user.username;
    rec.path = path.value();
    rec.name = name.value();
    rec.type = type.value();
    auto create = [ctx, respond, done](SessionRecord rec) {
      auto created = ctx->sessions->create(std::move(rec));
      auto model = session_model(*ctx, created);
      if (!model) return done(Response::error(500, "The session's kernel died while starting"));
      respond(std::move(*model));
    };
    if (!kernel_id.empty()) {
      auto k = ctx->kernels->get(kernel_id);
      if (!k.ok() || !may_access(req.user, k->owner))
        return done(Response::error(404, "Kernel does not exist: " + kernel_id));
      rec.kernel_id = k->id;
      return create(std::move(rec));
    }
    start_kernel(*ctx, req.user, kernel_name,
                 [ctx, rec, create, respond, done](KernelOrResponse started) mutable {
                   if (auto* res = std::get_if<Response>(&started)) return done(std::move(*res));
                   rec.kernel_id = std::get<kernel::KernelModel>(started).id;
                   // Another request for the same path won meanwhile: its session stands.
                   if (auto existing = ctx->sessions->find_by_path(rec.owner, rec.path)) {
                     if (auto model = session_model(*ctx, *existing)) {
                       ctx->runtimes->release(rec.kernel_id, [](const Status&) {});
                       return respond(std::move(*model));
                     }
                   }
                   create(std::move(rec));
                 });
  });

  r.add("GET", id + "/?", [ctx](Request& req, Responder done) {
    auto s = visible_session(*ctx, req.user, req.params[0]);
    if (!s.ok()) return done(Response::from_error(s.error()));
    auto model = session_model(*ctx, s.value());
    if (!model)
      return done(Response::error(404, "Session not found: session_id='" + req.params[0] + "'"));
    done(Response::json(200, *model));
  });

  r.add("PATCH", id + "/?", [ctx](Request& req, Responder done) {
    if (req.body.empty()) return done(Response::error(400, "No JSON data provided"));
    auto body = parse_json_body(req.body);
    if (!body.ok()) return done(Response::from_error(body.error()));
    json m = std::move(body.value());
    auto s = visible_session(*ctx, req.user, req.params[0]);
    if (!s.ok()) return done(Response::from_error(s.error()));
    SessionRecord before = s.value(), after = s.value();
    if (auto nb = m.find("notebook"); nb != m.end() && nb->is_object() && nb->contains("path")) {
      m["path"] = (*nb)["path"];
      m["type"] = "notebook";
    }
    for (const char* key : {"path", "name", "type"}) {
      if (!m.contains(key)) continue;
      auto v = string_field(m, key, false);
      if (!v.ok()) return done(Response::from_error(v.error()));
      std::string& dst = std::string(key) == "path"   ? after.path
                         : std::string(key) == "name" ? after.name
                                                      : after.type;
      dst = v.value();
    }
    auto finish = [ctx, done, before, id = req.params[0]](const SessionRecord& after) {
      if (!ctx->sessions->update(after))
        return done(Response::error(404, "Session not found: session_id='" + id + "'"));
      auto model = session_model(*ctx, after);
      if (!model) return done(Response::error(404, "Session not found: session_id='" + id + "'"));
      if (after.kernel_id != before.kernel_id) {
        // The replaced kernel goes away before the reply, as in Jupyter Server.
        json reply = std::move(*model);
        ctx->runtimes->release(before.kernel_id,
                               [done, reply](const Status&) { done(Response::json(200, reply)); });
        return;
      }
      done(Response::json(200, *model));
    };
    if (auto k = m.find("kernel"); k != m.end() && !k->is_null()) {
      if (!k->is_object()) return done(Response::error(400, "'kernel' must be an object"));
      auto ki = string_field(*k, "id", false);
      auto kn = string_field(*k, "name", false);
      if (!ki.ok()) return done(Response::from_error(ki.error()));
      if (!kn.ok()) return done(Response::from_error(kn.error()));
      if (!ki.value().empty()) {
        auto kernel = ctx->kernels->get(ki.value());
        if (!kernel.ok() || !may_access(req.user, kernel->owner))
          return done(Response::error(400, "No such kernel: " + ki.value()));
        after.kernel_id = kernel->id;
      } else if (k->contains("name")) {
        return start_kernel(*ctx, req.user, kn.value(),
                            [after, finish, done](KernelOrResponse started) mutable {
                              if (auto* res = std::get_if<Response>(&started))
                                return done(std::move(*res));
                              after.kernel_id = std::get<kernel::KernelModel>(started).id;
                              finish(after);
                            });
      }
    }
    finish(after);
  });

  r.add("DELETE", id + "/?", [ctx](Request& req, Responder done) {
    auto s = visible_session(*ctx, req.user, req.params[0]);
    if (!s.ok()) return done(Response::from_error(s.error()));
    ctx->sessions->remove(s->id);
    if (!ctx->kernels->get(s->kernel_id).ok()) return done(Response::empty(204));
    ctx->runtimes->release(s->kernel_id, [done](const Status&) { done(Response::empty(204)); });
  });
}

}  // namespace skylab::api
