// Sharing: /api/skylab/shares (what I share), /api/skylab/shared (what is
// shared with me, and access to it). Access to a shared item is delegated to
// the Contents API routes, run as the owner on the shared path only, after
// the grant has been checked; anything not granted answers 404.
#include <nlohmann/json.hpp>

#include "api/api.hpp"
#include "api/collab.hpp"
#include "api/work_queue.hpp"
#include "auth/account_store.hpp"
#include "auth/share_store.hpp"
#include "common/json_limits.hpp"
#include "common/log.hpp"
#include "common/util.hpp"
#include "drive/drive.hpp"

namespace skylab::api {

using http::Request;
using http::Responder;
using http::Response;
using nlohmann::json;

namespace {

const std::string kShareId = "([0-9a-f]{24,48})";

std::string iso(std::int64_t t) {
  return util::iso_time(std::chrono::system_clock::time_point(std::chrono::seconds(t)));
}

std::string base_name(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

json share_json(const auth::Share& s) {
  return {{"id", s.id},
          {"owner", s.owner},
          {"path", s.path},
          {"name", base_name(s.path)},
          {"user", s.grantee ? json(*s.grantee) : json(nullptr)},
          {"role", std::string(auth::share_role_name(s.role))},
          {"link", s.is_link() ? json("/api/skylab/shared/" + s.id + "/contents") : json(nullptr)},
          {"created", iso(s.created)}};
}

//! The identity the Drive sees when a share is used: the owner's, with no
//! admin rights and no credential.
auth::Identity owner_identity(const auth::Share& s, const auth::Identity& actor = {}) {
  auth::Identity id;
  id.username = s.owner;
  id.acting_user = actor.username;
  return id;
}

//! Whether the share's item still exists, following it when it moved: the
//! item at the share's path must carry the shared id (see
//! drive::Drive::item_id); else the owner's Drive is searched for it (it was
//! moved inside a runtime, behind the server's back) and the share's path
//! follows; an item that is gone ends the share. Blocking (work queue).
bool follow_item(const Context& ctx, auth::Share& s) {
  if (s.item.empty()) return false;
  auto owner = owner_identity(s);
  auto id = ctx.drive->item_id(owner, s.path, false);
  if (id.ok() && id.value() == s.item) return true;
  auto now = ctx.drive->find_item(owner, s.item);
  if (now.ok()) {
    if (auto st = ctx.shares->moved(s.owner, s.path, now.value()); !st.ok()) return false;
    s.path = now.value();
    return true;
  }
  if (now.error().code == Error::Code::kNotFound) {
    auto st = ctx.shares->revoke(s.owner, s.id);  // deleted or replaced: the share is over
    (void)st;
  }
  return false;
}

//! The share `id` when `user` may use it (and its owner is enabled), with the
//! access they have; NotFound otherwise, exactly as for a missing share.
Result<std::pair<auth::Share, auth::ShareRole>> usable_share(const Context& ctx,
                                                             const auth::Identity& user,
                                                             const std::string& id) {
  Error missing = Error::not_found("No such share: " + id);
  auto s = ctx.shares->find(id);
  if (!s.ok()) return missing;
  auto access = auth::share_access(s.value(), user.username);
  if (!access) return missing;
  if (ctx.accounts) {
    auto owner = ctx.accounts->find_user(s->owner);
    if (owner.ok() && owner->disabled) return missing;
  }
  return std::make_pair(std::move(s.value()), *access);
}

//! A path below the shared item: "" or "/a/b" without ".", ".." or empty parts.
bool safe_subpath(const std::string& sub) {
  if (sub.empty()) return true;
  if (sub.front() != '/') return false;
  std::size_t i = 1;
  while (i <= sub.size()) {
    auto slash = sub.find('/', i);
    auto part = sub.substr(i, slash == std::string::npos ? std::string::npos : slash - i);
    if (slash == std::string::npos && part.empty()) break;  // a trailing slash
    if (part.empty() || part == "." || part == "..") return false;
    if (slash == std::string::npos) break;
    i = slash + 1;
  }
  return true;
}

//! For viewers: the models say read-only (top level and directory entries).
void mark_read_only(Response& res) {
  if (res.status != 200 && res.status != 201) return;
  auto j = json_limits::parse_or_discarded(res.body);
  if (j.is_discarded() || !j.is_object() || !j.contains("writable")) return;
  j["writable"] = false;
  if (auto c = j.find("content"); c != j.end() && c->is_array())
    for (auto& e : *c)
      if (e.is_object() && e.contains("writable")) e["writable"] = false;
  std::string out = j.dump(-1, ' ', false, json::error_handler_t::replace);
  // As the Contents API writes it: '<', '>' and '&' only ever occur inside
  // JSON strings, where their \u escapes mean the same.
  res.body.clear();
  for (char c : out) {
    if (c == '<')
      res.body += "\\u003c";
    else if (c == '>')
      res.body += "\\u003e";
    else if (c == '&')
      res.body += "\\u0026";
    else
      res.body += c;
  }
}

std::optional<Response> unknown_fields(const json& body,
                                       std::initializer_list<const char*> allowed) {
  for (auto it = body.begin(); it != body.end(); ++it) {
    bool known = false;
    for (auto* a : allowed) known = known || it.key() == a;
    if (!known) return Response::error(400, "Unknown field '" + it.key() + "'");
  }
  return std::nullopt;
}

//! Runs `work` on the context's work queue (the Drive touches the disk).
void on_work(const Context& ctx, Responder done, std::function<Response()> work) {
  respond_on_queue(ctx.work.get(), std::move(done), std::move(work), "share handler");
}

json entry_json(const drive::Entry& e) {
  return {{"name", e.name},
          {"path", e.path},
          {"type", std::string(drive::entry_type_name(e.type))},
          {"writable", e.writable},
          {"created", util::iso_time(e.created)},
          {"last_modified", util::iso_time(e.modified)},
          {"content", nullptr},
          {"format", nullptr},
          {"mimetype", nullptr},
          {"size", e.size ? json(*e.size) : json(nullptr)}};
}

}  // namespace

void add_share_routes(http::Router& r, std::shared_ptr<const Context> ctx) {
  if (!ctx->drive || !ctx->shares) return;
  const http::Router* router = &r;  // outlives its handlers

  // ---- what I share
  r.add("POST", "/api/skylab/shares/?", [ctx](Request& req, Responder done) {
    auto body = parse_json_body(req.body);
    if (!body.ok()) return done(Response::from_error(body.error()));
    if (auto bad = unknown_fields(body.value(), {"path", "user", "link", "role"}))
      return done(*bad);
    auto p = body->find("path");
    if (p == body->end() || !p->is_string() || p->get<std::string>().empty())
      return done(
          Response::error(400, "'path' (the notebook, file or folder to share) is required"));
    std::optional<std::string> grantee;
    bool link = false;
    if (auto l = body->find("link"); l != body->end() && !l->is_null()) {
      if (!l->is_boolean()) return done(Response::error(400, "'link' must be true or false"));
      link = l->get<bool>();
    }
    if (auto u = body->find("user"); u != body->end() && !u->is_null()) {
      if (!u->is_string()) return done(Response::error(400, "'user' must be a user name"));
      grantee = u->get<std::string>();
    }
    if (link == grantee.has_value())
      return done(Response::error(400, "Share with a 'user', or by 'link': true (one of them)"));
    auto role = auth::ShareRole::kViewer;
    if (auto ro = body->find("role"); ro != body->end() && !ro->is_null()) {
      auto parsed = ro->is_string() ? auth::parse_share_role(ro->get<std::string>()) : std::nullopt;
      if (!parsed) return done(Response::error(400, "'role' must be 'viewer' or 'editor'"));
      role = *parsed;
    }
    if (link && role != auth::ShareRole::kViewer)
      return done(
          Response::error(400, "Links give view access only; share with a user to let them edit"));
    if (grantee) {
      if (!auth::valid_username(*grantee) || !ctx->accounts ||
          !ctx->accounts->find_user(*grantee).ok())
        return done(Response::error(400, "No such user: " + grantee->substr(0, 64)));
      if (*grantee == req.user.username)
        return done(Response::error(400, "You cannot share with yourself"));
    }
    auto me = req.user;
    auto path = p->get<std::string>();
    on_work(*ctx, done, [ctx, me, path, grantee, role]() -> Response {
      auto e = ctx->drive->get(me, path);
      if (!e.ok()) return Response::from_error(e.error());
      if (e->path.empty())
        return Response::error(400, "Share a notebook, file or folder, not the whole Drive");
      auto item = ctx->drive->item_id(me, e->path, true);
      if (!item.ok()) return Response::from_error(item.error());
      auto s = ctx->shares->grant(me.username, e->path, item.value(), grantee, role);
      if (!s.ok()) return Response::from_error(s.error());
      recheck_collab_access(s->id);  // a grant given again may change a role
      log::info("user '" + me.username + "' shared an item" +
                (grantee ? " with '" + *grantee + "' as " + std::string(auth::share_role_name(role))
                         : " by link"));
      audit(*ctx, me.username, "share.create", grantee ? *grantee : std::string("(link)"),
            e->path + (grantee ? " as " + std::string(auth::share_role_name(role))
                               : std::string(" by link")));
      return Response::json(201, share_json(s.value()));
    });
  });

  r.add("GET", "/api/skylab/shares/?", [ctx](Request& req, Responder done) {
    std::optional<std::string> path = req.query_param("path");
    auto me = req.user.username;
    on_work(*ctx, done, [ctx, me, path]() -> Response {
      auto shares =
          path ? ctx->shares->by_owner(me, std::string_view(*path)) : ctx->shares->by_owner(me);
      if (!shares.ok()) return Response::from_error(shares.error());
      json out = json::array();
      for (auto& s : shares.value()) {
        std::string was = s.path;
        if (!follow_item(*ctx, s)) continue;  // gone: the share ended
        if (path && s.path != was) continue;  // moved away from the path asked about
        out.push_back(share_json(s));
      }
      return Response::json(200, out);
    });
  });

  r.add("DELETE", "/api/skylab/shares/" + kShareId, [ctx](Request& req, Responder done) {
    // A write: waits for the share database's lock off the I/O thread.
    on_work(*ctx, done, [ctx, user = req.user.username, id = req.params[0]]() -> Response {
      auto st = ctx->shares->revoke(user, id);
      if (st.ok()) audit(*ctx, user, "share.delete", "share " + id);
      if (st.ok()) recheck_collab_access(id);  // its open co-editing sockets close now
      return st.ok() ? Response::empty(204) : Response::from_error(st.error());
    });
  });

  // ---- shared with me
  r.add("GET", "/api/skylab/shared/?", [ctx](Request& req, Responder done) {
    auto me = req.user.username;
    on_work(*ctx, done, [ctx, me]() -> Response {
      auto shares = ctx->shares->with_user(me);
      if (!shares.ok()) return Response::from_error(shares.error());
      json out = json::array();
      for (auto& s : shares.value()) {
        if (ctx->accounts)
          if (auto o = ctx->accounts->find_user(s.owner); o.ok() && o->disabled) continue;
        if (!follow_item(*ctx, s)) continue;  // deleted or replaced: the share is over
        out.push_back(share_json(s));
      }
      return Response::json(200, out);
    });
  });

  // Reading (viewers, editors, link holders) and saving (editors) go to the
  // Contents API and /files, as the owner, on the shared path only.
  auto delegate = [ctx, router](const std::string& method, const std::string& api_prefix,
                                bool needs_editor) {
    return [ctx, router, method, api_prefix, needs_editor](Request& req, Responder done) {
      auto found = usable_share(*ctx, req.user, req.params[0]);
      if (!found.ok()) return done(Response::from_error(found.error()));
      auto& [share, role] = found.value();
      if (needs_editor && role != auth::ShareRole::kEditor)
        return done(Response::error(403, "Read-only: this was shared with you as a viewer"));
      std::string sub = req.params.size() > 1 ? req.params[1] : std::string();
      if (!safe_subpath(sub)) return done(Response::error(404, "No such file in the share"));
      // The item check reads the disk: on the work queue, which then hands
      // the request to the route (whose handlers post their own work).
      auto held = std::make_shared<Request>(std::move(req));
      post_or_busy(
          ctx->work.get(),
          [ctx, router, method, api_prefix, held, done, share = share, role = role, sub]() mutable {
            Responder respond = done;
            try {
              if (!follow_item(*ctx, share))
                return done(Response::error(404, "No such share: " + share.id));
              std::string target = api_prefix + "/" + share.path + sub;
              std::vector<std::string> params;
              bool exists = false;
              const http::Route* route = router->match(method, target, params, exists);
              if (!route || !route->handler)
                return done(Response::error(404, "No such file in the share"));
              held->params = std::move(params);
              held->user = owner_identity(share, held->user);
              if (role == auth::ShareRole::kViewer && api_prefix == "/api/contents")
                respond = [done](Response res) {
                  mark_read_only(res);
                  done(std::move(res));
                };
              route->handler(*held, std::move(respond));
            } catch (const std::exception& e) {
              log::error(std::string("share handler failed: ") + e.what());
              done(Response::error(500, "Internal server error"));
            }
          },
          done);
    };
  };
  http::RouteOptions big;
  big.body_limit = 96u << 20;  // as the Contents API's PUT
  const std::string shared = "/api/skylab/shared/" + kShareId;
  r.add("GET", shared + "/contents(/[\\s\\S]*)?", delegate("GET", "/api/contents", false));
  r.add("PUT", shared + "/contents(/[\\s\\S]*)?", delegate("PUT", "/api/contents", true), big);
  r.add("GET", shared + "/files(/[\\s\\S]*)?", delegate("GET", "/files", false));

  // "Save a copy": a shared file or notebook into my own Drive.
  r.add("POST", shared + "/copy", [ctx](Request& req, Responder done) {
    auto found = usable_share(*ctx, req.user, req.params[0]);
    if (!found.ok()) return done(Response::from_error(found.error()));
    auto body = parse_json_body(req.body);
    if (!body.ok()) return done(Response::from_error(body.error()));
    if (auto bad = unknown_fields(body.value(), {"path", "to"})) return done(*bad);
    std::string sub, to;
    for (auto [key, dst] : {std::pair<const char*, std::string*>{"path", &sub}, {"to", &to}}) {
      auto f = body->find(key);
      if (f == body->end() || f->is_null()) continue;
      if (!f->is_string())
        return done(Response::error(400, std::string("'") + key + "' must be a string"));
      *dst = f->get<std::string>();
    }
    if (!sub.empty() && sub.front() != '/') sub = "/" + sub;
    if (!safe_subpath(sub)) return done(Response::error(404, "No such file in the share"));
    auto share = found->first;
    auto me = req.user;
    on_work(*ctx, done, [ctx, share, me, sub, to]() mutable -> Response {
      if (!follow_item(*ctx, share)) return Response::error(404, "No such share: " + share.id);
      auto owner = owner_identity(share);
      std::string from = share.path + sub;
      auto e = ctx->drive->get(owner, from);
      if (!e.ok()) return Response::error(404, "No such file in the share");
      if (e->type == drive::EntryType::kDirectory)
        return Response::error(400, "Folders cannot be copied");
      std::string dest = to;
      if (dest.empty()) {
        for (int n = 1; n <= 100 && dest.empty(); ++n) {
          std::string candidate = "Copy of " + e->name;
          if (n > 1) {
            auto dot = e->name.rfind('.');
            std::string stem =
                dot == std::string::npos || dot == 0 ? e->name : e->name.substr(0, dot);
            std::string ext = dot == std::string::npos || dot == 0 ? "" : e->name.substr(dot);
            candidate = "Copy of " + stem + " (" + std::to_string(n) + ")" + ext;
          }
          if (!ctx->drive->get(me, candidate).ok()) dest = candidate;
        }
        if (dest.empty()) return Response::error(409, "Too many copies; name the copy with 'to'");
      } else if (ctx->drive->get(me, dest).ok()) {
        return Response::error(409, "File already exists: " + dest);
      }
      Result<drive::Drive::Saved> saved = Error::internal("not saved");
      if (e->type == drive::EntryType::kNotebook) {
        std::string message;
        auto nb = ctx->drive->read_notebook(owner, from, &message);
        if (!nb.ok()) return Response::from_error(nb.error());
        saved = ctx->drive->save_notebook(me, dest, std::move(nb.value()));
      } else {
        auto bytes = ctx->drive->read_file(owner, from);
        if (!bytes.ok()) return Response::from_error(bytes.error());
        saved = ctx->drive->save_file(me, dest, bytes.value());
      }
      if (!saved.ok()) return Response::from_error(saved.error());
      auto res = Response::json(201, entry_json(saved->entry));
      res.set_header("Location", "/api/contents/" + saved->entry.path);
      return res;
    });
  });
}

}  // namespace skylab::api

#include "api/collab.hpp"

namespace skylab::api {

Result<SharedTarget> resolve_shared(const Context& ctx, const auth::Identity& user,
                                    const std::string& id, const std::string& sub) {
  if (!ctx.shares || !ctx.drive) return Error::not_found("No such share: " + id);
  auto found = usable_share(ctx, user, id);
  if (!found.ok()) return found.error();
  auto& [share, role] = found.value();
  if (!safe_subpath(sub)) return Error::not_found("No such file in the share");
  if (!follow_item(ctx, share)) return Error::not_found("No such share: " + id);
  return SharedTarget{share.owner, share.path + sub, role == auth::ShareRole::kEditor};
}

}  // namespace skylab::api
