#include "drive/notebook.hpp"

#include <functional>
#include <set>
#include <vector>

#include "common/json_io.hpp"
#include "common/json_limits.hpp"
#include "common/nbformat.hpp"
#include "common/util.hpp"

namespace skylab::drive {

using nlohmann::json;

namespace {

// ---------------------------------------------------------------- validation

//! Collects the first problem; every check returns false once one is found.
class Checker {
 public:
  explicit Checker(int minor) : minor_(minor) {}

  bool fail(const std::string& where, const std::string& what) {
    if (!problem_) problem_ = (where.empty() ? std::string("notebook") : where) + ": " + what;
    return false;
  }
  const std::optional<std::string>& problem() const { return problem_; }

  static std::string at(const std::string& where, const std::string& key) {
    return where.empty() ? key : where + "." + key;
  }
  static std::string at(const std::string& where, std::size_t i) {
    return where + "[" + std::to_string(i) + "]";
  }

  bool is_int_min(const json& v, long long min) {
    if (v.is_number_unsigned()) return true;
    return v.is_number_integer() && v.get<long long>() >= min;
  }

  bool multiline(const json& v, const std::string& where) {
    if (v.is_string()) return true;
    if (v.is_array()) {
      for (std::size_t i = 0; i < v.size(); ++i)
        if (!v[i].is_string()) return fail(at(where, i), "must be a string");
      return true;
    }
    return fail(where, "must be a string or a list of strings");
  }

  bool string_field(const json& obj, const char* key, const std::string& where, bool required) {
    auto it = obj.find(key);
    if (it == obj.end()) return required ? fail(where, std::string("missing '") + key + "'") : true;
    if (!it->is_string()) return fail(at(where, key), "must be a string");
    return true;
  }

  bool only_keys(const json& obj, std::initializer_list<const char*> allowed,
                 const std::string& where) {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      bool ok = false;
      for (const char* a : allowed)
        if (it.key() == a) ok = true;
      if (!ok) return fail(where, "unexpected property '" + it.key() + "'");
    }
    return true;
  }

  bool mimebundle(const json& v, const std::string& where) {
    if (!v.is_object()) return fail(where, "must be an object (a mimebundle)");
    for (auto it = v.begin(); it != v.end(); ++it)
      if (!nbformat::is_json_mime(it.key()) && !multiline(*it, at(where, "'" + it.key() + "'")))
        return false;
    return true;
  }

  bool tags(const json& v, const std::string& where) {
    if (!v.is_array()) return fail(where, "must be a list of strings");
    std::set<std::string> seen;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_string()) return fail(at(where, i), "must be a string");
      const auto& s = v[i].get_ref<const std::string&>();
      if (s.empty() || s.find(',') != std::string::npos)
        return fail(at(where, i), "tags must be non-empty and without commas");
      if (!seen.insert(s).second) return fail(where, "duplicate tag '" + s + "'");
    }
    return true;
  }

  bool cell_metadata(const json& md, const std::string& cell_type, const std::string& where) {
    if (!md.is_object()) return fail(where, "must be an object");
    if (auto it = md.find("name"); it != md.end()) {
      if (!it->is_string() || it->get_ref<const std::string&>().empty())
        return fail(at(where, "name"), "must be a non-empty string");
      const auto& s = it->get_ref<const std::string&>();
      auto nl = s.find('\n');
      if (nl != std::string::npos && nl + 1 != s.size())
        return fail(at(where, "name"), "must be a single line");
    }
    if (auto it = md.find("tags"); it != md.end() && !tags(*it, at(where, "tags"))) return false;
    if (auto it = md.find("jupyter"); it != md.end() && !it->is_object())
      return fail(at(where, "jupyter"), "must be an object");
    if (cell_type == "raw") {
      if (auto it = md.find("format"); it != md.end() && !it->is_string())
        return fail(at(where, "format"), "must be a string");
    }
    if (cell_type == "code") {
      if (auto it = md.find("execution"); it != md.end()) {
        if (!it->is_object()) return fail(at(where, "execution"), "must be an object");
        for (auto e = it->begin(); e != it->end(); ++e)
          if (!e->is_string()) return fail(at(at(where, "execution"), e.key()), "must be a string");
      }
      if (auto it = md.find("collapsed"); it != md.end() && !it->is_boolean())
        return fail(at(where, "collapsed"), "must be true or false");
      if (auto it = md.find("scrolled");
          it != md.end() && !it->is_boolean() && !(it->is_string() && *it == "auto"))
        return fail(at(where, "scrolled"), "must be true, false or \"auto\"");
    }
    return true;
  }

  bool output(const json& o, const std::string& where) {
    if (!o.is_object()) return fail(where, "must be an object");
    auto t = o.find("output_type");
    if (t == o.end()) return fail(where, "missing 'output_type'");
    if (!t->is_string()) return fail(at(where, "output_type"), "must be a string");
    const auto& type = t->get_ref<const std::string&>();
    if (type == "execute_result" || type == "display_data") {
      bool exec = type == "execute_result";
      if (exec ? !only_keys(o, {"output_type", "data", "metadata", "execution_count"}, where)
               : !only_keys(o, {"output_type", "data", "metadata"}, where))
        return false;
      auto d = o.find("data");
      if (d == o.end()) return fail(where, "missing 'data'");
      if (!mimebundle(*d, at(where, "data"))) return false;
      auto m = o.find("metadata");
      if (m == o.end()) return fail(where, "missing 'metadata'");
      if (!m->is_object()) return fail(at(where, "metadata"), "must be an object");
      if (exec) {
        auto c = o.find("execution_count");
        if (c == o.end()) return fail(where, "missing 'execution_count'");
        if (!c->is_null() && !is_int_min(*c, 0))
          return fail(at(where, "execution_count"), "must be a non-negative integer or null");
      }
      return true;
    }
    if (type == "stream") {
      if (!only_keys(o, {"output_type", "name", "text"}, where)) return false;
      if (!string_field(o, "name", where, true)) return false;
      auto x = o.find("text");
      if (x == o.end()) return fail(where, "missing 'text'");
      return multiline(*x, at(where, "text"));
    }
    if (type == "error") {
      if (!only_keys(o, {"output_type", "ename", "evalue", "traceback"}, where)) return false;
      if (!string_field(o, "ename", where, true) || !string_field(o, "evalue", where, true))
        return false;
      auto tb = o.find("traceback");
      if (tb == o.end()) return fail(where, "missing 'traceback'");
      if (!tb->is_array()) return fail(at(where, "traceback"), "must be a list of strings");
      for (std::size_t i = 0; i < tb->size(); ++i)
        if (!(*tb)[i].is_string()) return fail(at(at(where, "traceback"), i), "must be a string");
      return true;
    }
    return fail(at(where, "output_type"),
                "unknown output_type '" + type +
                    "' (expected execute_result, display_data, stream or error)");
  }

  static bool valid_cell_id(const json& id) {
    if (!id.is_string()) return false;
    const auto& s = id.get_ref<const std::string&>();
    if (s.empty() || s.size() > 64) return false;
    for (char c : s)
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_'))
        return false;
    return true;
  }

  bool cell(const json& c, const std::string& where) {
    if (!c.is_object()) return fail(where, "must be an object");
    auto t = c.find("cell_type");
    if (t == c.end()) return fail(where, "missing 'cell_type'");
    if (!t->is_string()) return fail(at(where, "cell_type"), "must be a string");
    const auto& type = t->get_ref<const std::string&>();
    bool ids = minor_ >= 5;
    if (type == "code") {
      if (!only_keys(c, {"id", "cell_type", "metadata", "source", "outputs", "execution_count"},
                     where))
        return false;
    } else if (type == "markdown" || type == "raw") {
      if (!only_keys(c, {"id", "cell_type", "metadata", "source", "attachments"}, where))
        return false;
    } else {
      return fail(at(where, "cell_type"),
                  "unknown cell_type '" + type + "' (expected code, markdown or raw)");
    }
    if (ids) {
      auto id = c.find("id");
      if (id == c.end()) return fail(where, "missing 'id' (required since nbformat 4.5)");
      if (!valid_cell_id(*id))
        return fail(at(where, "id"), "must be 1-64 characters of [a-zA-Z0-9-_]");
    }
    auto md = c.find("metadata");
    if (md == c.end()) return fail(where, "missing 'metadata'");
    if (!cell_metadata(*md, type, at(where, "metadata"))) return false;
    auto src = c.find("source");
    if (src == c.end()) return fail(where, "missing 'source'");
    if (!multiline(*src, at(where, "source"))) return false;
    if (auto a = c.find("attachments"); a != c.end()) {
      if (!a->is_object()) return fail(at(where, "attachments"), "must be an object");
      for (auto it = a->begin(); it != a->end(); ++it)
        if (!mimebundle(*it, at(at(where, "attachments"), "'" + it.key() + "'"))) return false;
    }
    if (type == "code") {
      auto outs = c.find("outputs");
      if (outs == c.end()) return fail(where, "missing 'outputs'");
      if (!outs->is_array()) return fail(at(where, "outputs"), "must be a list");
      for (std::size_t i = 0; i < outs->size(); ++i)
        if (!output((*outs)[i], at(at(where, "outputs"), i))) return false;
      auto ec = c.find("execution_count");
      if (ec == c.end()) return fail(where, "missing 'execution_count'");
      if (!ec->is_null() && !is_int_min(*ec, 0))
        return fail(at(where, "execution_count"), "must be a non-negative integer or null");
    }
    return true;
  }

  bool notebook_metadata(const json& md) {
    const std::string where = "metadata";
    if (!md.is_object()) return fail(where, "must be an object");
    if (auto k = md.find("kernelspec"); k != md.end()) {
      if (!k->is_object()) return fail("metadata.kernelspec", "must be an object");
      if (!string_field(*k, "name", "metadata.kernelspec", true) ||
          !string_field(*k, "display_name", "metadata.kernelspec", true))
        return false;
    }
    if (auto l = md.find("language_info"); l != md.end()) {
      const std::string w = "metadata.language_info";
      if (!l->is_object()) return fail(w, "must be an object");
      if (!string_field(*l, "name", w, true)) return false;
      if (auto cm = l->find("codemirror_mode");
          cm != l->end() && !cm->is_string() && !cm->is_object())
        return fail(at(w, "codemirror_mode"), "must be a string or an object");
      for (const char* key : {"file_extension", "mimetype", "pygments_lexer"})
        if (!string_field(*l, key, w, false)) return false;
    }
    if (auto o = md.find("orig_nbformat"); o != md.end() && !is_int_min(*o, 1))
      return fail("metadata.orig_nbformat", "must be a positive integer");
    if (!string_field(md, "title", where, false)) return false;
    if (auto a = md.find("authors"); a != md.end() && !a->is_array())
      return fail("metadata.authors", "must be a list");
    return true;
  }

  bool notebook(const json& nb) {
    if (!nb.is_object()) return fail("", "must be a JSON object");
    if (!only_keys(nb, {"metadata", "nbformat_minor", "nbformat", "cells"}, "")) return false;
    auto md = nb.find("metadata");
    if (md == nb.end()) return fail("", "missing 'metadata'");
    if (!notebook_metadata(*md)) return false;
    auto cells = nb.find("cells");
    if (cells == nb.end()) return fail("", "missing 'cells'");
    if (!cells->is_array()) return fail("cells", "must be a list");
    std::set<std::string> ids;
    for (std::size_t i = 0; i < cells->size(); ++i) {
      if (!cell((*cells)[i], at("cells", i))) return false;
      if (minor_ >= 5 && !ids.insert((*cells)[i]["id"].get<std::string>()).second)
        return fail(at(at("cells", i), "id"),
                    "duplicate cell id '" + (*cells)[i]["id"].get<std::string>() + "'");
    }
    return true;
  }

 private:
  int minor_;
  std::optional<std::string> problem_;
};

Status check_versions(const json& nb, int& major, int& minor) {
  if (!nb.is_object()) return Error::bad_request("Invalid notebook: must be a JSON object");
  auto mj = nb.find("nbformat");
  if (mj == nb.end()) return Error::bad_request("Invalid notebook: missing 'nbformat'");
  if (!mj->is_number_integer())
    return Error::bad_request("Invalid notebook: 'nbformat' must be an integer");
  major = mj->get<int>();
  auto mn = nb.find("nbformat_minor");
  if (mn == nb.end()) return Error::bad_request("Invalid notebook: missing 'nbformat_minor'");
  if (!mn->is_number_integer() || mn->get<long long>() < 0)
    return Error::bad_request("Invalid notebook: 'nbformat_minor' must be a non-negative integer");
  minor = mn->get<int>();
  if (major != 3 && major != 4)
    return Error::bad_request("Unsupported notebook format: nbformat " + std::to_string(major) +
                              " (Skylab reads v3 and v4)");
  return ok_status();
}

// ---------------------------------------------------------------- lines (common/nbformat)

// ---------------------------------------------------------------- v3

const std::pair<const char*, const char*> kV3Mime[] = {
    {"text", "text/plain"},       {"html", "text/html"},
    {"svg", "image/svg+xml"},     {"png", "image/png"},
    {"jpeg", "image/jpeg"},       {"latex", "text/latex"},
    {"json", "application/json"}, {"javascript", "application/javascript"},
};

void to_mime_keys(json& d) {
  if (!d.is_object()) return;
  for (auto& [alias, mime] : kV3Mime) {
    auto it = d.find(alias);
    if (it != d.end()) {
      json v = std::move(*it);
      d.erase(alias);
      d[mime] = std::move(v);
    }
  }
}

json upgrade_output(json o) {
  if (!o.is_object()) return o;
  std::string type = o.value("output_type", "");
  if (type == "pyout" || type == "display_data") {
    if (!o.contains("metadata") || !o["metadata"].is_object()) o["metadata"] = json::object();
    json out = json::object();
    if (type == "pyout") {
      out["output_type"] = "execute_result";
      out["execution_count"] = o.contains("prompt_number") ? o["prompt_number"] : json(nullptr);
      o.erase("prompt_number");
    } else {
      out["output_type"] = "display_data";
    }
    json data = json::object();
    for (auto it = o.begin(); it != o.end(); ++it) {
      if (it.key() == "output_type" || it.key() == "metadata" || it.key() == "execution_count")
        continue;
      data[it.key()] = *it;
    }
    to_mime_keys(data);
    if (auto j = data.find("application/json"); j != data.end() && j->is_string()) {
      auto parsed = json_limits::parse_or_discarded(j->get<std::string>());
      if (!parsed.is_discarded()) *j = std::move(parsed);
    }
    out["data"] = std::move(data);
    out["metadata"] = std::move(o["metadata"]);
    to_mime_keys(out["metadata"]);
    return out;
  }
  if (type == "pyerr") {
    o["output_type"] = "error";
  } else if (type == "stream") {
    o["name"] = o.contains("stream") ? o["stream"] : json("stdout");
    o.erase("stream");
  }
  return o;
}

json upgrade_cell(json c, std::set<std::string>& ids) {
  if (!c.is_object()) return c;
  if (!c.contains("metadata") || !c["metadata"].is_object()) c["metadata"] = json::object();
  std::string id;
  do id = nbformat::new_cell_id();
  while (ids.count(id));
  ids.insert(id);
  c["id"] = id;
  std::string type = c.value("cell_type", "");
  if (type == "code") {
    c.erase("language");
    if (c.contains("collapsed")) {
      c["metadata"]["collapsed"] = c["collapsed"];
      c.erase("collapsed");
    }
    json input = c.contains("input") ? c["input"] : json("");
    nbformat::join_field(input);
    c.erase("input");
    c["source"] = std::move(input);
    c["execution_count"] = c.contains("prompt_number") ? c["prompt_number"] : json(nullptr);
    c.erase("prompt_number");
    json outs = json::array();
    if (c.contains("outputs") && c["outputs"].is_array())
      for (auto& o : c["outputs"]) outs.push_back(upgrade_output(std::move(o)));
    c["outputs"] = std::move(outs);
  } else if (type == "heading") {
    c["cell_type"] = "markdown";
    int level = c.contains("level") && c["level"].is_number_integer() ? c["level"].get<int>() : 1;
    c.erase("level");
    json src = c.contains("source") ? c["source"] : json("");
    nbformat::join_field(src);
    std::string text = src.is_string() ? src.get<std::string>() : "";
    // " ".join(source.splitlines())
    std::vector<std::string> lines;
    std::size_t start = 0;
    while (start < text.size()) {
      auto nl = text.find('\n', start);
      std::string line =
          text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      lines.push_back(std::move(line));
      if (nl == std::string::npos) break;
      start = nl + 1;
    }
    std::string single;
    for (std::size_t i = 0; i < lines.size(); ++i) single += (i ? " " : "") + lines[i];
    c["source"] = std::string(static_cast<std::size_t>(std::max(level, 1)), '#') + " " + single;
  } else if (type == "html") {
    c["cell_type"] = "markdown";
  }
  return c;
}

}  // namespace

// ---------------------------------------------------------------- public

json new_notebook() {
  return {{"cells", json::array()},
          {"metadata", json::object()},
          {"nbformat", 4},
          {"nbformat_minor", 5}};
}

Status upgrade_v3(json& nb) {
  if (!nb.is_object()) return Error::bad_request("Invalid notebook: must be a JSON object");
  json md = nb.contains("metadata") && nb["metadata"].is_object() ? nb["metadata"] : json::object();
  json orig_minor = nb.contains("nbformat_minor") ? nb["nbformat_minor"] : json(0);
  md.erase("name");
  md.erase("signature");
  md["orig_nbformat"] = 3;
  md["orig_nbformat_minor"] = orig_minor;
  json cells = json::array();
  std::set<std::string> ids;
  if (auto ws = nb.find("worksheets"); ws != nb.end()) {
    if (!ws->is_array())
      return Error::bad_request("Invalid v3 notebook: 'worksheets' must be a list");
    for (auto& w : *ws) {
      if (!w.is_object() || !w.contains("cells")) continue;
      if (!w["cells"].is_array())
        return Error::bad_request("Invalid v3 notebook: worksheet 'cells' must be a list");
      for (auto& c : w["cells"]) cells.push_back(upgrade_cell(std::move(c), ids));
    }
  }
  nb = {{"cells", std::move(cells)},
        {"metadata", std::move(md)},
        {"nbformat", 4},
        {"nbformat_minor", 5}};
  return ok_status();
}

void rejoin_lines(json& nb) {
  nbformat::join_lines(nb);
}

std::optional<std::string> validation_problem(const json& nb) {
  int minor = 0;
  if (nb.is_object()) {
    auto mn = nb.find("nbformat_minor");
    if (mn != nb.end() && mn->is_number_integer()) minor = mn->get<int>();
    auto mj = nb.find("nbformat");
    if (mj == nb.end()) return std::string("notebook: missing 'nbformat'");
    if (!mj->is_number_integer() || mj->get<long long>() != 4)
      return std::string("nbformat: must be 4");
    if (mn == nb.end()) return std::string("notebook: missing 'nbformat_minor'");
    if (!mn->is_number_integer() || mn->get<long long>() < 0)
      return std::string("nbformat_minor: must be a non-negative integer");
  }
  Checker ch(minor);
  ch.notebook(nb);
  return ch.problem();
}

Status prepare_for_save(json& nb) {
  int major = 0, minor = 0;
  if (auto st = check_versions(nb, major, minor); !st.ok()) return st;
  if (major == 3) {
    if (auto st = upgrade_v3(nb); !st.ok()) return st;
    minor = 5;
  }
  // Transient fields (nbformat's strip_transient).
  nbformat::strip_transient(nb);
  // v4.0-4.4 -> v4.5; ids added where missing or (below 4.5, where ids were
  // not part of the format) malformed; duplicates replaced.
  bool upgrading = minor < 5;
  if (upgrading) nb["nbformat_minor"] = 5;
  nbformat::assign_cell_ids(nb, upgrading);
  Checker ch(5);
  if (!ch.notebook(nb)) return Error::bad_request("Invalid notebook: " + *ch.problem());
  return ok_status();
}

std::string serialize_notebook(json nb) {
  return nbformat::serialize(std::move(nb));
}

Result<json> parse_stored_notebook(std::string_view bytes, std::string* validation_message) {
  if (validation_message) validation_message->clear();
  auto parsed = json_io::parse_json(bytes);
  if (!parsed.ok()) return Error::bad_request("Unreadable Notebook: " + parsed.error().message);
  json nb = std::move(parsed.value());
  int major = 0, minor = 0;
  if (auto st = check_versions(nb, major, minor); !st.ok())
    return Error::bad_request("Unreadable Notebook: " + st.error().message);
  if (major == 3) {
    // v3 text fields may be lists of lines: join them first, as nbformat's v3 reader does.
    if (auto st = upgrade_v3(nb); !st.ok())
      return Error::bad_request("Unreadable Notebook: " + st.error().message);
  }
  rejoin_lines(nb);
  if (validation_message) {
    if (auto problem = validation_problem(nb))
      *validation_message = "Notebook validation failed: " + *problem;
  }
  return nb;
}

}  // namespace skylab::drive
