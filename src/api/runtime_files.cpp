// /api/skylab/runtimes/{id}/files: a runtime's /content over HTTP, for the
// files panel and skylab.files (upload/download). Sandboxed runtimes keep
// /content on the host at <data-dir>/runtimes/<id>/content; the bytes are
// reached through drive::FileStore (root <data-dir>/runtimes, "user" = the
// runtime id), so every path is walked with openat(O_NOFOLLOW) one
// component at a time: a symlink planted by the kernel is never followed.
// /content/drive (the user's Drive, mounted there inside the sandbox) is not
// served here: the Drive has its own API, with revisions and sharing.
#include <sys/stat.h>

#include <array>
#include <charconv>
#include <exception>

#include <nlohmann/json.hpp>

#include "api/api.hpp"
#include "api/work_queue.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/util.hpp"
#include "drive/codec.hpp"
#include "drive/file_store.hpp"
#include "drive/path.hpp"

namespace skylab::api {

using drive::DrivePath;
using http::Request;
using http::Responder;
using http::Response;
using nlohmann::json;

namespace {

//! Largest request body: one chunk of a chunked upload, or a whole small file.
constexpr std::size_t kChunkLimit = 32u << 20;
constexpr const char* kContent = "content";

//! The FileStore over <data-dir>/runtimes and per-runtime locks. Thread-safe.
class RuntimeFiles {
 public:
  explicit RuntimeFiles(std::string runtimes_dir) : dir_(std::move(runtimes_dir)) {}

  //! The store, opened on first use (the directory appears with the first
  //! sandboxed runtime).
  Result<drive::FileStore*> store() {
    MutexLock lock(open_mu_);
    if (!store_) {
      auto s = drive::open_local_file_store(dir_);
      if (!s.ok()) return s.error();
      store_ = std::move(s.value());
    }
    return store_.get();
  }

  //! True when runtime `id` has a /content on this host (sandboxed runtimes).
  bool has_content(const std::string& id) const {
    struct stat st;
    std::string p = dir_ + "/" + id + "/" + kContent;
    return ::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  }

  //! FileStore callers serialize mutations of one "user" (here: runtime).
  Mutex& lock_for(const std::string& id) {
    return locks_[std::hash<std::string>{}(id) % locks_.size()];
  }

 private:
  std::string dir_;
  Mutex open_mu_;
  std::unique_ptr<drive::FileStore> store_ GUARDED_BY(open_mu_);
  std::array<Mutex, 16> locks_;
};

//! A request's parts, moved off the Asio thread.
struct Call {
  std::string id;  //!< runtime (kernel) id
  std::map<std::string, std::string> query;
  std::string body;
  DrivePath path;  //!< "content/<path below /content>", validated
};

using Work = std::function<Response(Call&)>;

Response error(const Error& e) {
  // FileStore messages name "'content/x'"; users know it as /content/x.
  std::string m = e.message;
  for (std::string from : {"'content/", "'content'"}) {
    std::string to = "'/" + from.substr(1);
    for (auto pos = m.find(from); pos != std::string::npos; pos = m.find(from, pos + to.size()))
      m.replace(pos, from.size(), to);
  }
  return Response::error(http::status_for(e), m);
}

//! Validates the runtime and the path, then runs `work` on the work queue.
void dispatch(const std::shared_ptr<const Context>& ctx, const std::shared_ptr<RuntimeFiles>& rf,
              Request& req, Responder done, Work work) {
  auto call = std::make_shared<Call>();
  call->id = req.params[0];
  auto k = ctx->kernels->get(call->id);
  if (!k.ok() || !may_access(req.user, k->owner))
    return done(Response::error(404, "No such runtime: " + call->id));
  auto p = DrivePath::parse(req.params.size() > 1 ? req.params[1] : "");
  if (!p.ok()) return done(Response::from_error(p.error()));
  if (!p->is_root() && p->parts()[0] == "drive")
    return done(
        Response::error(404, "/content/drive is your Drive: use the Drive (/api/contents) for it"));
  for (auto& part : p->parts())
    if (part.rfind(".~skylab-", 0) == 0)
      return done(Response::error(404, "No such file or directory"));
  auto full = DrivePath::parse(std::string(kContent) + (p->is_root() ? "" : "/" + p->str()));
  if (!full.ok()) return done(Response::from_error(full.error()));
  call->path = std::move(full.value());
  call->query = req.query;
  call->body = std::move(req.body);
  respond_on_queue(
      ctx->work.get(), done,
      [rf, call, work = std::move(work)]() {
        if (!rf->has_content(call->id))
          return Response::error(
              409, "This runtime has no /content on the server (it runs without a sandbox)");
        return work(*call);
      },
      "runtime files handler");
}

json entry_json(const drive::NodeInfo& n, const std::string& rel_path) {
  return {{"name", n.name},
          {"path", rel_path},
          {"type", n.directory ? "directory" : "file"},
          {"last_modified", util::iso_time(n.modified)},
          {"size", n.directory ? json(nullptr) : json(n.size)}};
}

//! Path below /content ("" for /content itself).
std::string rel(const Call& c) {
  std::string s = c.path.str();
  return s.size() > 7 ? s.substr(8) : "";
}

Response get(drive::FileStore& fs, Call& c) {
  auto info = fs.stat(c.id, c.path);
  if (!info.ok()) return error(info.error());
  if (info->directory) {
    auto entries = fs.list(c.id, c.path);
    if (!entries.ok()) return error(entries.error());
    std::string base = rel(c);
    json items = json::array();
    for (auto& e : entries.value()) {
      if (base.empty() && e.name == "drive") continue;  // the Drive's mount point
      items.push_back(entry_json(e, base.empty() ? e.name : base + "/" + e.name));
    }
    json m = {{"path", base},
              {"type", "directory"},
              {"last_modified", util::iso_time(info->modified)},
              {"content", std::move(items)}};
    return Response::json(200, m);
  }
  auto f = fs.open_read(c.id, c.path);
  if (!f.ok()) return error(f.error());
  std::string name(c.path.name());
  Response res;
  res.file = std::make_shared<http::FileBody>(f->release());
  res.set_header("Content-Type", "application/octet-stream");
  res.set_header("Content-Disposition", content_disposition(name));
  res.set_header("Content-Security-Policy", "default-src 'none'; sandbox");
  res.set_header("Cache-Control", "private, no-store");
  return res;
}

std::optional<int> parse_chunk(const std::string& s) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || (v < 1 && v != -1)) return std::nullopt;
  return v;
}

Response put(RuntimeFiles& rf, drive::FileStore& fs, Call& c) {
  if (rel(c).empty()) return Response::error(400, "Cannot write to /content itself; name a file");
  int chunk = -1;  // a whole file is a one-chunk upload: staged, then renamed into place
  if (auto it = c.query.find("chunk"); it != c.query.end()) {
    auto v = parse_chunk(it->second);
    if (!v) return Response::error(400, "'chunk' must be 1, 2, ... or -1 for the last");
    chunk = *v;
  }
  Result<drive::ChunkResult> r = Error::internal("unreachable");
  bool existed = false;
  {
    MutexLock lock(rf.lock_for(c.id));
    auto ex = fs.exists(c.id, c.path);
    existed = ex.ok() && ex.value();
    r = fs.write_chunk(c.id, c.path, chunk, c.body);
  }
  std::string().swap(c.body);
  if (!r.ok()) return error(r.error());
  json m = {{"path", rel(c)},
            {"name", std::string(c.path.name())},
            {"type", "file"},
            {"bytes_so_far", r->bytes_so_far},
            {"committed", r->committed}};
  if (r->committed) {
    if (auto info = fs.stat(c.id, c.path); info.ok()) {
      m["size"] = info->size;
      m["last_modified"] = util::iso_time(info->modified);
    }
  }
  return Response::json(r->committed && !existed ? 201 : 200, m);
}

Response post(RuntimeFiles& rf, drive::FileStore& fs, Call& c) {
  auto body = parse_json_body(c.body);
  if (!body.ok()) return Response::from_error(body.error());
  auto t = body->find("type");
  if (t == body->end() || *t != "directory")
    return Response::error(400, "POST creates folders: send {\"type\": \"directory\"}");
  if (rel(c).empty()) return Response::error(409, "/content exists");
  MutexLock lock(rf.lock_for(c.id));
  auto st = fs.make_directory(c.id, c.path);
  if (!st.ok()) return error(st.error());
  return Response::json(
      201, {{"path", rel(c)}, {"name", std::string(c.path.name())}, {"type", "directory"}});
}

Response patch(RuntimeFiles& rf, drive::FileStore& fs, Call& c) {
  auto body = parse_json_body(c.body);
  if (!body.ok()) return Response::from_error(body.error());
  auto to_it = body->find("path");
  if (to_it == body->end() || !to_it->is_string())
    return Response::error(400, "'path' (the new path) is required");
  auto to = DrivePath::parse(to_it->get<std::string>());
  if (!to.ok()) return Response::from_error(to.error());
  if (to->is_root() || to->parts()[0] == "drive" || rel(c).empty())
    return Response::error(400,
                           "Cannot rename /content, /content/drive or move something onto them");
  for (auto& part : to->parts())
    if (part.rfind(".~skylab-", 0) == 0) return Response::error(400, "Reserved name");
  auto full = DrivePath::parse(std::string(kContent) + "/" + to->str());
  if (!full.ok()) return Response::from_error(full.error());
  MutexLock lock(rf.lock_for(c.id));
  auto st = fs.rename(c.id, c.path, full.value());
  if (!st.ok()) return error(st.error());
  return Response::json(200, {{"path", to->str()}, {"name", std::string(to->name())}});
}

Response remove_path(RuntimeFiles& rf, drive::FileStore& fs, Call& c) {
  if (rel(c).empty()) return Response::error(400, "Cannot delete /content itself");
  MutexLock lock(rf.lock_for(c.id));
  auto st = fs.remove(c.id, c.path);
  if (!st.ok()) return error(st.error());
  return Response::empty(204);
}

}  // namespace

void add_runtime_file_routes(http::Router& r, std::shared_ptr<const Context> ctx) {
  if (ctx->runtimes_dir.empty()) return;
  auto rf = std::make_shared<RuntimeFiles>(ctx->runtimes_dir);
  // [\s\S]: any byte, so that odd paths reach DrivePath::parse (400).
  const std::string files = "/api/skylab/runtimes/([0-9a-fA-F-]{1,64})/files(/[\\s\\S]*)?";
  http::RouteOptions big;
  big.body_limit = kChunkLimit;
  auto with_store = [rf](auto fn) {
    return [rf, fn](Call& c) -> Response {
      auto s = rf->store();
      if (!s.ok()) return Response::from_error(s.error());
      return fn(*rf, *s.value(), c);
    };
  };

  r.add("GET", files, [ctx, rf, with_store](Request& req, Responder done) {
    dispatch(ctx, rf, req, done,
             with_store([](RuntimeFiles&, drive::FileStore& fs, Call& c) { return get(fs, c); }));
  });
  r.add(
      "PUT", files,
      [ctx, rf, with_store](Request& req, Responder done) {
        dispatch(ctx, rf, req, done, with_store(put));
      },
      big);
  r.add("POST", files, [ctx, rf, with_store](Request& req, Responder done) {
    dispatch(ctx, rf, req, done, with_store(post));
  });
  r.add("PATCH", files, [ctx, rf, with_store](Request& req, Responder done) {
    dispatch(ctx, rf, req, done, with_store(patch));
  });
  r.add("DELETE", files, [ctx, rf, with_store](Request& req, Responder done) {
    dispatch(ctx, rf, req, done, with_store(remove_path));
  });
}

}  // namespace skylab::api
