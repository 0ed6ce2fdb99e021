// /api/skylab/examples: the gallery of example notebooks (the course
// notebooks in examples/), listed for everyone and copied into a user's Drive
// on first open.
//
//   GET  /api/skylab/examples          [{name, title, description}]
//   POST /api/skylab/examples/NAME     copies NAME.ipynb to Examples/NAME.ipynb in the
//                                      caller's Drive: 201 with the new file's Contents
//                                      model; when that path exists already, 200 with the
//                                      existing file's model (the user's own copy, with
//                                      their changes, is what they open again).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "api/api.hpp"
#include "api/work_queue.hpp"
#include "common/json_limits.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "drive/drive.hpp"

namespace skylab::api {

namespace fs = std::filesystem;
using http::Request;
using http::Responder;
using http::Response;
using nlohmann::json;

namespace {

constexpr std::uintmax_t kMaxExampleBytes = 16u << 20;
const char* kExamplesFolder = "Examples";

bool valid_example_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-'))
      return false;
  return true;
}

std::string cell_text(const json& cell) {
  const json& src = cell.contains("source") ? cell["source"] : json();
  if (src.is_string()) return src.get<std::string>();
  std::string out;
  if (src.is_array())
    for (auto& l : src)
      if (l.is_string()) out += l.get<std::string>();
  return out;
}

std::string trim(std::string s) {
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t'))
    s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t')) ++i;
  return s.substr(i);
}

Result<json> read_example(const fs::path& file) {
  std::error_code ec;
  auto size = fs::file_size(file, ec);
  if (ec) return Error::not_found("No such example");
  if (size > kMaxExampleBytes)
    return Error::internal("example " + file.filename().string() + " is too large");
  std::ifstream in(file, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  auto nb = json_limits::parse_or_discarded(ss.str());
  if (nb.is_discarded() || !nb.is_object() || !nb.contains("cells") || !nb["cells"].is_array())
    return Error::internal("example " + file.filename().string() + " is not a notebook");
  return nb;
}

// Title and description: metadata.skylab.{title,description}, else the first
// markdown cell's heading and the paragraph after it.
json summary(const std::string& name, const json& nb) {
  std::string title, description;
  int order = 1000;
  if (nb.contains("metadata") && nb["metadata"].is_object()) {
    const json& m = nb["metadata"];
    if (m.contains("skylab") && m["skylab"].is_object()) {
      const json& s = m["skylab"];
      if (s.contains("title") && s["title"].is_string()) title = s["title"].get<std::string>();
      if (s.contains("description") && s["description"].is_string())
        description = s["description"].get<std::string>();
      if (s.contains("order") && s["order"].is_number_integer()) order = s["order"].get<int>();
    }
  }
  if (title.empty() || description.empty()) {
    for (auto& cell : nb["cells"]) {
      if (!cell.is_object() || cell.value("cell_type", "") != "markdown") continue;
      std::istringstream lines(cell_text(cell));
      std::string line, para;
      bool heading_seen = false;
      while (std::getline(lines, line)) {
        if (!heading_seen && line.rfind('#', 0) == 0) {
          if (title.empty()) title = trim(line.substr(line.find_first_not_of('#')));
          heading_seen = true;
        } else if (trim(line).empty()) {
          if (!para.empty()) break;
        } else {
          para += (para.empty() ? "" : " ") + trim(line);
        }
      }
      if (description.empty()) description = para;
      break;
    }
  }
  if (title.empty()) title = name;
  return {{"name", name}, {"title", title}, {"description", description}, {"order", order}};
}

Response list_examples(const std::string& dir) {
  json out = json::array();
  std::error_code ec;
  if (dir.empty()) return Response::json(200, out);
  std::vector<json> items;
  for (auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() != ".ipynb") continue;
    std::string name = e.path().stem().string();
    if (!valid_example_name(name)) continue;
    auto nb = read_example(e.path());
    if (!nb.ok()) {
      log::warn(nb.error().message);
      continue;
    }
    items.push_back(summary(name, nb.value()));
  }
  std::sort(items.begin(), items.end(), [](const json& a, const json& b) {
    return std::make_pair(a["order"].get<int>(), a["name"].get<std::string>()) <
           std::make_pair(b["order"].get<int>(), b["name"].get<std::string>());
  });
  for (auto& i : items) {
    i.erase("order");
    out.push_back(std::move(i));
  }
  return Response::json(200, out);
}

Response copy_example(const Context& ctx, const auth::Identity& user, const std::string& name) {
  static Mutex mutex;  // check-then-save per server: two clicks make one copy
  if (!valid_example_name(name) || ctx.examples_dir.empty())
    return Response::error(404, "No such example");
  fs::path file = fs::path(ctx.examples_dir) / (name + ".ipynb");
  auto nb = read_example(file);
  if (!nb.ok()) return Response::from_error(nb.error());
  std::string path = std::string(kExamplesFolder) + "/" + name + ".ipynb";
  MutexLock lock(mutex);
  if (auto existing = ctx.drive->get(user, path); existing.ok())
    return Response::json(200, contents_model(*existing));
  if (auto d = ctx.drive->save_directory(user, kExamplesFolder); !d.ok())
    return Response::from_error(d.error());
  auto saved = ctx.drive->save_notebook(user, path, std::move(nb.value()));
  if (!saved.ok()) return Response::from_error(saved.error());
  auto res = Response::json(201, contents_model(saved->entry));
  res.set_header("Location", "/api/contents/" + path);
  return res;
}

}  // namespace

void add_example_routes(http::Router& r, std::shared_ptr<const Context> ctx) {
  r.add("GET", "/api/skylab/examples/?", [ctx](Request&, Responder done) {
    respond_on_queue(
        ctx->work.get(), done, [ctx] { return list_examples(ctx->examples_dir); }, "examples");
  });
  if (!ctx->drive) return;
  r.add("POST", "/api/skylab/examples/([A-Za-z0-9_-]{1,64})", [ctx](Request& req, Responder done) {
    auto user = req.user;
    std::string name = req.params[0];
    respond_on_queue(
        ctx->work.get(), done, [ctx, user, name] { return copy_example(*ctx, user, name); },
        "examples");
  });
}

}  // namespace skylab::api
