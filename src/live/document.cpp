#include "live/document.hpp"

#include <algorithm>

#include "exec/notebook.hpp"

namespace skylab::live {

using nlohmann::json;

namespace {

json& cells_of(json& nb) {
  if (!nb.is_object()) nb = json::object();
  if (!nb.contains("cells") || !nb["cells"].is_array()) nb["cells"] = json::array();
  return nb["cells"];
}

void ensure_ids(json& nb) {
  for (auto& c : cells_of(nb)) {
    if (!c.is_object()) continue;
    if (!c.contains("id") || !c["id"].is_string() || c["id"].get_ref<const std::string&>().empty())
      c["id"] = exec::new_cell_id();
  }
}

}  // namespace

Document::Document(json nb, DocumentLimits limits)
    : nb_(std::move(nb)), limits_(limits), collector_(&cells_of(nb_), true) {
  ensure_ids(nb_);
}

std::optional<std::size_t> Document::index_of(const std::string& cell_id) const {
  const json& cells = nb_["cells"];
  for (std::size_t i = 0; i < cells.size(); ++i)
    if (cells[i].is_object() && cells[i].value("id", "") == cell_id) return i;
  return std::nullopt;
}

void Document::output_changed(const std::string& cell_id) {
  if (std::find(output_changes_.begin(), output_changes_.end(), cell_id) == output_changes_.end())
    output_changes_.push_back(cell_id);
}

void Document::changed() {
  ++version_;
  if (!dirty_since_) dirty_since_ = now_;
  last_change_ = now_;
}

void Document::begin(const std::string& msg_id, const std::string& cell_id, const std::string& code,
                     bool resume) {
  auto idx = index_of(cell_id);
  if (!idx) {
    cells_of(nb_).push_back({{"cell_type", "code"},
                             {"id", cell_id},
                             {"metadata", json::object()},
                             {"source", code},
                             {"outputs", json::array()},
                             {"execution_count", nullptr}});
    idx = nb_["cells"].size() - 1;
  }
  json& cell = nb_["cells"][*idx];
  if (cell.value("cell_type", "") != "code") return;  // not a code cell: nothing to record into
  Exec e;
  e.cell_id = cell_id;
  if (resume) {
    collector_.resume_cell(*idx, false);
  } else {
    collector_.begin_cell(*idx);
    cell["execution_count"] = nullptr;
  }
  execs_[msg_id] = e;
  last_exec_[cell_id] = msg_id;
  output_changed(cell_id);
  changed();
}

bool Document::on_iopub(const std::string& msg_id, std::string_view type, const json& content,
                        std::string_view date, std::size_t content_bytes) {
  auto it = execs_.find(msg_id);
  if (it == execs_.end()) return false;
  Exec& e = it->second;
  auto idx = index_of(e.cell_id);
  if (!idx) return false;
  bool is_output = type == "stream" || type == "display_data" || type == "execute_result" ||
                   type == "error" || type == "update_display_data";
  if (is_output) {
    if (e.truncated) return false;
    e.bytes += content_bytes;
    if (e.bytes > limits_.max_cell_output_bytes) {
      e.truncated = true;
      json& outs = nb_["cells"][*idx]["outputs"];
      if (!outs.is_array()) outs = json::array();
      double mb = static_cast<double>(limits_.max_cell_output_bytes) / (1024.0 * 1024.0);
      char buf[128];
      std::snprintf(buf, sizeof buf, "\n[output truncated by Skylab: %.0f MB]\n", mb);
      outs.push_back({{"output_type", "stream"}, {"name", "stderr"}, {"text", buf}});
      output_changed(e.cell_id);
      changed();
      return false;
    }
  }
  collector_.resume_cell(*idx, e.clear_pending);
  json& outs_before = nb_["cells"][*idx]["outputs"];
  std::size_t n_before = outs_before.is_array() ? outs_before.size() : 0;
  std::size_t old_len = 0;
  if (type == "stream" && n_before > 0 && outs_before.back().value("output_type", "") == "stream" &&
      outs_before.back()["text"].is_string())
    old_len = outs_before.back()["text"].get_ref<const std::string&>().size();
  bool idle = collector_.on_iopub(type, content, date);
  e.clear_pending = collector_.clear_pending();
  if (type == "stream") {
    const json& outs = nb_["cells"][*idx]["outputs"];
    // Merged into the previous stream: collapse from where it ended; a new one: from its start.
    if (outs.size() != n_before) old_len = 0;
    collapse_last_stream(*idx, old_len);
  }
  json& cell = nb_["cells"][*idx];
  if (cell.contains("execution_count")) recorded_counts_[e.cell_id] = cell["execution_count"];
  output_changed(e.cell_id);
  changed();
  return idle;
}

void Document::collapse_last_stream(std::size_t cell_index, std::size_t old_len) {
  // The browser shows "\r" progress lines collapsed as they arrive; only the
  // line the new text continues can change, so only that tail is rewritten.
  json& outs = nb_["cells"][cell_index]["outputs"];
  if (!outs.is_array() || outs.empty()) return;
  json& last = outs.back();
  if (last.value("output_type", "") != "stream" || !last["text"].is_string()) return;
  std::string& text = last["text"].get_ref<std::string&>();
  std::size_t from = 0;
  if (old_len > 0) {
    std::size_t nl = text.rfind('\n', old_len - 1);
    from = nl == std::string::npos ? 0 : nl + 1;
  }
  if (text.find('\r', from) == std::string::npos) return;
  std::string tail = exec::apply_carriage_returns(std::string_view(text).substr(from));
  text.replace(from, std::string::npos, tail);
}

void Document::on_execute_reply(const std::string& msg_id, const json& content,
                                std::string_view date) {
  auto it = execs_.find(msg_id);
  if (it == execs_.end()) return;
  auto idx = index_of(it->second.cell_id);
  if (!idx) return;
  collector_.resume_cell(*idx, it->second.clear_pending);
  collector_.on_execute_reply(date);
  json& cell = nb_["cells"][*idx];
  if (content.is_object()) {
    if (auto c = content.find("execution_count");
        c != content.end() && (c->is_number_integer() || c->is_null()))
      if (c->is_number_integer()) cell["execution_count"] = *c;
    if (auto s = content.find("status"); s != content.end() && s->is_string())
      cell["metadata"]["execution"]["shell.execute_reply.status"] = *s;
  }
  if (cell.contains("execution_count"))
    recorded_counts_[it->second.cell_id] = cell["execution_count"];
  output_changed(it->second.cell_id);
  changed();
}

void Document::end(const std::string& msg_id) {
  auto it = execs_.find(msg_id);
  if (it == execs_.end()) return;
  if (auto idx = index_of(it->second.cell_id)) {
    collector_.resume_cell(*idx, false);
    collector_.end_cell();
    output_changed(it->second.cell_id);
  }
  execs_.erase(it);
  changed();
}

std::map<std::string, std::string> Document::running() const {
  std::map<std::string, std::string> out;
  for (auto& [id, e] : execs_) out[id] = e.cell_id;
  return out;
}

bool Document::is_running(const std::string& cell_id) const {
  for (auto& [_, e] : execs_)
    if (e.cell_id == cell_id) return true;
  return false;
}

const json& Document::merge_outside(json incoming) {
  ensure_ids(incoming);
  json& in_cells = cells_of(incoming);
  for (auto& cell : in_cells) {
    if (!cell.is_object() || cell.value("cell_type", "") != "code") continue;
    std::string id = cell["id"].get<std::string>();
    auto mine = index_of(id);
    if (!mine) continue;
    const json& have = nb_["cells"][*mine];
    if (have.value("cell_type", "") != "code") continue;
    bool keep = is_running(id);
    if (!keep) {
      auto rc = recorded_counts_.find(id);
      keep = rc != recorded_counts_.end() && !rc->second.is_null() &&
             cell.contains("execution_count") && cell["execution_count"] == rc->second;
    }
    if (!keep) continue;
    cell["outputs"] = have.contains("outputs") ? have["outputs"] : json::array();
    cell["execution_count"] =
        have.contains("execution_count") ? have["execution_count"] : json(nullptr);
    if (have.contains("metadata") && have["metadata"].is_object() &&
        have["metadata"].contains("execution")) {
      if (!cell.contains("metadata") || !cell["metadata"].is_object())
        cell["metadata"] = json::object();
      cell["metadata"]["execution"] = have["metadata"]["execution"];
    }
  }
  nb_ = std::move(incoming);
  collector_ = exec::OutputCollector(&cells_of(nb_), true);
  // Executions whose cell is gone are no longer recorded.
  for (auto it = execs_.begin(); it != execs_.end();) {
    if (!index_of(it->second.cell_id))
      it = execs_.erase(it);
    else
      ++it;
  }
  changed();
  return nb_;
}

const std::string* Document::source(const std::string& cell_id) const {
  auto i = index_of(cell_id);
  if (!i) return nullptr;
  const json& c = nb_["cells"][*i];
  auto it = c.find("source");
  if (it == c.end() || !it->is_string()) return nullptr;
  return &it->get_ref<const std::string&>();
}

bool Document::set_source(const std::string& cell_id, std::string source) {
  auto i = index_of(cell_id);
  if (!i) return false;
  nb_["cells"][*i]["source"] = std::move(source);
  changed();
  return true;
}

bool Document::insert_cell(json cell, const std::string& after) {
  if (!cell.is_object() || !cell.contains("id") || !cell["id"].is_string()) return false;
  if (index_of(cell["id"].get<std::string>())) return false;
  json& cells = cells_of(nb_);
  std::size_t at = 0;
  if (!after.empty()) {
    auto a = index_of(after);
    at = a ? *a + 1 : cells.size();
  }
  cells.insert(cells.begin() + static_cast<std::ptrdiff_t>(at), std::move(cell));
  collector_.forget_display_ids();
  changed();
  return true;
}

bool Document::delete_cell(const std::string& cell_id) {
  auto i = index_of(cell_id);
  if (!i) return false;
  json& cells = nb_["cells"];
  cells.erase(cells.begin() + static_cast<std::ptrdiff_t>(*i));
  last_exec_.erase(cell_id);
  for (auto it = execs_.begin(); it != execs_.end();)
    it = it->second.cell_id == cell_id ? execs_.erase(it) : std::next(it);
  collector_.forget_display_ids();
  changed();
  return true;
}

bool Document::move_cell(const std::string& cell_id, const std::string& after) {
  auto i = index_of(cell_id);
  if (!i || cell_id == after) return false;
  if (!after.empty() && !index_of(after)) return false;
  json& cells = nb_["cells"];
  json cell = std::move(cells[*i]);
  cells.erase(cells.begin() + static_cast<std::ptrdiff_t>(*i));
  std::size_t at = after.empty() ? 0 : *index_of(after) + 1;
  cells.insert(cells.begin() + static_cast<std::ptrdiff_t>(at), std::move(cell));
  collector_.forget_display_ids();
  changed();
  return true;
}

bool Document::set_cell_type(const std::string& cell_id, const std::string& type) {
  if (type != "code" && type != "markdown" && type != "raw") return false;
  auto i = index_of(cell_id);
  if (!i) return false;
  json& c = nb_["cells"][*i];
  if (c.value("cell_type", "") == type) return true;
  c["cell_type"] = type;
  if (type == "code") {
    c["outputs"] = json::array();
    c["execution_count"] = nullptr;
  } else {
    c.erase("outputs");
    c.erase("execution_count");
    for (auto it = execs_.begin(); it != execs_.end();)
      it = it->second.cell_id == cell_id ? execs_.erase(it) : std::next(it);
  }
  changed();
  return true;
}

bool Document::set_cell_metadata(const std::string& cell_id, json metadata) {
  if (!metadata.is_object()) return false;
  auto i = index_of(cell_id);
  if (!i) return false;
  nb_["cells"][*i]["metadata"] = std::move(metadata);
  changed();
  return true;
}

void Document::set_metadata(json metadata) {
  if (!metadata.is_object()) return;
  nb_["metadata"] = std::move(metadata);
  changed();
}

std::string Document::last_execution(const std::string& cell_id) const {
  auto it = last_exec_.find(cell_id);
  return it == last_exec_.end() ? std::string() : it->second;
}

std::vector<std::string> Document::take_output_changes() {
  std::vector<std::string> out;
  out.swap(output_changes_);
  return out;
}

std::optional<Clock::time_point> Document::save_due() const {
  if (!dirty_since_ || !last_change_) return std::nullopt;
  return std::min(*last_change_ + limits_.debounce, *dirty_since_ + limits_.max_delay);
}

void Document::saved(std::uint64_t v) {
  if (v > saved_version_) saved_version_ = v;
  if (saved_version_ >= version_) {
    dirty_since_.reset();
    last_change_.reset();
  } else {
    dirty_since_ = last_change_;  // changes that came during the save wait for the next one
  }
}

}  // namespace skylab::live
