// The Drive over HTTP: Jupyter's Contents API (/api/contents), its
// checkpoints, raw downloads (/files/) and Skylab's revisions endpoint.
// Handlers parse the request on the Asio thread and run the Drive call on
// the context's WorkQueue, so disk I/O never blocks other connections.
#include <malloc.h>

#include <charconv>
#include <exception>

#include <nlohmann/json.hpp>

#include "api/api.hpp"
#include "api/sessions.hpp"
#include "api/work_queue.hpp"
#include "auth/secret_store.hpp"
#include "auth/share_store.hpp"
#include "common/json_io.hpp"
#include "common/log.hpp"
#include "common/util.hpp"
#include "drive/codec.hpp"
#include "drive/drive.hpp"
#include "drive/notebook.hpp"
#include "live/live.hpp"

namespace skylab::api {

using drive::Entry;
using drive::EntryType;
using http::Request;
using http::Responder;
using http::Response;
using nlohmann::json;

namespace {

//! Largest contents PUT body: a 1 MiB chunk is ~1.4 MB of base64; a whole
//! notebook or small file is sent in one body.
constexpr std::size_t kContentsBodyLimit = 96u << 20;

//! Requests or responses at least this large trim the heap afterwards.
constexpr std::size_t kTrimAfterBytes = 4u << 20;

//! What a handler needs from its request, moved off the Asio thread.
struct Call {
  auth::Identity user;
  std::vector<std::string> params;
  std::map<std::string, std::string> query;
  std::string body;

  std::optional<std::string> q(const std::string& name) const {
    auto it = query.find(name);
    if (it == query.end()) return std::nullopt;
    return it->second;
  }
};

using Work = std::function<Response(Call&)>;

void dispatch(const std::shared_ptr<const Context>& ctx, Request& req, Responder done, Work work) {
  auto call = std::make_shared<Call>();
  call->user = req.user;
  call->params = req.params;
  call->query = req.query;
  call->body = std::move(req.body);
  std::size_t request_bytes = call->body.size();
  post_or_busy(
      ctx->work.get(),
      [call, done, work = std::move(work), request_bytes]() {
        Response res = run_guarded([&] { return work(*call); }, "contents handler");
        bool large = request_bytes + res.body.size() >= kTrimAfterBytes;
        done(std::move(res));
        // Multi-MB notebooks leave freed memory in this worker's malloc arena;
        // give it back rather than let each worker hold its high-water mark.
        if (large) ::malloc_trim(0);
      },
      done);
}

Response error(int status, const std::string& message) {
  return Response::json(status, {{"message", message}, {"reason", nullptr}});
}
Response error(const Error& e) {
  return error(http::status_for(e), e.message);
}

//! Percent-encodes a Drive path for a URL, keeping '/'.
std::string url_escape_path(std::string_view p) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : p) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

json model(const Entry& e) {
  json m = json::object();
  m["name"] = e.name;
  m["path"] = e.path;
  m["type"] = std::string(drive::entry_type_name(e.type));
  m["writable"] = e.writable;
  m["created"] = util::iso_time(e.created);
  m["last_modified"] = util::iso_time(e.modified);
  m["mimetype"] = nullptr;
  if (e.type == EntryType::kFile)
    if (auto mt = drive::guess_mimetype(e.name)) m["mimetype"] = *mt;
  m["content"] = nullptr;
  m["format"] = nullptr;
  m["size"] = e.size ? json(*e.size) : json(nullptr);
  return m;
}

Response model_response(int status, const Entry& e, bool location) {
  auto res = Response::json(status, model(e));
  if (location) res.set_header("Location", "/api/contents/" + url_escape_path(e.path));
  res.set_header("Last-Modified", util::iso_time(e.modified));
  return res;
}

std::string path_param(const Call& c) {
  return c.params.empty() ? std::string() : c.params[0];
}

Result<json> body_object(Call& c) {
  if (c.body.empty()) return json::object();
  auto j = json_io::parse_json(c.body);
  std::string().swap(c.body);  // free the raw body before the work that follows
  if (!j.ok()) return Error::bad_request(j.error().message + " in the request body");
  if (!j->is_object()) return Error::bad_request("Request body must be a JSON object");
  return j;
}

//! Bytes of a "file" model's content in `format` (text or base64).
Result<std::string> decode_content(const json& content, const json* format,
                                   const std::string& path) {
  if (!format || !format->is_string() || (*format != "text" && *format != "base64"))
    return Error::bad_request("Must specify format of file contents as 'text' or 'base64'");
  if (!content.is_string()) return Error::bad_request("File content must be a string");
  const auto& s = content.get_ref<const std::string&>();
  if (*format == "text") return s;
  auto bytes = drive::base64_decode(s);
  if (!bytes)
    return Error::bad_request("Encoding error saving " + path + ": invalid base64 content");
  return std::move(*bytes);
}

std::optional<std::int64_t> parse_id(const std::string& s) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v <= 0) return std::nullopt;
  return v;
}

json checkpoint_json(const drive::RevisionInfo& r) {
  return {{"id", std::to_string(r.id)}, {"last_modified", util::iso_time(r.created)}};
}

json revision_json(const drive::RevisionInfo& r) {
  return {{"id", std::to_string(r.id)},
          {"timestamp", util::iso_time(r.created)},
          {"size", r.size},
          {"kind", std::string(drive::revision_kind_name(r.kind))},
          {"author", r.author},
          {"hash", r.sha256},
          {"hash_algorithm", "sha256"}};
}

bool is_notebook_path(std::string_view p) {
  return p.size() >= 6 && p.compare(p.size() - 6, 6, ".ipynb") == 0;
}

// ------------------------------------------------------------------ handlers

Response get_contents(drive::Drive& d, live::LiveNotebooks* live, Call& c) {
  std::string path = path_param(c);
  std::optional<EntryType> as;
  if (auto t = c.q("type")) {
    as = drive::parse_entry_type(*t);
    if (!as) return error(400, "Type '" + *t + "' is invalid");
  }
  auto format = c.q("format");
  if (format && *format != "text" && *format != "base64")
    return error(400, "Format '" + *format + "' is invalid");
  std::string content_str = c.q("content").value_or("1");
  if (content_str != "0" && content_str != "1")
    return error(400, "Content '" + content_str + "' is invalid");
  bool content = content_str == "1";
  std::string hash_str = c.q("hash").value_or("0");
  if (hash_str != "0" && hash_str != "1" && hash_str != "true" && hash_str != "false")
    return error(400, "Hash '" + hash_str + "' is invalid");
  bool want_hash = hash_str == "1" || hash_str == "true";

  auto e = d.get(c.user, path, as);
  if (!e.ok()) return error(e.error());
  json m = model(e.value());
  std::optional<std::string> hash;

  if (e->type == EntryType::kDirectory) {
    if (content) {
      auto entries = d.list(c.user, path);
      if (!entries.ok()) return error(entries.error());
      json items = json::array();
      for (auto& child : entries.value()) items.push_back(model(child));
      m["content"] = std::move(items);
      m["format"] = "json";
    }
  } else if (content || want_hash) {
    if (!content) {
      auto h = d.file_hash(c.user, path);
      if (!h.ok()) return error(h.error());
      hash = h.value();
    } else {
      auto bytes = d.read_file(c.user, path);
      if (!bytes.ok()) return error(bytes.error());
      if (want_hash) hash = drive::sha256_hex(bytes.value());
      if (e->type == EntryType::kNotebook) {
        std::string message;
        auto nb = drive::parse_stored_notebook(bytes.value(), &message);
        if (!nb.ok()) return error(nb.error());
        std::string().swap(bytes.value());
        m["content"] = std::move(nb.value());
        m["format"] = "json";
        if (!message.empty()) m["message"] = message;
        // An open notebook is served as the server holds it (outputs recorded since its last save).
        if (live)
          if (auto held = live->content(c.user.username, e->path)) {
            m["content"] = std::move(*held);
            // Skylab's extension: executions still running (recorded by the server,
            // msg_id -> cell id), so a client opening the notebook elsewhere shows
            // them as running and renders their further output.
            json running = json::object(), cells = json::array();
            for (auto& [msg_id, cell_id] : live->running(c.user.username, e->path)) {
              running[msg_id] = cell_id;
              cells.push_back(cell_id);
            }
            m["skylab"] = {{"running", std::move(running)}, {"running_cells", std::move(cells)}};
          }
      } else {
        bool text = util::valid_utf8(bytes.value());
        if (format == "text" && !text) return error(400, e->path + " is not UTF-8 encoded");
        if (format == "base64" || !text) {
          m["content"] = drive::base64_encode(bytes.value());
          m["format"] = "base64";
          if (m["mimetype"].is_null()) m["mimetype"] = "application/octet-stream";
        } else {
          m["content"] = std::move(bytes.value());
          m["format"] = "text";
          if (m["mimetype"].is_null()) m["mimetype"] = "text/plain";
        }
      }
    }
  }
  auto modified = e->modified;
  if (live && e->type == EntryType::kNotebook)
    if (auto t = live->last_edit(c.user.username, e.value()); t != modified) {
      modified = t;
      m["last_modified"] = util::iso_time(modified);
    }
  if (want_hash) {
    m["hash"] = hash ? json(*hash) : json(nullptr);
    m["hash_algorithm"] = hash ? json("sha256") : json(nullptr);
  }
  auto res = Response::json(200, m);
  res.set_header("Last-Modified", util::iso_time(modified));
  return res;
}

Response put_contents(drive::Drive& d, live::LiveNotebooks* live, Call& c) {
  std::string path = path_param(c);
  auto body = body_object(c);
  if (!body.ok()) return error(body.error());
  json& m = body.value();
  if (m.empty()) {
    // PUT without a model: a new untitled file in the directory `path` (as Jupyter).
    auto e = d.new_untitled(c.user, path, std::nullopt, "");
    if (!e.ok()) return error(e.error());
    return model_response(201, e.value(), true);
  }
  if (m.contains("copy_from") && !m["copy_from"].is_null())
    return error(400, "Cannot copy with PUT, only POST");
  auto type_it = m.find("type");
  if (type_it == m.end() || !type_it->is_string()) return error(400, "No file type provided");
  std::string type = type_it->get<std::string>();
  if (type != "directory" && (!m.contains("content") || m["content"].is_null())) {
    // As Jupyter: a new path gets an empty notebook or file; an existing one needs content.
    if (d.get(c.user, path).ok() || (m.contains("chunk") && !m["chunk"].is_null()))
      return error(400, "No file content provided");
    if (type == "notebook") {
      m["content"] = drive::new_notebook();
    } else {
      type = "file";
      m["content"] = "";
      m["format"] = "text";
    }
  }
  auto content_it = m.find("content");
  const json* format = m.contains("format") ? &m["format"] : nullptr;

  if (auto ch = m.find("chunk"); ch != m.end() && !ch->is_null()) {
    if (!ch->is_number_integer()) return error(400, "'chunk' must be an integer");
    if (type != "file")
      return error(400, "File type \"" + type + "\" is not supported for large file transfer");
    auto bytes = decode_content(*content_it, format, path);
    if (!bytes.ok()) return error(bytes.error());
    *content_it = nullptr;  // free the encoded copy
    auto r = d.save_chunk(c.user, path, ch->get<int>(), bytes.value());
    if (!r.ok()) return error(r.error());
    return model_response(r->created ? 201 : 200, r->entry, true);
  }

  Result<drive::Drive::Saved> saved = Error::internal("unreachable");
  if (type == "notebook") {
    if (!content_it->is_object()) return error(400, "Notebook content must be a JSON object");
    saved = live ? live->save_from_client(c.user, path, std::move(*content_it))
                 : d.save_notebook(c.user, path, std::move(*content_it));
  } else if (type == "file") {
    auto bytes = decode_content(*content_it, format, path);
    if (!bytes.ok()) return error(bytes.error());
    *content_it = nullptr;
    saved = d.save_file(c.user, path, bytes.value());
  } else if (type == "directory") {
    saved = d.save_directory(c.user, path);
  } else {
    return error(400, "Unhandled contents type: " + type);
  }
  if (!saved.ok()) return error(saved.error());
  return model_response(saved->created ? 201 : 200, saved->entry, true);
}

Response post_contents(drive::Drive& d, Call& c) {
  std::string path = path_param(c);
  auto existing = d.get(c.user, path);
  if (existing.ok() && existing->type != EntryType::kDirectory)
    return error(400, "Cannot POST to files, use PUT instead.");
  auto body = body_object(c);
  if (!body.ok()) return error(body.error());
  json& m = body.value();
  if (auto cf = m.find("copy_from"); cf != m.end() && !cf->is_null()) {
    if (!cf->is_string()) return error(400, "'copy_from' must be a string");
    auto e = d.copy(c.user, cf->get<std::string>(), path);
    if (!e.ok()) return error(e.error());
    return model_response(201, e.value(), true);
  }
  std::optional<EntryType> type;
  if (auto t = m.find("type"); t != m.end() && !t->is_null()) {
    if (!t->is_string()) return error(400, "'type' must be a string");
    if (!t->get<std::string>().empty()) {
      type = drive::parse_entry_type(t->get<std::string>());
      if (!type) return error(400, "Unexpected model type: '" + t->get<std::string>() + "'");
    }
  }
  std::string ext;
  if (auto x = m.find("ext"); x != m.end() && !x->is_null()) {
    if (!x->is_string()) return error(400, "'ext' must be a string");
    ext = x->get<std::string>();
  }
  auto e = d.new_untitled(c.user, path, type, ext);
  if (!e.ok()) return error(e.error());
  return model_response(201, e.value(), true);
}

Response patch_contents(const Context& ctx, Call& c) {
  std::string path = path_param(c);
  if (c.body.empty()) return error(400, "JSON body missing");
  auto body = body_object(c);
  if (!body.ok()) return error(body.error());
  json& m = body.value();
  std::string to = path;
  if (auto p = m.find("path"); p != m.end() && !p->is_null()) {
    if (!p->is_string()) return error(400, "'path' must be a string");
    to = p->get<std::string>();
  }
  // Open notebooks and their recordings follow (LiveNotebooks::rename).
  auto e = ctx.live ? ctx.live->rename(c.user, path, to) : ctx.drive->rename(c.user, path, to);
  if (!e.ok()) return error(e.error());
  // Open notebooks keep their kernels: sessions follow the rename.
  auto from = drive::DrivePath::parse(path);
  if (from.ok() && ctx.sessions) ctx.sessions->rename_path(c.user.username, from->str(), e->path);
  // Shares follow the item (they name it by id; the path is for listings).
  if (from.ok() && ctx.shares && from->str() != e->path)
    if (auto st = ctx.shares->moved(c.user.username, from->str(), e->path); !st.ok())
      log::warn("contents: shares did not follow a rename: " + st.error().message);
  // So do secrets' notebook access grants.
  if (from.ok() && ctx.secrets)
    if (auto st = ctx.secrets->moved(c.user.username, from->str(), e->path); !st.ok())
      log::warn("contents: secret access did not follow a rename: " + st.error().message);
  return model_response(200, e.value(), true);
}

Response delete_contents(const Context& ctx, Call& c) {
  std::string path = path_param(c);
  auto st = ctx.drive->remove(c.user, path);
  if (!st.ok()) return error(st.error());
  // A deleted item's shares end (a later item at the path is not shared:
  // its id differs, so they would not resolve anyway).
  if (auto p = drive::DrivePath::parse(path); p.ok() && ctx.shares)
    if (auto s = ctx.shares->removed(c.user.username, p->str()); !s.ok())
      log::warn("contents: shares of a deleted item were kept: " + s.error().message);
  if (auto p = drive::DrivePath::parse(path); p.ok() && ctx.secrets)
    if (auto s = ctx.secrets->removed(c.user.username, p->str()); !s.ok())
      log::warn("contents: secret access of a deleted notebook was kept: " + s.error().message);
  return Response::empty(204);
}

Response get_file(drive::Drive& d, Call& c) {
  std::string path = path_param(c);
  auto f = d.open_file(c.user, path);
  if (!f.ok()) return error(f.error());
  auto p = drive::DrivePath::parse(path);
  std::string name = p.ok() ? std::string(p->name()) : "download";
  Response res;
  res.file = std::make_shared<http::FileBody>(f->release());
  auto mt = drive::guess_mimetype(name);
  res.set_header("Content-Type", mt ? *mt : "application/octet-stream");
  res.set_header("Content-Disposition", content_disposition(name));
  res.set_header("Content-Security-Policy", "default-src 'none'; sandbox");
  res.set_header("Cache-Control", "private, no-cache");
  return res;
}

// ------------------------------------------------------------------ revisions

Response revision_model(drive::Drive& d, Call& c, const std::string& path, std::int64_t id) {
  auto info = d.revision(c.user, path, id);
  if (!info.ok()) return error(info.error());
  auto bytes = d.revision_bytes(c.user, path, id);
  if (!bytes.ok()) return error(bytes.error());
  json m = revision_json(info.value());
  auto p = drive::DrivePath::parse(path);
  m["path"] = p.ok() ? p->str() : path;
  if (is_notebook_path(path)) {
    std::string message;
    auto nb = drive::parse_stored_notebook(bytes.value(), &message);
    if (nb.ok()) {
      m["type"] = "notebook";
      m["format"] = "json";
      m["content"] = std::move(nb.value());
      return Response::json(200, m);
    }
  }
  m["type"] = "file";
  if (util::valid_utf8(bytes.value())) {
    m["format"] = "text";
    m["content"] = std::move(bytes.value());
  } else {
    m["format"] = "base64";
    m["content"] = drive::base64_encode(bytes.value());
  }
  return Response::json(200, m);
}

}  // namespace

std::string content_disposition(std::string_view name) {
  std::string ascii;
  for (unsigned char ch : name) {
    if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\' && ch != '%' && ch != ';')
      ascii += static_cast<char>(ch);
    else
      ascii += '_';
  }
  std::string encoded;
  static const char* hex = "0123456789ABCDEF";
  for (unsigned char ch : name) {
    if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
        ch == '-' || ch == '_' || ch == '.' || ch == '~') {
      encoded += static_cast<char>(ch);
    } else {
      encoded += '%';
      encoded += hex[ch >> 4];
      encoded += hex[ch & 15];
    }
  }
  return "attachment; filename=\"" + ascii + "\"; filename*=UTF-8''" + encoded;
}
json contents_model(const Entry& e) {
  return model(e);
}

void add_contents_routes(http::Router& r, std::shared_ptr<const Context> ctx) {
  if (!ctx->drive) return;
  auto d = ctx->drive;
  // [\s\S]: any byte, newlines included, so that such paths reach DrivePath::parse (400).
  const std::string contents = "/api/contents(/[\\s\\S]*)?";
  http::RouteOptions big;
  big.body_limit = kContentsBodyLimit;

  // Checkpoints first: their URLs also match the generic contents pattern.
  r.add("GET", contents + "/checkpoints", [ctx, d](Request& req, Responder done) {
    dispatch(ctx, req, done, [d](Call& c) {
      auto revs = d->revisions(c.user, path_param(c));
      if (!revs.ok()) return error(revs.error());
      json out = json::array();
      for (auto& rev : revs.value()) out.push_back(checkpoint_json(rev));
      return Response::json(200, out);
    });
  });
  r.add("POST", contents + "/checkpoints", [ctx, d](Request& req, Responder done) {
    dispatch(ctx, req, done, [d](Call& c) {
      auto rev = d->create_checkpoint(c.user, path_param(c));
      if (!rev.ok()) return error(rev.error());
      auto res = Response::json(201, checkpoint_json(rev.value()));
      auto p = drive::DrivePath::parse(path_param(c));
      res.set_header("Location", "/api/contents/" + url_escape_path(p.ok() ? p->str() : "") +
                                     "/checkpoints/" + std::to_string(rev->id));
      return res;
    });
  });
  const std::string checkpoint = contents + "/checkpoints/([A-Za-z0-9_-]+)";
  r.add("POST", checkpoint, [ctx, d](Request& req, Responder done) {
    dispatch(ctx, req, done, [d](Call& c) {
      auto id = parse_id(c.params[1]);
      if (!id) return error(404, "Checkpoint does not exist: " + path_param(c) + "@" + c.params[1]);
      auto st = d->restore_revision(c.user, path_param(c), *id);
      if (!st.ok()) return error(st.error());
      return Response::empty(204);
    });
  });
  r.add("DELETE", checkpoint, [ctx, d](Request& req, Responder done) {
    dispatch(ctx, req, done, [d](Call& c) {
      auto id = parse_id(c.params[1]);
      if (!id) return error(404, "Checkpoint does not exist: " + path_param(c) + "@" + c.params[1]);
      auto st = d->delete_revision(c.user, path_param(c), *id);
      if (!st.ok()) return error(st.error());
      return Response::empty(204);
    });
  });

  r.add("GET", contents, [ctx, d](Request& req, Responder done) {
    dispatch(ctx, req, done, [d, ctx](Call& c) { return get_contents(*d, ctx->live.get(), c); });
  });
  r.add(
      "PUT", contents,
      [ctx, d](Request& req, Responder done) {
        dispatch(ctx, req, done,
                 [d, ctx](Call& c) { return put_contents(*d, ctx->live.get(), c); });
      },
      big);
  r.add("POST", contents, [ctx, d](Request& req, Responder done) {
    dispatch(ctx, req, done, [d](Call& c) { return post_contents(*d, c); });
  });
  r.add("PATCH", contents, [ctx](Request& req, Responder done) {
    dispatch(ctx, req, done, [ctx](Call& c) { return patch_contents(*ctx, c); });
  });
  r.add("DELETE", contents, [ctx, d](Request& req, Responder done) {
    dispatch(ctx, req, done, [ctx](Call& c) { return delete_contents(*ctx, c); });
  });

  r.add("GET", "/files(/[\\s\\S]*)", [ctx, d](Request& req, Responder done) {
    dispatch(ctx, req, done, [d](Call& c) { return get_file(*d, c); });
  });

  // Skylab's revisions: GET ?path= lists (newest first), GET /{id}?path=
  // shows one with its content, POST /{id}/restore?path= puts it back.
  r.add("GET", "/api/skylab/revisions/?", [ctx, d](Request& req, Responder done) {
    dispatch(ctx, req, done, [d](Call& c) {
      auto path = c.q("path");
      if (!path) return error(400, "The 'path' query parameter is required");
      auto revs = d->revisions(c.user, *path);
      if (!revs.ok()) return error(revs.error());
      json list = json::array();
      for (auto it = revs->rbegin(); it != revs->rend(); ++it) list.push_back(revision_json(*it));
      auto p = drive::DrivePath::parse(*path);
      return Response::json(200,
                            {{"path", p.ok() ? p->str() : *path}, {"revisions", std::move(list)}});
    });
  });
  r.add("GET", "/api/skylab/revisions/([0-9]{1,18})", [ctx, d](Request& req, Responder done) {
    dispatch(ctx, req, done, [d](Call& c) {
      auto path = c.q("path");
      if (!path) return error(400, "The 'path' query parameter is required");
      auto id = parse_id(c.params[0]);
      if (!id) return error(404, "No such revision");
      return revision_model(*d, c, *path, *id);
    });
  });
  r.add("POST", "/api/skylab/revisions/([0-9]{1,18})/restore",
        [ctx, d](Request& req, Responder done) {
          dispatch(ctx, req, done, [d](Call& c) {
            auto path = c.q("path");
            if (!path) return error(400, "The 'path' query parameter is required");
            auto id = parse_id(c.params[0]);
            if (!id) return error(404, "No such revision");
            auto st = d->restore_revision(c.user, *path, *id);
            if (!st.ok()) return error(st.error());
            auto e = d->get(c.user, *path);
            if (!e.ok()) return error(e.error());
            return model_response(200, e.value(), false);
          });
        });
}

}  // namespace skylab::api
