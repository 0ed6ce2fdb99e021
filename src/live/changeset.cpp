#include "live/changeset.hpp"

namespace skylab::live {

using nlohmann::json;

namespace {

//! Bytes of the UTF-8 sequence starting with `c` (1 for anything unusual).
std::size_t seq_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 0x6) return 2;
  if ((c >> 4) == 0xE) return 3;
  if ((c >> 3) == 0x1E) return 4;
  return 1;
}

//! Advances `pos` (a byte offset at a character boundary) by `units` UTF-16
//! code units; false when the text ends first or a surrogate pair would be
//! split.
bool advance(std::string_view s, std::size_t& pos, std::size_t units) {
  while (units > 0) {
    if (pos >= s.size()) return false;
    std::size_t n = seq_len(static_cast<unsigned char>(s[pos]));
    std::size_t u = n == 4 ? 2 : 1;
    if (u > units) return false;
    units -= u;
    pos += n;
  }
  return true;
}

//! Splits at "\n" into the JSON lines of a ChangeSet insertion.
void push_lines(json& part, std::string_view s) {
  std::size_t start = 0;
  for (;;) {
    auto nl = s.find('\n', start);
    if (nl == std::string_view::npos) {
      part.push_back(std::string(s.substr(start)));
      return;
    }
    part.push_back(std::string(s.substr(start, nl - start)));
    start = nl + 1;
  }
}

}  // namespace

std::size_t utf16_length(std::string_view s) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t l = seq_len(static_cast<unsigned char>(s[i]));
    n += l == 4 ? 2 : 1;
    i += l;
  }
  return n;
}

std::string normalize_newlines(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

Result<std::string> apply_changes(std::string_view text, const json& changes,
                                  std::size_t max_sections, std::size_t max_bytes) {
  if (!changes.is_array()) return Error::bad_request("changes must be an array");
  if (changes.size() > max_sections) return Error::bad_request("too many sections in a change set");
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  auto units = [](const json& v, std::size_t& n) {
    if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<std::int64_t>() >= 0))
      return false;
    n = v.get<std::size_t>();
    return n <= (std::size_t(1) << 40);
  };
  for (const json& part : changes) {
    std::size_t n = 0;
    if (part.is_number()) {
      if (!units(part, n)) return Error::bad_request("bad length in a change set");
      std::size_t from = pos;
      if (!advance(text, pos, n)) return Error::bad_request("a change set does not fit the text");
      out.append(text.substr(from, pos - from));
    } else if (part.is_array() && !part.empty()) {
      if (!units(part[0], n)) return Error::bad_request("bad length in a change set");
      if (!advance(text, pos, n)) return Error::bad_request("a change set does not fit the text");
      if (part.size() > max_sections + 1)
        return Error::bad_request("too many lines in a change set");
      for (std::size_t i = 1; i < part.size(); ++i) {
        if (!part[i].is_string()) return Error::bad_request("inserted lines must be strings");
        const auto& line = part[i].get_ref<const std::string&>();
        if (line.find_first_of("\r\n") != std::string::npos)
          return Error::bad_request("an inserted line holds a line break");
        if (i > 1) out.push_back('\n');
        out.append(line);
        if (out.size() > max_bytes) return Error::bad_request("the text would be too large");
      }
    } else {
      return Error::bad_request("a change set section must be a number or an array");
    }
    if (out.size() > max_bytes) return Error::bad_request("the text would be too large");
  }
  if (pos != text.size()) return Error::bad_request("a change set does not cover the whole text");
  return out;
}

json diff_changes(std::string_view from, std::string_view to) {
  // Common prefix and suffix at character boundaries.
  std::size_t p = 0;
  while (p < from.size() && p < to.size() && from[p] == to[p]) ++p;
  auto cont = [](char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; };
  while (p > 0 && p < from.size() && cont(from[p])) --p;
  while (p > 0 && p < to.size() && cont(to[p])) --p;
  std::size_t s = 0;
  while (s < from.size() - p && s < to.size() - p &&
         from[from.size() - 1 - s] == to[to.size() - 1 - s])
    ++s;
  // The suffix must start at a character boundary in both.
  while (s > 0 && cont(from[from.size() - s])) --s;
  json out = json::array();
  std::size_t pre = utf16_length(from.substr(0, p));
  std::size_t del = utf16_length(from.substr(p, from.size() - p - s));
  std::size_t post = utf16_length(from.substr(from.size() - s));
  std::string_view ins = to.substr(p, to.size() - p - s);
  if (pre) out.push_back(pre);
  if (del || !ins.empty()) {
    json part = json::array({del});
    if (!ins.empty()) push_lines(part, ins);
    out.push_back(std::move(part));
  }
  if (post) out.push_back(post);
  return out;
}

}  // namespace skylab::live
