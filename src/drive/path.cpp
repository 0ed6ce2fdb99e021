#include "drive/path.hpp"

#include "common/util.hpp"

namespace skylab::drive {

namespace {

constexpr std::size_t kMaxName = 255;
constexpr std::size_t kMaxPath = 4096;

std::string quoted(std::string_view s) {
  // For error messages: printable, bounded, no raw control bytes.
  std::string out = "'";
  for (char c : s.substr(0, 200)) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  if (s.size() > 200) out += "...";
  return out + "'";
}

bool dangerous_when_decoded(std::string_view name) {
  // A name such as "%2e%2e" is harmless on disk, but another layer (a proxy,
  // a browser, a second decoding) could turn it into "..": refuse it.
  std::string cur(name);
  for (int depth = 0; depth < 4 && cur.find('%') != std::string::npos; ++depth) {
    auto d = util::url_decode(cur);
    if (!d || *d == cur) break;
    cur = std::move(*d);
    if (cur == "." || cur == ".." || cur.find('/') != std::string::npos ||
        cur.find('\\') != std::string::npos || cur.find('\0') != std::string::npos)
      return true;
  }
  return false;
}

}  // namespace

Status DrivePath::check_name(std::string_view name) {
  if (name.empty()) return Error::bad_request("Invalid path: empty name");
  if (name == "." || name == "..")
    return Error::bad_request("Invalid path: " + quoted(name) + " is not allowed");
  if (name.size() > kMaxName)
    return Error::bad_request("Invalid path: a name is longer than 255 bytes");
  for (char c : name) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '\0') return Error::bad_request("Invalid path: NUL byte in name");
    if (c == '/') return Error::bad_request("Invalid path: '/' in name " + quoted(name));
    if (c == '\\') return Error::bad_request("Invalid path: backslash in name " + quoted(name));
    if (u < 0x20 || u == 0x7f)
      return Error::bad_request("Invalid path: control character in name " + quoted(name));
  }
  if (!util::valid_utf8(name)) return Error::bad_request("Invalid path: name is not valid UTF-8");
  if (dangerous_when_decoded(name))
    return Error::bad_request("Invalid path: " + quoted(name) +
                              " decodes to a path separator or '..'");
  return ok_status();
}

Result<DrivePath> DrivePath::parse(std::string_view p) {
  if (p.size() > kMaxPath) return Error::bad_request("Invalid path: longer than 4096 bytes");
  if (p.find('\0') != std::string_view::npos) return Error::bad_request("Invalid path: NUL byte");
  if (p.find('\\') != std::string_view::npos)
    return Error::bad_request("Invalid path " + quoted(p) + ": backslashes are not allowed");
  std::string_view rest = p;
  if (!rest.empty() && rest.front() == '/') rest.remove_prefix(1);
  if (!rest.empty() && rest.front() == '/')
    return Error::bad_request("Invalid path " + quoted(p) + ": absolute paths are not allowed");
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  DrivePath out;
  if (rest.empty()) return out;
  std::size_t start = 0;
  while (true) {
    auto slash = rest.find('/', start);
    auto comp = rest.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (comp.empty()) return Error::bad_request("Invalid path " + quoted(p) + ": empty component");
    auto st = check_name(comp);
    if (!st.ok()) return Error::bad_request(st.error().message + " (in " + quoted(p) + ")");
    out.parts_.emplace_back(comp);
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return out;
}

std::string DrivePath::str() const {
  std::string s;
  for (std::size_t i = 0; i < parts_.size(); ++i) {
    if (i) s += '/';
    s += parts_[i];
  }
  return s;
}

std::string_view DrivePath::name() const {
  return parts_.empty() ? std::string_view{} : std::string_view(parts_.back());
}

DrivePath DrivePath::parent() const {
  DrivePath d = *this;
  if (!d.parts_.empty()) d.parts_.pop_back();
  return d;
}

Result<DrivePath> DrivePath::child(std::string_view name) const {
  auto st = check_name(name);
  if (!st.ok()) return st.error();
  DrivePath d = *this;
  d.parts_.emplace_back(name);
  return d;
}

bool DrivePath::is_hidden() const {
  for (auto& p : parts_)
    if (!p.empty() && p[0] == '.') return true;
  return false;
}

bool DrivePath::is_within(const DrivePath& dir) const {
  if (dir.parts_.size() > parts_.size()) return false;
  for (std::size_t i = 0; i < dir.parts_.size(); ++i)
    if (parts_[i] != dir.parts_[i]) return false;
  return true;
}

}  // namespace skylab::drive
