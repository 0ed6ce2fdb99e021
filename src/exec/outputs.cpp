#include "exec/outputs.hpp"

#include <cctype>

#include "common/util.hpp"

namespace skylab::exec {

using nlohmann::json;

namespace {

bool digits(std::string_view s, std::size_t pos, std::size_t n) {
  if (pos + n > s.size()) return false;
  for (std::size_t i = pos; i < pos + n; ++i)
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  return true;
}

const json& member(const json& obj, const char* key) {
  static const json kNull;
  if (!obj.is_object()) return kNull;
  auto it = obj.find(key);
  return it == obj.end() ? kNull : *it;
}

json object_or_empty(const json& v) {
  return v.is_object() ? v : json::object();
}

}  // namespace

std::string normalize_timestamp(std::string_view d) {
  // YYYY-MM-DDTHH:MM:SS[.f...][Z|+HH:MM|-HH:MM]
  if (!digits(d, 0, 4) || d.size() < 19 || d[4] != '-' || !digits(d, 5, 2) || d[7] != '-' ||
      !digits(d, 8, 2) || (d[10] != 'T' && d[10] != ' ') || !digits(d, 11, 2) || d[13] != ':' ||
      !digits(d, 14, 2) || d[16] != ':' || !digits(d, 17, 2))
    return {};
  std::string out(d.substr(0, 10));
  out += 'T';
  out += d.substr(11, 8);
  std::string frac;
  std::size_t i = 19;
  if (i < d.size() && d[i] == '.') {
    ++i;
    while (i < d.size() && std::isdigit(static_cast<unsigned char>(d[i]))) frac += d[i++];
    if (frac.empty()) return {};
  }
  if (i < d.size() && d[i] != 'Z' && d[i] != 'z' && d[i] != '+' && d[i] != '-') return {};
  frac.resize(6, '0');
  return out + "." + frac + "Z";
}

std::string apply_carriage_returns(std::string_view text) {
  if (text.find('\r') == std::string_view::npos) return std::string(text);
  std::string out;
  out.reserve(text.size());
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t nl = text.find('\n', start);
    std::size_t end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view line = text.substr(start, end - start);
    // The last '\r' with a character after it on this line.
    std::size_t cut = std::string_view::npos;
    if (line.size() >= 2) {
      std::size_t r = line.rfind('\r', line.size() - 2);
      if (r != std::string_view::npos) cut = r;
    }
    out += cut == std::string_view::npos ? line : line.substr(cut + 1);
    if (nl == std::string_view::npos) break;
    out += '\n';
    start = nl + 1;
  }
  return out;
}

OutputCollector::OutputCollector(json* cells, bool record_timing)
    : cells_(cells), record_timing_(record_timing) {}

void OutputCollector::begin_cell(std::size_t index) {
  current_ = index;
  clear_before_next_output_ = false;
  json& c = cell();
  c["outputs"] = json::array();
  if (!c.contains("metadata") || !c["metadata"].is_object()) c["metadata"] = json::object();
  if (record_timing_) c["metadata"]["execution"] = json::object();
}

void OutputCollector::resume_cell(std::size_t index, bool clear_pending) {
  current_ = index;
  clear_before_next_output_ = clear_pending;
  json& c = cell();
  if (!c.contains("outputs") || !c["outputs"].is_array()) c["outputs"] = json::array();
  if (!c.contains("metadata") || !c["metadata"].is_object()) c["metadata"] = json::object();
  if (record_timing_ &&
      (!c["metadata"].contains("execution") || !c["metadata"]["execution"].is_object()))
    c["metadata"]["execution"] = json::object();
}

void OutputCollector::record(const char* key, std::string_view date) {
  if (!record_timing_) return;
  std::string ts = normalize_timestamp(date);
  if (ts.empty()) ts = util::iso_now();  // as nbclient: no usable date, use now
  cell()["metadata"]["execution"][key] = ts;
}

bool OutputCollector::on_iopub(std::string_view type, const json& content, std::string_view date) {
  std::string display_id;
  if (const json& id = member(member(content, "transient"), "display_id"); id.is_string())
    display_id = id.get<std::string>();
  if (!display_id.empty() &&
      (type == "execute_result" || type == "display_data" || type == "update_display_data"))
    update_display(display_id, content);

  if (content.is_object() && content.contains("execution_count"))
    cell()["execution_count"] = content["execution_count"];

  if (type == "status") {
    const json& state = member(content, "execution_state");
    if (state == "idle") {
      record("iopub.status.idle", date);
      return true;
    }
    if (state == "busy") record("iopub.status.busy", date);
    return false;
  }
  if (type == "execute_input") {
    record("iopub.execute_input", date);
    return false;
  }
  if (type == "clear_output") {
    if (member(content, "wait").is_boolean() && member(content, "wait").get<bool>()) {
      clear_before_next_output_ = true;
    } else {
      cell()["outputs"] = json::array();
      clear_display_ids_of_current();
    }
    return false;
  }
  if (type.substr(0, 4) == "comm" || type == "update_display_data") return false;

  json out;
  if (type == "stream") {
    const json& name = member(content, "name");
    const json& text = member(content, "text");
    if (!name.is_string() || !text.is_string()) return false;
    out = {{"output_type", "stream"}, {"name", name}, {"text", text}};
  } else if (type == "display_data") {
    out = {{"output_type", "display_data"},
           {"data", object_or_empty(member(content, "data"))},
           {"metadata", object_or_empty(member(content, "metadata"))}};
  } else if (type == "execute_result") {
    out = {{"output_type", "execute_result"},
           {"data", object_or_empty(member(content, "data"))},
           {"metadata", object_or_empty(member(content, "metadata"))},
           {"execution_count", member(content, "execution_count")}};
  } else if (type == "error") {
    const json& tb = member(content, "traceback");
    out = {{"output_type", "error"},
           {"ename", member(content, "ename").is_string() ? member(content, "ename") : json("")},
           {"evalue", member(content, "evalue").is_string() ? member(content, "evalue") : json("")},
           {"traceback", tb.is_array() ? tb : json::array()}};
  } else {
    return false;  // not an output (nbclient logs "unhandled iopub msg")
  }
  append(std::move(out), display_id);
  return false;
}

void OutputCollector::append(json out, const std::string& display_id) {
  json& outs = cell()["outputs"];
  if (clear_before_next_output_) {
    outs = json::array();
    clear_display_ids_of_current();
    clear_before_next_output_ = false;
  }
  if (!display_id.empty()) display_ids_[display_id][current_].push_back(outs.size());
  // coalesce_streams: consecutive stream outputs of the same name merge.
  if (out["output_type"] == "stream" && !outs.empty()) {
    json& last = outs.back();
    if (last.value("output_type", "") == "stream" && last["name"] == out["name"] &&
        last["text"].is_string()) {
      last["text"].get_ref<std::string&>() += out["text"].get_ref<const std::string&>();
      return;
    }
  }
  outs.push_back(std::move(out));
}

void OutputCollector::update_display(const std::string& display_id, const json& content) {
  auto it = display_ids_.find(display_id);
  if (it == display_ids_.end()) return;
  json data = object_or_empty(member(content, "data"));
  json metadata = object_or_empty(member(content, "metadata"));
  for (auto& [cell_index, output_indexes] : it->second) {
    if (cell_index >= cells_->size()) continue;
    json& outs = (*cells_)[cell_index]["outputs"];
    for (std::size_t oi : output_indexes) {
      if (oi >= outs.size()) continue;
      outs[oi]["data"] = data;
      outs[oi]["metadata"] = metadata;
    }
  }
}

void OutputCollector::clear_display_ids_of_current() {
  for (auto& [_, cells] : display_ids_) {
    auto it = cells.find(current_);
    if (it != cells.end()) it->second.clear();
  }
}

void OutputCollector::on_execute_reply(std::string_view date) {
  record("shell.execute_reply", date);
}

void OutputCollector::end_cell() {
  json& outs = cell()["outputs"];
  for (auto& out : outs) {
    if (out.value("output_type", "") != "stream") continue;
    auto& text = out["text"];
    if (text.is_string()) text = apply_carriage_returns(text.get_ref<const std::string&>());
  }
}

}  // namespace skylab::exec
