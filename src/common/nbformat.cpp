#include "common/nbformat.hpp"

#include <functional>
#include <set>

#include "common/json_io.hpp"
#include "common/util.hpp"

namespace skylab::nbformat {

using nlohmann::json;

namespace {

void for_each_cell(json& nb, const std::function<void(json&)>& f) {
  if (!nb.is_object()) return;
  auto cells = nb.find("cells");
  if (cells == nb.end() || !cells->is_array()) return;
  for (auto& c : *cells)
    if (c.is_object()) f(c);
}

void join(json& v) {
  if (!v.is_array()) return;
  for (auto& line : v)
    if (!line.is_string()) return;  // not a list of lines: leave alone
  std::string s;
  for (auto& line : v) s += line.get_ref<const std::string&>();
  v = std::move(s);
}

void split(json& v) {
  if (v.is_string()) v = json(split_lines_keepends(v.get_ref<const std::string&>()));
}

bool text_like(const std::string& mime) {
  return mime.rfind("text/", 0) == 0 || mime == "application/javascript" || mime == "image/svg+xml";
}

//! Applies `field` to each multi-line field of `c`; `bundle` to each mime bundle.
void each_multiline(json& c, const std::function<void(json&)>& field,
                    const std::function<void(json&)>& bundle, bool split_mode) {
  if (auto s = c.find("source"); s != c.end()) field(*s);
  if (auto a = c.find("attachments"); a != c.end() && a->is_object())
    for (auto& b : *a) bundle(b);
  if (c.value("cell_type", "") != "code") return;
  auto outs = c.find("outputs");
  if (outs == c.end() || !outs->is_array()) return;
  for (auto& o : *outs) {
    if (!o.is_object()) continue;
    std::string t = o.value("output_type", "");
    if (t == "execute_result" || t == "display_data") {
      if (auto d = o.find("data"); d != o.end()) bundle(*d);
    } else if (split_mode ? t == "stream" : !t.empty()) {
      if (auto x = o.find("text"); x != o.end()) field(*x);
    }
  }
}

}  // namespace

std::vector<std::string> split_lines_keepends(std::string_view s) {
  std::vector<std::string> out;
  std::size_t start = 0, i = 0;
  auto cut = [&](std::size_t end) {
    out.emplace_back(s.substr(start, end - start));
    start = end;
  };
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\r') {
      i += (i + 1 < s.size() && s[i + 1] == '\n') ? 2 : 1;
      cut(i);
    } else if (c == '\n' || c == '\v' || c == '\f' || c == 0x1c || c == 0x1d || c == 0x1e) {
      cut(++i);
    } else if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x85) {
      i += 2;
      cut(i);
    } else if (c == 0xe2 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
               (static_cast<unsigned char>(s[i + 2]) == 0xa8 ||
                static_cast<unsigned char>(s[i + 2]) == 0xa9)) {
      i += 3;
      cut(i);
    } else {
      ++i;
    }
  }
  if (start < s.size()) cut(s.size());
  return out;
}

void join_field(json& v) {
  join(v);
}

bool is_json_mime(const std::string& mime) {
  return mime == "application/json" || (mime.rfind("application/", 0) == 0 && mime.size() >= 5 &&
                                        mime.compare(mime.size() - 5, 5, "+json") == 0);
}

void join_lines(json& nb) {
  auto bundle = [](json& data) {
    if (!data.is_object()) return;
    for (auto it = data.begin(); it != data.end(); ++it)
      if (!is_json_mime(it.key())) join(*it);
  };
  for_each_cell(nb, [&](json& c) { each_multiline(c, join, bundle, false); });
}

void split_lines(json& nb) {
  auto bundle = [](json& data) {
    if (!data.is_object()) return;
    for (auto it = data.begin(); it != data.end(); ++it)
      if (text_like(it.key())) split(*it);
  };
  for_each_cell(nb, [&](json& c) { each_multiline(c, split, bundle, true); });
}

void strip_transient(json& nb) {
  if (!nb.is_object()) return;
  if (auto md = nb.find("metadata"); md != nb.end() && md->is_object()) {
    md->erase("orig_nbformat");
    md->erase("orig_nbformat_minor");
    md->erase("signature");
  }
  for_each_cell(nb, [](json& c) {
    if (auto md = c.find("metadata"); md != c.end() && md->is_object()) md->erase("trusted");
  });
}

bool valid_cell_id(const json& id) {
  if (!id.is_string()) return false;
  const auto& s = id.get_ref<const std::string&>();
  if (s.empty() || s.size() > 64) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_'))
      return false;
  return true;
}

std::string new_cell_id() {
  return util::random_hex(4);
}

void assign_cell_ids(json& nb, bool replace_invalid) {
  std::set<std::string> taken;
  for_each_cell(nb, [&](json& c) {
    if (auto id = c.find("id"); id != c.end() && valid_cell_id(*id))
      taken.insert(id->get<std::string>());
  });
  std::set<std::string> seen;
  for_each_cell(nb, [&](json& c) {
    auto id = c.find("id");
    bool missing = id == c.end() || (replace_invalid && !valid_cell_id(*id));
    bool duplicate = !missing && id->is_string() && !seen.insert(id->get<std::string>()).second;
    if (!missing && !duplicate) return;
    std::string fresh;
    do fresh = new_cell_id();
    while (taken.count(fresh));
    taken.insert(fresh);
    seen.insert(fresh);
    c["id"] = fresh;
  });
}

std::string serialize(json nb) {
  strip_transient(nb);
  split_lines(nb);
  std::string out;
  out.reserve(1 << 16);
  json_io::write_json(out, nb, json_io::JsonStyle{1, false});
  out += '\n';
  return out;
}

}  // namespace skylab::nbformat
