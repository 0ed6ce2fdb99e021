#include "exec/notebook.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/json_limits.hpp"
#include "common/nbformat.hpp"
#include "common/safe_fs.hpp"
#include "common/util.hpp"

namespace skylab::exec {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A list of strings joined, or nullopt when `v` is not such a list.
std::optional<std::string> joined(const json& v) {
  if (!v.is_array()) return std::nullopt;
  std::string out;
  for (const auto& line : v) {
    if (!line.is_string()) return std::nullopt;
    out += line.get_ref<const std::string&>();
  }
  return out;
}

void rejoin_bundle(json& data) {
  if (!data.is_object()) return;
  for (auto& [key, value] : data.items()) {
    if (nbformat::is_json_mime(key)) continue;
    if (auto s = joined(value)) value = std::move(*s);
  }
}

// 1-based line and column of byte `pos` in `text`.
std::string where(std::string_view text, std::size_t pos) {
  pos = std::min(pos, text.size());
  std::size_t line = 1, col = 1;
  for (std::size_t i = 0; i < pos; ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

}  // namespace

std::vector<std::string> split_lines_keepends(std::string_view s) {
  return nbformat::split_lines_keepends(s);
}

std::string cell_source(const json& cell) {
  auto it = cell.find("source");
  if (it == cell.end()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (auto s = joined(*it)) return *s;
  return {};
}

namespace {

//! Cell ids as nbformat 4.5 requires them. A 4.0-4.4 notebook whose cells
//! carry ids (written by a newer Jupyter but labelled older) is invalid as
//! it stands; it becomes 4.5, as nbformat's upgrade makes it. In 4.5 every
//! cell gets a valid id, unique in the notebook (nbformat's
//! repair_duplicate_cell_ids): missing, malformed or repeated ones are
//! replaced by fresh ones.
void normalize_cell_ids(json& nb) {
  if (nb["nbformat"].get<long long>() != 4) return;
  auto minor = nb["nbformat_minor"].get<long long>();
  if (minor < 5) {
    bool any = false;
    for (auto& cell : nb["cells"]) any = any || cell.contains("id");
    if (!any) return;
    nb["nbformat_minor"] = 5;
  }
  nbformat::assign_cell_ids(nb, true);
}

}  // namespace

Result<json> parse_notebook(std::string_view text) {
  // Depth first: nlohmann's parser is iterative, but dump() and every walk
  // over the cells recurse once per level.
  // The size is the caller's to limit.
  json_limits::Limits depth_only;
  depth_only.max_bytes = text.size();
  depth_only.max_depth = json_limits::kStoredMaxDepth;
  if (json_limits::check_shape(text, depth_only) != json_limits::Shape::kOk)
    return Error::bad_request("not a notebook we accept (nested deeper than " +
                              std::to_string(json_limits::kStoredMaxDepth) + " levels)");
  json nb;
  try {
    nb = json::parse(text);
  } catch (const json::parse_error& e) {  // local: becomes a value right here
    return Error::bad_request("not valid JSON (" + where(text, e.byte ? e.byte - 1 : 0) + ")");
  }
  if (!nb.is_object() || !nb.contains("nbformat"))
    return Error::bad_request("not a Jupyter notebook (no 'nbformat' field)");
  const json& major = nb["nbformat"];
  if (!major.is_number_integer())
    return Error::bad_request("not a Jupyter notebook ('nbformat' is not a number)");
  int version = major.get<int>();
  if (version < 4)
    return Error::bad_request("nbformat " + std::to_string(version) +
                              " notebooks are not supported; convert it first: "
                              "jupyter nbconvert --to notebook --nbformat 4 NOTEBOOK");
  if (version > 4)
    return Error::bad_request("nbformat " + std::to_string(version) +
                              " is newer than this Skylab supports (4)");
  if (!nb.contains("nbformat_minor")) nb["nbformat_minor"] = 0;
  if (!nb["nbformat_minor"].is_number_integer())
    return Error::bad_request("not a Jupyter notebook ('nbformat_minor' is not a number)");
  if (!nb.contains("metadata")) nb["metadata"] = json::object();
  if (!nb["metadata"].is_object())
    return Error::bad_request("not a Jupyter notebook ('metadata' is not an object)");
  auto cells = nb.find("cells");
  if (cells == nb.end() || !cells->is_array())
    return Error::bad_request("not a Jupyter notebook (no 'cells' list)");
  std::size_t index = 0;
  for (auto& cell : *cells) {
    std::string at = "cell " + std::to_string(index++);
    if (!cell.is_object() || !cell.contains("cell_type") || !cell["cell_type"].is_string())
      return Error::bad_request("not a Jupyter notebook (" + at + " has no 'cell_type')");
    auto src = cell.find("source");
    if (src == cell.end()) {
      cell["source"] = "";
    } else if (!src->is_string()) {
      auto s = joined(*src);
      if (!s) return Error::bad_request("not a Jupyter notebook (" + at + "'s source is not text)");
      *src = std::move(*s);
    }
    if (!cell.contains("metadata") || !cell["metadata"].is_object())
      cell["metadata"] = json::object();
    if (auto att = cell.find("attachments"); att != cell.end() && att->is_object())
      for (auto& [_, bundle] : att->items()) rejoin_bundle(bundle);
    if (cell["cell_type"] != "code") continue;
    if (!cell.contains("execution_count")) cell["execution_count"] = nullptr;
    if (!cell.contains("outputs") || !cell["outputs"].is_array()) cell["outputs"] = json::array();
    for (auto& out : cell["outputs"]) {
      if (!out.is_object()) continue;
      auto type = out.value("output_type", "");
      if (type == "execute_result" || type == "display_data") {
        if (auto d = out.find("data"); d != out.end()) rejoin_bundle(*d);
      } else if (auto t = out.find("text"); t != out.end()) {
        if (auto s = joined(*t)) *t = std::move(*s);
      }
    }
  }
  normalize_cell_ids(nb);
  return nb;
}

Result<json> read_notebook(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec))
    return Error::bad_request(path + ": is a directory, not a notebook");
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::not_found(path + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Error::bad_request(path + ": read error");
  auto nb = parse_notebook(ss.str());
  if (!nb.ok()) return Error::bad_request(path + ": " + nb.error().message);
  return nb;
}

std::string serialize_notebook(const json& nb) {
  return nbformat::serialize(nb);
}

Status write_notebook(const std::string& path, const json& nb) {
  // The user's own file, written as the user: safe_fs's user mode.
  return safe_fs::write_user_file(fs::absolute(path).string(), serialize_notebook(nb));
}

std::string default_output_path(const std::string& input) {
  static constexpr std::string_view kExt = ".ipynb";
  if (input.size() > kExt.size() &&
      input.compare(input.size() - kExt.size(), kExt.size(), kExt) == 0)
    return input.substr(0, input.size() - kExt.size()) + ".out.ipynb";
  return input + ".out.ipynb";
}

std::string new_cell_id() {
  return nbformat::new_cell_id();
}

}  // namespace skylab::exec
